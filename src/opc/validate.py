"""`opc validate`: build every kustomization, validate every object strictly, lint every YAML file."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import kustomize
from .charts import DEFAULT_KUBE_VERSION, Rendered
from .crds import SOURCES_FILE, SourceError, load_sources
from .lint import LintProblem, lint_tree
from .schemas import DEFAULT_KUBERNETES_VERSION, Outcome, SchemaStore


def object_id(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


@dataclass
class Finding:
    category: str  # build | invalid | missing | lint | conflict | policy | wiring | security | secrets
    where: str  # a path relative to the repository root
    subject: str  # the object, or "" for a whole file
    message: str

    def __str__(self) -> str:
        subject = f" {self.subject}:" if self.subject else ""
        return f"{self.category.upper():8} {self.where}:{subject} {self.message}"


@dataclass
class Generated:
    """Objects made from the repository by something other than kustomize, for one cluster: a Helm
    release's chart output, or KubeVela's expansion of an Application."""

    cluster: str
    source: str  # what made them, e.g. "HelmRelease monitoring/kube-prometheus-stack (chart 82.15.1)"
    where: str  # the kustomization the source object was built in
    objects: list[dict[str, Any]]


@dataclass
class Report:
    root: Path
    kustomizations: int = 0
    built: int = 0
    valid: int = 0
    invalid: int = 0
    missing: int = 0
    lint_files: int = 0
    findings: list[Finding] = field(default_factory=list)
    builds: list[kustomize.Build] = field(default_factory=list)
    releases: list[Rendered] = field(default_factory=list)
    generated: list[Generated] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures
    memo: dict[str, Any] = field(default_factory=dict)  # what checks compute once per report
    namespace_levels: list[Any] = field(default_factory=list)  # policy.NamespaceLevel, once checked

    def count(self, category: str) -> int:
        return sum(1 for f in self.findings if f.category == category)

    @property
    def lint_problems(self) -> int:
        return self.count("lint")

    @property
    def wiring_errors(self) -> int:
        return self.count("wiring")

    @property
    def conflicts(self) -> int:
        return self.count("conflict")

    @property
    def policy_violations(self) -> int:
        return self.count("policy")

    @property
    def failed_builds(self) -> int:
        return self.kustomizations - self.built

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        charts = [r for r in self.releases if r.ok]
        chart_objects = sum(len(r.objects) for r in charts)
        substituted = sorted({r.release.chart.dirname for r in charts if r.substitute})
        note = f" ({', '.join(substituted)} from a declared substitute)" if substituted else ""
        return (
            f"{self.built} kustomizations built, {len(charts)} chart renders{note} ({chart_objects} objects), "
            f"{self.valid} objects valid, {self.invalid} invalid, {self.missing} missing; "
            f"{self.failed_builds} failed builds, {self.count('chart') + self.count('vela')} chart or vela problems, "
            f"{self.count('values')} unknown values keys; "
            f"yamllint: {self.lint_files} files, {self.lint_problems} problems; "
            f"conflicts: {self.conflicts}; policy: {self.policy_violations} violations; "
            f"mirror: {self.count('mirror')} images; wiring: {self.wiring_errors} errors; "
            f"security: {self.count('security')} findings; secrets: {self.count('secrets')} missing"
        )

    def objects(self) -> list[tuple[str, dict[str, Any]]]:
        """(kustomization path, object) for every object of every successful build."""
        return [(self.rel(b.path), o) for b in self.builds if b.ok for o in b.objects]

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    def cluster_units(self) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
        """Per cluster (clusters/<name>), what its GitOps engine applies: the objects of each of its
        deployable units (kustomizations under clusters/<name>/ that no other one includes)."""
        builds = [b for b in self.builds if b.ok]
        paths = tuple(b.path for b in builds)
        if self.memo.get("included", (None,))[0] != paths:  # the checks ask it many times
            self.memo["included"] = (paths, kustomize.included_by_others(list(paths)))
        included = self.memo["included"][1]
        units: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        for build in builds:
            where = self.rel(build.path)
            parts = where.split("/")
            if build.path.resolve() in included or len(parts) < 2 or parts[0] != "clusters":
                continue
            units.setdefault(parts[1], []).append((where, build.objects))
        return units

    def cluster_objects(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Per cluster, every object its API server receives: its units' objects, its releases'
        chart output and what KubeVela creates there; each with where it comes from."""
        out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for cluster, units in self.cluster_units().items():
            out[cluster] = [(where, obj) for where, objects in units for obj in objects]
        for generated in self.generated:
            out.setdefault(generated.cluster, []).extend(
                (f"{generated.where} ({generated.source})", obj) for obj in generated.objects)
        return out


# Built-in kinds that live outside namespaces (the API's cluster-scoped resources).
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "VolumeAttributesClass",
    "PriorityClass", "RuntimeClass", "IngressClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "APIService", "CertificateSigningRequest", "FlowSchema",
    "PriorityLevelConfiguration", "ClusterTrustBundle", "DeviceClass", "ResourceSlice", "IPAddress", "ServiceCIDR",
    "StorageVersionMigration",
})

