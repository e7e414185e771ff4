"""Strict JSON-schema validation of Kubernetes objects.

Built-in kinds are checked against the strict OpenAPI definitions that ship with the
``kubernetes-validate`` package (offline); custom resources against JSON schemas laid out as
kubeconform reads them: ``{dir}/{group}/{kind lowercased}_{version}.json``.

CRD schemas converted from OpenAPI need three corrections before they can be used strictly:
the root object is closed (a misspelt top-level field is an error), ``metadata`` is checked against
the real ObjectMeta, ``x-kubernetes-preserve-unknown-fields`` re-opens an object that a converter
closed, and OpenAPI's ``nullable`` becomes "null allowed".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from .metadata import check_metadata

K8S_DEFS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{K8S_DEFS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DEFAULT_KUBERNETES_VERSION = "1.34"


@dataclass(frozen=True)
class Outcome:
    """The result of validating one object."""

    status: str  # "valid" | "invalid" | "missing"
    errors: tuple[str, ...] = ()
    schema: str = ""


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _k8s_schema_dir(version: str) -> Path:
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    wanted = version.removeprefix("v")
    available = sorted(
        (p.name for p in root.iterdir() if p.name.endswith("-local-strict")),
        key=lambda n: tuple(int(x) for x in n[1:].split("-")[0].split(".")),
    )
    for name in reversed(available):
        major_minor = ".".join(name[1:].split("-")[0].split(".")[:2])
        if tuple(int(x) for x in major_minor.split(".")) <= tuple(int(x) for x in wanted.split(".")[:2]):
            return Path(str(root / name))
    raise ValueError(f"no Kubernetes schemas for version {version}; available: {', '.join(available)}")


def _walk(node: Any, fix: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Apply ``fix`` to every schema in a JSON/OpenAPI schema, bottom-up, following only the
    keywords that hold schemas (a property may well be named "nullable" or "properties")."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "patternProperties", "definitions", "$defs"):
        if isinstance(out.get(key), dict):
            out[key] = {name: _walk(sub, fix) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties", "not", "additionalItems"):
        if isinstance(out.get(key), dict):
            out[key] = _walk(out[key], fix)
        elif key == "items" and isinstance(out.get(key), list):
            out[key] = [_walk(sub, fix) for sub in out[key]]
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_walk(sub, fix) for sub in out[key]]
    return fix(out)


def _openapi_to_json_schema(out: dict[str, Any]) -> dict[str, Any]:
    if out.get("x-kubernetes-preserve-unknown-fields") is True and out.get("additionalProperties") is False:
        del out["additionalProperties"]
    if out.pop("nullable", False) is True:
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif isinstance(t, list) and "null" not in t:
            out["type"] = [*t, "null"]
        elif "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if out.get("x-kubernetes-int-or-string") is True and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def _fix_crd_schema(node: Any) -> Any:
    """Apply the OpenAPI -> JSON-schema corrections recursively (on a copy)."""
    return _walk(node, _openapi_to_json_schema)


def _strict(out: dict[str, Any]) -> dict[str, Any]:
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def strict_crd_schema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as the API server applies it with strict field validation: an
    object that lists its properties accepts no others, unless it preserves unknown fields."""
    return _walk(node, _strict)


