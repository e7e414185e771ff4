"""Schemas of the custom resources no chart of the repository carries, from the pinned releases.

The charts' own CRDs are the first source (charts.py renders them). CRDs that an operator installs
at runtime (Flux's toolkit, installed by the Flux Operator; Open Cluster Management's hub API,
installed by the cluster manager) or that come from another project are listed in the
repository's ``crd-sources.yaml``, each by its Go module and version (fetched through the Go
module proxy with ``go mod download``) or by a URL at a pinned tag, with the API groups they
serve. opc fetches a source only when an object of one of its groups has no schema from a chart
or a ``--schema-dir``, and caches downloads in ``~/.cache/opc/crds``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import tools
from .kustomize import parse_documents

SOURCES_FILE = "crd-sources.yaml"


class SourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class CrdSource:
    groups: tuple[str, ...]
    module: str = ""
    version: str = ""
    paths: tuple[str, ...] = ()
    url: str = ""

    @property
    def label(self) -> str:
        return f"{self.module}@{self.version}" if self.module else self.url


def load_sources(root: Path) -> list[CrdSource]:
    path = root / SOURCES_FILE
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    sources = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        groups = tuple(entry.get("groups") or ()) if isinstance(entry, dict) else ()
        if not groups or not (entry.get("url") or (entry.get("module") and entry.get("version"))):
            raise SourceError(f"{SOURCES_FILE} entry {index}: needs groups and either module and version, or url")
        sources.append(CrdSource(groups, str(entry.get("module", "")), str(entry.get("version", "")),
                                 tuple(entry.get("paths") or ()), str(entry.get("url", ""))))
    return sources


def _crds(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("kind") == "CustomResourceDefinition"]


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opc" / "crds"


def fetch(source: CrdSource) -> list[dict[str, Any]]:
    """The CRDs a source holds."""
    if source.module:
        try:
            root = tools.module_dir(source.module, source.version)
        except tools.ToolMissing as exc:
            raise SourceError(f"{source.label}: {exc}") from None
        found: list[dict[str, Any]] = []
        for sub in source.paths or ("",):
            for path in sorted((root / sub).rglob("*.yaml")):
                found += _crds(parse_documents(path.read_text(encoding="utf-8")))
        if not found:
            raise SourceError(f"{source.label} holds no CustomResourceDefinition under {', '.join(source.paths)}")
        return found
    cached = _cache() / (hashlib.sha256(source.url.encode()).hexdigest() + ".yaml")
    if not cached.is_file():
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response:  # noqa: S310 - a pinned, listed URL
                text = response.read().decode()
        except OSError as exc:
            raise SourceError(f"{source.url}: {' '.join(str(exc).split())}") from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(text)
    return _crds(parse_documents(cached.read_text()))