Progress = Callable[[str], None]
WiringCheck = Callable[[Report], list[Finding]]


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ChartOptions:
    """How `opc validate` gets and renders the charts of the releases."""

    dirs: list[Path] = field(default_factory=list)  # chart directories (<chart>-<version>/), before the cache
    pull: bool = True  # helm pull what no directory has
    kube_version: str = DEFAULT_KUBE_VERSION
    substitutes: dict[str, Path] = field(default_factory=dict)  # <chart>-<version> -> chart rendered instead


def repository_entries(root: Path, filename: str, category: str) -> tuple[list[tuple[str, int, Any]], list[Finding]]:
    """Every entry of every ``filename`` (a YAML list) in the repository outside hidden folders:
    (where, index, entry), and a finding for each file that cannot be read."""
    entries: list[tuple[str, int, Any]] = []
    problems: list[Finding] = []
    for path in sorted(root.rglob(filename)):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            problems.append(Finding(category, rel, "", f"not readable: {' '.join(str(exc).split())}"))
            continue
        entries += [(rel, index, entry) for index, entry in enumerate(loaded if isinstance(loaded, list) else [None])]
    return entries, problems


def decrypted_shape(obj: dict[str, Any]) -> dict[str, Any]:
    """A SOPS-encrypted object as the API server receives it once Flux decrypts it: without the
    top-level "sops" metadata (its encrypted values keep their keys and types)."""
    return {k: v for k, v in obj.items() if k != "sops"} if "sops" in obj else obj


class _Validator:
    """Validates objects once each (by content), counting and reporting them."""

    def __init__(self, report: Report, store: SchemaStore) -> None:
        self.report, self.store = report, store
        self.cache: dict[str, Outcome] = {}

    def __call__(self, where: str, objects: list[dict[str, Any]], subject_prefix: str = "") -> int:
        bad = 0
        for obj in map(decrypted_shape, objects):
            key = _digest(obj)
            outcome = self.cache.get(key)
            if outcome is None:
                outcome = self.cache[key] = self.store.validate(obj)
            if outcome.status == "valid":
                self.report.valid += 1
                continue
            bad += 1
            if outcome.status == "missing":
                self.report.missing += 1
            else:
                self.report.invalid += 1
            for message in outcome.errors:
                self.report.findings.append(Finding(outcome.status, where, subject_prefix + object_id(obj), message))
        return bad


def _render_charts(report: Report, options: ChartOptions, store: SchemaStore, say: Progress) -> None:
    """Render every release of every cluster; register the CRDs the charts carry as schemas."""
    from .charts import ChartStore, Renderer, chart_dirs, releases_of

    releases = []
    for cluster, units in sorted(report.cluster_units().items()):
        found, problems = releases_of(cluster, units)
        releases += found
        report.findings.extend(Finding("chart", f"clusters/{cluster}", "", p) for p in problems)
    if not releases:
        return
    distinct = {(r.chart, r.name, r.namespace, _digest(r.values)) for r in releases}
    say(f"rendering {len(releases)} Helm releases of {len({r.cluster for r in releases})} clusters "
        f"({len(distinct)} distinct) with helm template")
    renderer = Renderer(ChartStore(chart_dirs(options.dirs), pull=options.pull, substitutes=options.substitutes),
                        options.kube_version)
    report.releases = renderer.render(releases)
    cluster_scoped = set(CLUSTER_SCOPED)
    for rendered in report.releases:
        for obj in rendered.objects:
            if obj.get("kind") == "CustomResourceDefinition" and (obj.get("spec") or {}).get("scope") == "Cluster":
                cluster_scoped.add(str(((obj.get("spec") or {}).get("names") or {}).get("kind")))
    for _, obj in report.objects():
        if obj.get("kind") == "CustomResourceDefinition" and (obj.get("spec") or {}).get("scope") == "Cluster":
            cluster_scoped.add(str(((obj.get("spec") or {}).get("names") or {}).get("kind")))
    reported: set[tuple[str, str]] = set()
    for rendered in report.releases:
        for obj in rendered.objects:  # helm leaves a namespaced object's namespace to whoever applies it
            meta = obj.setdefault("metadata", {})
            if obj.get("kind") not in cluster_scoped and not meta.get("namespace"):
                meta["namespace"] = rendered.release.namespace
        release = rendered.release
        if not rendered.ok:
            if (release.subject, rendered.error) not in reported:
                reported.add((release.subject, rendered.error))
                report.findings.append(Finding("chart", release.unit, release.subject, rendered.error))
            continue
        for obj in rendered.objects:
            if obj.get("kind") == "CustomResourceDefinition":
                store.add_crd(obj)
        report.generated.append(Generated(release.cluster, f"{release.subject}, chart {release.chart.chart} "
                                          f"{release.chart.version}", release.unit, rendered.objects))