def _close_root(schema: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    props = dict(schema.get("properties", {}))
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {"$ref": OBJECT_META}
    schema["properties"] = props
    schema["additionalProperties"] = False
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return schema


DIR_LAYOUT = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"


def expand_location(template: str, group: str, kind: str, version: str) -> str:
    """A kubeconform-style schema location for one kind."""
    out = template
    for key, value in (("Group", group), ("ResourceKind", kind.lower()), ("ResourceAPIVersion", version)):
        out = out.replace("{{." + key + "}}", value).replace("{{ ." + key + " }}", value)
    return out


def _fetch(url: str) -> dict[str, Any] | None:
    """A schema over HTTP(S), cached on disk; None when the server has none."""
    import hashlib
    import os
    import urllib.error
    import urllib.request

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "opc" / "schemas"
    path = cache / (hashlib.sha256(url.encode()).hexdigest() + ".json")
    if path.is_file():
        return _object(json.loads(path.read_text()), url)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - user-given location
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return _object(json.loads(text), url)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a schema must be a JSON object")
    return value


class SchemaStore:
    """Finds and caches compiled validators; safe to share between threads.

    ``schema_dirs`` are directories in the kubeconform layout; ``schema_locations`` are
    kubeconform-style templates (a path or an http(s) URL with {{.Group}}, {{.ResourceKind}}
    and {{.ResourceAPIVersion}}). Locations are tried in order.
    """

    def __init__(self, schema_dirs: Iterable[Path] = (), kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
                 schema_locations: Iterable[str] = ()):
        self.locations = [str(Path(d) / DIR_LAYOUT) for d in schema_dirs] + list(schema_locations)
        self.kubernetes_version = kubernetes_version
        self._validators: dict[tuple[str, str], tuple[jsonschema.protocols.Validator | None, str]] = {}
        self._crds: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._lock = threading.Lock()
        # API group -> a source of CRDs fetched the first time a kind of it has no other schema
        self.sources: dict[str, Any] = {}
        self._fetched: dict[int, str] = {}  # id(source) -> "" or why it could not be fetched
        self._fetch_lock = threading.Lock()

    def add_sources(self, sources: Iterable[Any]) -> None:
        """CRD sources (crds.CrdSource) to fetch lazily, by the API groups they serve."""
        for source in sources:
            for group in source.groups:
                self.sources.setdefault(group, source)

    def _from_source(self, group: str) -> str:
        """Fetch the source of ``group`` once; returns why it failed, or ""."""
        from .crds import SourceError, fetch

        source = self.sources.get(group)
        if source is None:
            return ""
        with self._fetch_lock:
            if id(source) not in self._fetched:
                try:
                    for crd in fetch(source):
                        spec = crd.get("spec") or {}
                        for version in spec.get("versions") or []:
                            kind = str((spec.get("names") or {}).get("kind"))
                            key = (f"{spec.get('group')}/{version.get('name')}", kind)
                            if key not in self._crds:
                                self.add_crd(crd, source.label)
                                break
                    self._fetched[id(source)] = ""
                except SourceError as exc:
                    self._fetched[id(source)] = str(exc)
            return self._fetched[id(source)]

    def add_crd(self, crd: dict[str, Any], source: str = "") -> None:
        """Use the schema of every served version of a CustomResourceDefinition (from a pinned
        release) for its kind, before any schema directory or location."""
        spec = crd.get("spec") or {}
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        where = source or f"CRD {(crd.get('metadata') or {}).get('name')}"
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if not (group and kind and isinstance(schema, dict)) or version.get("served") is False:
                continue
            key = (f"{group}/{version.get('name')}", str(kind))
            with self._lock:
                self._crds[key] = (schema, where)
                self._validators.pop(key, None)

    @property
    def crd_kinds(self) -> int:
        return len(self._crds)

    @cached_property
    def _k8s(self) -> tuple[Registry, dict[tuple[str, str, str], str]]:
        defs_path = _k8s_schema_dir(self.kubernetes_version) / "_definitions.json"
        defs = json.loads(defs_path.read_text())
        registry = Resource.from_contents(defs) @ Registry()
        gvk: dict[tuple[str, str, str], str] = {}
        for name, definition in defs["$defs"].items():
            for entry in definition.get("x-kubernetes-group-version-kind", []):
                gvk[(entry["group"], entry["version"], entry["kind"])] = name
        return registry, gvk

    def _compile(self, api_version: str, kind: str) -> tuple[jsonschema.protocols.Validator | None, str]:
        registry, gvk = self._k8s
        group, version = split_api_version(api_version)
        definition = gvk.get((group, version, kind))
        if definition is not None:
            schema = {"$ref": f"{K8S_DEFS_ID}#/$defs/{definition}"}
            return jsonschema.Draft202012Validator(schema, registry=registry), f"kubernetes {self.kubernetes_version}"
        crd = self._crds.get((api_version, kind))
        if crd is not None:
            closed = _close_root(_fix_crd_schema(strict_crd_schema(crd[0])))
            return jsonschema.Draft202012Validator(closed, registry=registry), crd[1]
        for template in self.locations:
            where = expand_location(template, group, kind, version)
            if where.startswith(("http://", "https://")):
                raw = _fetch(where)
            else:
                path = Path(where.removeprefix("file://"))
                raw = json.loads(path.read_text()) if path.is_file() else None
            if raw is not None:
                schema = _close_root(_fix_crd_schema(raw))
                return jsonschema.Draft202012Validator(schema, registry=registry), where
        failure = self._from_source(group)
        crd = self._crds.get((api_version, kind))
        if crd is not None:
            closed = _close_root(_fix_crd_schema(strict_crd_schema(crd[0])))
            return jsonschema.Draft202012Validator(closed, registry=registry), crd[1]
        return None, failure

    def validator(self, api_version: str, kind: str) -> tuple[jsonschema.protocols.Validator | None, str]:
        key = (api_version, kind)
        with self._lock:
            if key in self._validators:
                return self._validators[key]
        compiled = self._compile(api_version, kind)
        with self._lock:
            return self._validators.setdefault(key, compiled)

    def validate(self, obj: dict[str, Any], max_errors: int = 8) -> Outcome:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return Outcome("invalid", ("object has no apiVersion or kind",))
        validator, source = self.validator(api_version, kind)
        if validator is None:
            why = f" (its CRD source failed: {source})" if source else ""
            return Outcome("missing", (f"no schema for {kind} {api_version}{why}",))
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        meta_errors = check_metadata(obj)
        if not errors and not meta_errors:
            return Outcome("valid", schema=source)
        messages = list(meta_errors)
        for error in errors[:max_errors]:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            messages.append(f"{path}: {_short(error.message)}")
        if len(errors) > max_errors:
            messages.append(f"... and {len(errors) - max_errors} more")
        return Outcome("invalid", tuple(messages), source)


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
