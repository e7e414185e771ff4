"""What the Helm releases of each cluster really create: every HelmRelease (Flux) and every
Helm-sourced Argo CD Application, rendered with the real `helm template`.

A release is rendered as its GitOps engine would install it: the pinned chart version, the values
as the cluster receives them after kustomize (Flux ``valuesFrom`` ConfigMaps and Secrets of the
repository merged in order, then the inline values), the release name and namespace the engine
derives, CRDs included unless the release skips them, test hooks left out, the Kubernetes version
the platform targets, and the API versions of the custom resources that cluster's charts install
(charts that probe ``.Capabilities.APIVersions`` see what the cluster will have).

Charts come from chart directories (``--chart-dir``, ``$OPC_CHART_DIR``; layout
``<chart>-<version>/`` unpacked, or ``<chart>-<version>.tgz``), else from their repository with
``helm pull`` into ``~/.cache/opc/charts`` (what a company's CI does).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from . import tools
from .kustomize import parse_documents

DEFAULT_KUBE_VERSION = "1.34.0"


class ChartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ChartRef:
    chart: str
    version: str
    repository: str  # https://... or oci://...

    @property
    def dirname(self) -> str:
        return f"{self.chart}-{self.version}"


@dataclass
class Release:
    cluster: str
    name: str
    namespace: str
    chart: ChartRef
    values: dict[str, Any]
    include_crds: bool
    unit: str  # the kustomization it was built in
    subject: str  # e.g. "HelmRelease monitoring/kube-prometheus-stack"

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name} ({self.chart.chart} {self.chart.version})"


@dataclass
class Rendered:
    release: Release
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    chart_dir: Path | None = None
    substitute: bool = False  # rendered from a declared substitute of the pinned chart

    @property
    def ok(self) -> bool:
        return not self.error


# ---------------------------------------------------------------------------------------------
# Releases out of the built objects of a cluster
# ---------------------------------------------------------------------------------------------


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _index(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(str(o.get("kind")), str(_meta(o).get("namespace", "")), str(_meta(o).get("name", ""))): o
            for o in objects}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(values: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target = values
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _values_from(release: dict[str, Any], index: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    """Flux's valuesFrom, in order: a key of a ConfigMap or Secret (YAML merged, or one value at
    targetPath); a missing source fails unless optional."""
    values: dict[str, Any] = {}
    namespace = str(_meta(release).get("namespace", ""))
    for ref in (release.get("spec") or {}).get("valuesFrom") or []:
        kind, name = ref.get("kind"), ref.get("name")
        source = index.get((str(kind), namespace, str(name)))
        if source is None:
            if ref.get("optional"):
                continue
            raise ChartError(f"valuesFrom {kind} {namespace}/{name} is not in the repository (declare it, or mark "
                             "the reference optional if it is provided out of band)")
        key = ref.get("valuesKey", "values.yaml")
        data = dict(source.get("data") or {})
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update(source.get("stringData") or {})
        if key not in data:
            if ref.get("optional"):
                continue
            raise ChartError(f"valuesFrom {kind} {namespace}/{name} has no key '{key}'")
        if ref.get("targetPath"):
            _set_path(values, str(ref["targetPath"]), data[key])
        else:
            loaded = yaml.safe_load(data[key]) or {}
            if not isinstance(loaded, dict):
                raise ChartError(f"valuesFrom {kind} {namespace}/{name} key '{key}' is not a YAML mapping")
            values = deep_merge(values, loaded)
    return values


def _flux_chart(release: dict[str, Any], index: dict[tuple[str, str, str], dict[str, Any]]) -> ChartRef:
    spec = release.get("spec") or {}
    namespace = str(_meta(release).get("namespace", ""))
    if spec.get("chartRef"):
        ref = spec["chartRef"]
        source = index.get((str(ref.get("kind")), str(ref.get("namespace") or namespace), str(ref.get("name"))))
        if source is None or ref.get("kind") != "OCIRepository":
            raise ChartError(f"chartRef {ref.get('kind')} {ref.get('name')} is not an OCIRepository of the repository")
        url = str((source.get("spec") or {}).get("url", ""))
        tag = str(((source.get("spec") or {}).get("ref") or {}).get("tag", ""))
        repository, _, chart = url.rpartition("/")
        return ChartRef(chart, tag, repository)
    chart_spec = (spec.get("chart") or {}).get("spec") or {}
    source_ref = chart_spec.get("sourceRef") or {}
    source = index.get((str(source_ref.get("kind")), str(source_ref.get("namespace") or namespace),
                        str(source_ref.get("name"))))
    if source is None or source_ref.get("kind") != "HelmRepository":
        raise ChartError(f"sourceRef {source_ref.get('kind')} {source_ref.get('name')} is not a HelmRepository of "
                         "the repository")
    return ChartRef(str(chart_spec.get("chart")), str(chart_spec.get("version")),
                    str((source.get("spec") or {}).get("url", "")))


def releases_of(cluster: str, units: list[tuple[str, list[dict[str, Any]]]]) -> tuple[list[Release], list[str]]:
    """The Helm releases a cluster installs (from the objects of its deployable units), and the
    problems that keep a release from being rendered at all."""
    everything = [o for _, objects in units for o in objects]
    index = _index(everything)
    found: list[Release] = []
    problems: list[str] = []
    for unit, objects in units:
        for obj in objects:
            kind, api = obj.get("kind"), str(obj.get("apiVersion", ""))
            meta, spec = _meta(obj), obj.get("spec") or {}
            if kind == "HelmRelease" and api.startswith("helm.toolkit.fluxcd.io/"):
                subject = f"HelmRelease {meta.get('namespace')}/{meta.get('name')}"
                try:
                    chart = _flux_chart(obj, index)
                    values = deep_merge(_values_from(obj, index), spec.get("values") or {})
                except ChartError as exc:
                    problems.append(f"{subject}: {exc}")
                    continue
                target = spec.get("targetNamespace")
                name = spec.get("releaseName") or (f"{target}-{meta.get('name')}" if target else meta.get("name"))
                crds = ((spec.get("install") or {}).get("crds") or "Create") != "Skip"
                found.append(Release(cluster, str(name), str(target or meta.get("namespace")), chart, values, crds,
                                     unit, subject))
            elif kind == "Application" and api.startswith("argoproj.io/"):
                sources = spec.get("sources") or ([spec["source"]] if spec.get("source") else [])
                for source in sources:
                    if not source.get("chart"):
                        continue
                    helm = source.get("helm") or {}
                    values = yaml.safe_load(helm["values"]) if helm.get("values") else {}
                    values = deep_merge(values or {}, helm.get("valuesObject") or {})
                    repo = str(source.get("repoURL", ""))
                    repository = repo if "://" in repo else f"oci://{repo}"
                    chart = ChartRef(str(source["chart"]), str(source.get("targetRevision", "")), repository)
                    namespace = (spec.get("destination") or {}).get("namespace") or meta.get("namespace")
                    found.append(Release(cluster, str(helm.get("releaseName") or meta.get("name")), str(namespace),
                                         chart, values, not helm.get("skipCrds", False), unit,
                                         f"Application {meta.get('namespace')}/{meta.get('name')}"))
    return found, problems


# ---------------------------------------------------------------------------------------------
# Charts: chart directories, the pull cache, and helm pull
# ---------------------------------------------------------------------------------------------


def chart_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opc" / "charts"


def chart_dirs(explicit: Iterable[Path] = ()) -> list[Path]:
    dirs = list(explicit)
    dirs += [Path(p) for p in os.environ.get("OPC_CHART_DIR", "").split(os.pathsep) if p]
    return [*dirs, chart_cache()]


class ChartStore:
    """Finds (and pulls, once) the chart directory of a pinned chart; safe between threads."""

    def __init__(self, dirs: list[Path], pull: bool = True, substitutes: dict[str, Path] | None = None) -> None:
        self.dirs = dirs
        self.pull = pull
        # <chart>-<version> -> a directory rendered in its place, declared by the user when the
        # pinned chart cannot be had (reported as such, never silently)
        self.substitutes = substitutes or {}
        self._locks: dict[ChartRef, threading.Lock] = {}
        self._lock = threading.Lock()

    def _lock_for(self, ref: ChartRef) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(ref, threading.Lock())

    def find(self, ref: ChartRef) -> Path | None:
        for root in self.dirs:
            unpacked = root / ref.dirname
            if (unpacked / "Chart.yaml").is_file():
                return unpacked
            packed = root / f"{ref.dirname}.tgz"
            if packed.is_file():
                return self._unpack(packed, ref)
        return None

    def _unpack(self, packed: Path, ref: ChartRef) -> Path:
        target = chart_cache() / ref.dirname
        if (target / "Chart.yaml").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp, tarfile.open(packed) as archive:
            archive.extractall(tmp, filter="data")
            (Path(tmp) / ref.chart).rename(target)
        return target

    def get(self, ref: ChartRef) -> Path:
        if ref.dirname in self.substitutes:
            return self.substitutes[ref.dirname]
        with self._lock_for(ref):
            found = self.find(ref)
            if found:
                return found
            if not self.pull:
                raise ChartError(f"chart {ref.chart} {ref.version} is in no chart directory "
                                 f"({', '.join(map(str, self.dirs))}) and pulling is off")
            return self._pull(ref)

    def _pull(self, ref: ChartRef) -> Path:
        target = chart_cache() / ref.dirname
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            if ref.repository.startswith("oci://"):
                argv = [tools.find("helm"), "pull", f"{ref.repository}/{ref.chart}"]
            else:
                argv = [tools.find("helm"), "pull", ref.chart, "--repo", ref.repository]
            argv += ["--version", ref.version, "--untar", "--untardir", tmp]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300,
                                  env={**os.environ, "HELM_CACHE_HOME": str(Path(tmp) / ".helm-cache")})
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["helm pull failed"])[-1]
                raise ChartError(f"chart {ref.chart} {ref.version} is in no chart directory "
                                 f"({', '.join(map(str, self.dirs[:-1])) or 'none given'}) and helm pull from "
                                 f"{ref.repository} failed: {reason}")
            (Path(tmp) / ref.chart).rename(target)
        return target


# ---------------------------------------------------------------------------------------------
# helm template
# ---------------------------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def render_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opc" / "renders"


@cache
def chart_digest(chart_dir: Path) -> str:
    """What a chart directory holds (every file's path and bytes): a render cache key part."""
    digest = hashlib.sha256()
    for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(chart_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def probes_capabilities(chart_dir: Path) -> bool:
    """Whether any template of the chart (or its subcharts) asks .Capabilities.APIVersions."""
    return any("Capabilities.APIVersions" in p.read_text(errors="replace")
               for p in chart_dir.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".tpl", ".txt"))


@cache
def static_api_versions(chart_dir: Path) -> frozenset[str]:
    """group/version of every CRD a chart (or a subchart) holds as a YAML file that parses
    without rendering: its crds/ folders, and CRD manifests kept whole among its templates."""
    found: set[str] = set()
    for path in chart_dir.rglob("*.yaml"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "CustomResourceDefinition" not in text or ("crds" not in path.parts and "{{" in text):
            continue
        try:
            documents = parse_documents(text)
        except yaml.YAMLError:
            continue
        for doc in documents:
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                spec = doc.get("spec") or {}
                found.update(f"{spec.get('group')}/{v.get('name')}" for v in spec.get("versions") or []
                             if isinstance(v, dict) and v.get("served", True))
    return frozenset(found)


class Renderer:
    """Renders releases with `helm template`, in parallel, each distinct input once; results are
    kept in ``~/.cache/opc/renders`` keyed by the chart's content and every input."""

    def __init__(self, store: ChartStore, kube_version: str = DEFAULT_KUBE_VERSION, jobs: int | None = None,
                 cache: Path | None = None) -> None:
        self.store = store
        self.kube_version = kube_version
        self.jobs = jobs or max(2, (os.cpu_count() or 2))
        self.cache = cache if cache is not None else render_cache()
        self._memory: dict[str, tuple[list[dict[str, Any]], str]] = {}
        self._lock = threading.Lock()
        self.helm_runs = 0

    def _template(self, release: Release,
                  api_versions: tuple[str, ...]) -> tuple[list[dict[str, Any]], str, Path | None]:
        try:
            chart_dir = self.store.get(release.chart)
        except (ChartError, tools.ToolMissing) as exc:
            return [], str(exc), None
        if not probes_capabilities(chart_dir):
            api_versions = ()
        key = _digest(chart_digest(chart_dir), release.name, release.namespace, release.values, release.include_crds,
                      api_versions, self.kube_version)
        with self._lock:
            cached = self._memory.get(key)
        if cached is None:
            cached = self._load(key)
        if cached is None:
            cached = self._helm(release, chart_dir, api_versions)
            if not cached[1]:
                self._store(key, cached)
        with self._lock:
            self._memory[key] = cached
        # one list per distinct input, shared by the releases that rendered it (only ever changed
        # the same way for all of them: a namespace the chart leaves to its installer)
        return cached[0], cached[1], chart_dir

    def _load(self, key: str) -> tuple[list[dict[str, Any]], str] | None:
        path = self.cache / f"{key}.json"
        try:
            return json.loads(path.read_text()), ""
        except (OSError, ValueError):
            return None

    def _store(self, key: str, result: tuple[list[dict[str, Any]], str]) -> None:
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.cache, suffix=".tmp", delete=False) as handle:
                json.dump(result[0], handle)
            Path(handle.name).replace(self.cache / f"{key}.json")
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _helm(self, release: Release, chart_dir: Path,
              api_versions: tuple[str, ...]) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            self.helm_runs += 1
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(release.values, handle)
            values_file = handle.name
        try:
            argv = [tools.find("helm"), "template", release.name, str(chart_dir), "--namespace", release.namespace,
                    "--kube-version", self.kube_version, "--values", values_file, "--skip-tests"]
            if release.include_crds:
                argv.append("--include-crds")
            for api in api_versions:
                argv += ["--api-versions", api]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        finally:
            Path(values_file).unlink()
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return [], lines[-1] if lines else "helm template failed"
        try:
            return parse_documents(proc.stdout), ""
        except yaml.YAMLError as exc:
            return [], f"helm output is not YAML: {' '.join(str(exc).split())}"

    def render(self, releases: list[Release]) -> list[Rendered]:
        """Render every release; a chart that asks .Capabilities.APIVersions sees the API versions
        of the custom resources its cluster's charts carry as plain files (crds/ folders and CRD
        manifests that need no templating), as a cluster that has them installed answers."""
        dirs: dict[ChartRef, Path | None] = {}
        for release in releases:
            if release.chart not in dirs:
                try:
                    dirs[release.chart] = self.store.get(release.chart)
                except (ChartError, tools.ToolMissing):
                    dirs[release.chart] = None
        apis: dict[str, set[str]] = {}
        for release in releases:
            chart_dir = dirs[release.chart]
            if chart_dir is not None:
                apis.setdefault(release.cluster, set()).update(static_api_versions(chart_dir))
        pairs = [(r, tuple(sorted(apis.get(r.cluster, ())))) for r in releases]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            done = list(pool.map(lambda p: self._template(*p), pairs))
        return [Rendered(release, objects, error, chart_dir, release.chart.dirname in self.store.substitutes)
                for (release, _), (objects, error, chart_dir) in zip(pairs, done, strict=True)]