def _expand_applications(report: Report, say: Progress) -> None:
    """KubeVela's expansion of every Application the hub runs, assigned to the clusters each
    topology policy selects; definitions are the repository's and those vela-core installs."""
    from .fleet import Fleet
    from .vela import VelaError, expand

    units = report.cluster_units()
    applications = [(cluster, where, obj) for cluster, cluster_units in units.items()
                    for where, objects in cluster_units for obj in objects
                    if obj.get("kind") == "Application" and str(obj.get("apiVersion", "")).startswith("core.oam.dev/")]
    if not applications:
        return
    definitions = [o for g in report.generated for o in g.objects if str(o.get("kind", "")).endswith("Definition")
                   and str(o.get("apiVersion", "")).startswith("core.oam.dev/")]
    definitions += [o for _, o in report.objects() if str(o.get("kind", "")).endswith("Definition")
                    and str(o.get("apiVersion", "")).startswith("core.oam.dev/")]
    fleet = Fleet.from_objects([o for _, o in report.objects()])
    say(f"expanding {len(applications)} KubeVela Applications with vela dry-run")
    with tempfile.TemporaryDirectory(prefix="opc-defs-") as tmp:
        files = []
        for index, definition in enumerate({_digest(d): d for d in definitions}.values()):
            path = Path(tmp) / f"{index:03d}.yaml"
            path.write_text(yaml.safe_dump(definition))
            files.append(path)
        for cluster, where, app in applications:
            subject = object_id(app)
            app_file = Path(tmp) / "application.yaml"
            app_file.write_text(yaml.safe_dump(app))
            try:
                expanded = expand(app_file, files)
            except (VelaError, OSError) as exc:
                report.findings.append(Finding("vela", where, subject, str(exc)))
                continue
            policies = {p.get("name"): p for p in (app.get("spec") or {}).get("policies") or []}
            by_target: dict[str, list[dict[str, Any]]] = {}
            for policy, obj in expanded:
                topology = policies.get(policy) if policy else None
                targets = fleet.topology(topology).clusters if topology else [cluster]
                for target in targets:
                    by_target.setdefault(target, []).append(obj)
            for target, objects in sorted(by_target.items()):
                report.generated.append(Generated(target, f"{subject}, vela dry-run", where, objects))


def _build(report: Report, jobs: int | None, say: Progress) -> None:
    """Build every kustomization under the report's root."""
    paths = kustomize.find_kustomizations(report.root)
    report.kustomizations = len(paths)
    say(f"building {len(paths)} kustomizations under {report.root}")
    report.builds = list(kustomize.build_all(paths, jobs=jobs))
    for build in report.builds:
        if build.ok:
            report.built += 1
        else:
            reason = build.error.splitlines()[-1] if build.error else "failed"
            report.findings.append(Finding("build", report.rel(build.path), "", reason))
    say(f"built {report.built} of {len(paths)} kustomizations")


def render_releases(root: Path, charts: ChartOptions, progress: Progress | None = None) -> Report:
    """The first half of validate_repo: every kustomization built and every Helm release rendered
    (report.builds, report.releases), nothing expanded or validated."""
    report = Report(root.resolve())
    say = progress or (lambda _msg: None)
    _build(report, None, say)
    _render_charts(report, charts, SchemaStore([], DEFAULT_KUBERNETES_VERSION, []), say)
    return report


def validate_repo(
    root: Path,
    schema_dirs: list[Path],
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
    jobs: int | None = None,
    progress: Progress | None = None,
    lint: bool = True,
    wiring: Sequence[WiringCheck] | None = None,
    schema_locations: list[str] | None = None,
    charts: ChartOptions | None = None,
) -> Report:
    """Build every kustomization; render every Helm release and expand every KubeVela Application
    of every cluster (unless ``charts`` is None); validate every object strictly; lint; check."""
    root = root.resolve()
    report = Report(root)
    store = SchemaStore(schema_dirs, kubernetes_version, schema_locations or [])
    try:
        store.add_sources(load_sources(root))
    except SourceError as exc:
        report.findings.append(Finding("invalid", SOURCES_FILE, "", str(exc)))
    say = progress or (lambda _msg: None)
    _build(report, jobs, say)

    if charts is not None:
        _render_charts(report, charts, store, say)
        _expand_applications(report, say)

    validate = _Validator(report, store)
    for build in report.builds:
        if build.ok:
            validate(report.rel(build.path), build.objects)
    for generated in report.generated:
        validate(generated.where, generated.objects, f"[{generated.source}] ")
    say(f"validated {report.valid + report.invalid + report.missing} objects: {report.valid} valid, "
        f"{report.invalid} invalid, {report.missing} without a schema")

    if lint:
        files, problems, source = lint_tree(root)
        report.lint_files = files
        report.findings.extend(Finding("lint", p.path, "", f"{p.line}:{p.column} {p.message} ({p.rule})")
                               for p in problems)
        say(f"yamllint ({source}): {files} files, {len(problems)} problems")

    for check in wiring or []:
        report.findings.extend(check(report))
    return report


__all__ = ["ChartOptions", "Finding", "Generated", "LintProblem", "Report", "object_id", "render_releases",
           "validate_repo"]
