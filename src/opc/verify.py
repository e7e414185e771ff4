"""`opc verify`: every cluster's objects, in the order its GitOps engine applies them, put to a real
kube-apiserver (controlplane.py) with the real CRDs and Pod Security admission.

What a cluster receives comes from `opc validate`'s report (kustomize builds, every Helm
release's chart output, KubeVela's expansion). For each cluster a plan of steps is built:

* Flux: bootstrap (the flux-system namespace, the Flux Operator's and Flux's CRDs), then the root
  unit ``clusters/<name>``, then each Flux Kustomization's path in ``dependsOn`` order; each unit's
  HelmReleases follow it in their ``dependsOn`` order, as helm-controller installs them.
* Argo CD: the hub applies every cluster's root unit (its Applications live in argocd); each
  Application's path or chart goes to its destination cluster, in sync-wave order.
* KubeVela's expansion last, on the clusters its topology picks.

Within a step, CustomResourceDefinitions are applied for real (and waited for until
Established), then Namespaces, PriorityClasses and RuntimeClasses for real (later objects need
them), then every other object is server-side applied with ``dryRun=All`` and strict field
validation. Every pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) is
also created as a bare Pod with ``dryRun=All``: Pod Security admission enforces on Pods only.

The clusters of a repository share one API server, so what one cluster really created could
hide another's omission. The plan therefore tracks, per cluster, the namespaces, custom resource
kinds and priority classes that cluster itself has created before each object, and reports an
object that needs one it has not (as its own fresh cluster would refuse it).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .controlplane import Answer, Client, ControlPlane, Resource
from .crds import SourceError, fetch, load_sources
from .pods import LEVELS
from .policy import ENFORCE
from .validate import Report, decrypted_shape, object_id

# What a new cluster has before anything is applied.
INITIAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
REAL_KINDS = ("Namespace", "PriorityClass", "RuntimeClass")
POD_TEMPLATES = {"Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
                 "DaemonSet": ("spec", "template"), "ReplicaSet": ("spec", "template"),
                 "Job": ("spec", "template"), "CronJob": ("spec", "jobTemplate", "spec", "template")}
ENGINE_NAMESPACE = {"flux": "flux-system", "argocd": "argocd"}
# Groups whose CRDs the engine itself installs at bootstrap (the Flux Operator from its chart and
# Flux's toolkit from the FluxInstance; Argo CD from its chart).
ENGINE_GROUPS = {"flux": ("fluxcd.controlplane.io", "source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io",
                          "helm.toolkit.fluxcd.io", "notification.toolkit.fluxcd.io"),
                 "argocd": ("argoproj.io",)}
ENGINE_CHARTS = {"flux": "flux-operator", "argocd": "argo-cd"}

# Warnings the API server gives on objects of the platform that are right as they are; any other
# warning fails verification. Each entry: a pattern of the warning text, and why it stays.
EXPLAINED_WARNINGS: list[tuple[str, str]] = []


@dataclass
class Step:
    label: str
    objects: list[dict[str, Any]]


@dataclass
class Problem:
    step: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.step}: {self.subject}: {self.message}"


@dataclass
class Warned:
    step: str
    subject: str
    message: str
    explanation: str = ""


@dataclass
class ClusterResult:
    cluster: str
    engine: str
    steps: int = 0
    created: int = 0  # really applied (CRDs, namespaces, ...)
    dry_run: int = 0  # server-side applied with dryRun=All
    pods: int = 0  # pod templates dry-run as bare Pods
    rejected: list[Problem] = field(default_factory=list)
    warnings: list[Warned] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unexplained(self) -> list[Warned]:
        return [w for w in self.warnings if not w.explanation]

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.unexplained

    def summary(self) -> str:
        return (f"{self.cluster} ({self.engine}): {self.created + self.dry_run} objects accepted "
                f"({self.created} created, {self.dry_run} dry-run), {self.pods} pods admitted; "
                f"{len(self.rejected)} rejected; {len(self.warnings)} warnings "
                f"({len(self.unexplained)} unexplained); {self.seconds:.1f}s")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _group(obj: dict[str, Any]) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/", maxsplit=1)[0] if "/" in api else ""


def _is_crd(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "CustomResourceDefinition"


def _wave(obj: dict[str, Any]) -> int:
    try:
        return int(str((_meta(obj).get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0")))
    except ValueError:
        return 0


def _topological(items: list[tuple[str, list[str]]]) -> list[str]:
    """Names in dependency order (each after what it depends on); input order breaks ties."""
    order: list[str] = []
    deps = dict(items)
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return
        visiting.add(name)
        for dep in deps.get(name, []):
            if dep in deps:
                visit(dep)
        visiting.discard(name)
        order.append(name)

    for name, _ in items:
        visit(name)
    return order


def engine_of(report: Report) -> str:
    for _, obj in report.objects():
        if obj.get("kind") == "Application" and _group(obj) == "argoproj.io":
            return "argocd"
    return "flux"


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def _units(report: Report) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
    if "verify-units" not in report.memo:
        report.memo["verify-units"] = report.cluster_units()
    return dict(report.memo["verify-units"])


def _norm(path: str) -> str:
    return path.strip().removeprefix("./").rstrip("/") or "."


def _in_namespace(obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """``obj`` in the Application's destination namespace if it names none (Argo CD sets it on
    namespaced objects; a cluster-scoped kind ignores it, so it is set only where the server
    would use it: _one checks the kind's scope before use)."""
    if not namespace or _meta(obj).get("namespace"):
        return obj
    return {**obj, "metadata": {**_meta(obj), "namespace": namespace}}


def _release_steps(report: Report, cluster: str, unit: str) -> list[Step]:
    """The chart output of the releases built in ``unit`` for ``cluster``, in dependsOn order."""
    rendered = [r for r in report.releases if r.ok and r.release.cluster == cluster and r.release.unit == unit]
    by_name = {r.release.subject: r for r in rendered}
    deps: list[tuple[str, list[str]]] = []
    for r in rendered:
        source = _source_of(report, cluster, unit, r.release.subject)
        needs = []
        for dep in (source.get("spec") or {}).get("dependsOn") or []:
            namespace = dep.get("namespace") or _meta(source).get("namespace")
            needs.append(f"HelmRelease {namespace}/{dep.get('name')}")
        deps.append((r.release.subject, needs))
    ordered = _topological(sorted(deps, key=lambda d: _wave(_source_of(report, cluster, unit, d[0]))))
    return [Step(f"{subject}, chart {by_name[subject].release.chart.chart} {by_name[subject].release.chart.version}",
                 by_name[subject].objects) for subject in ordered]


def _source_of(report: Report, cluster: str, unit: str, subject: str) -> dict[str, Any]:
    for where, objects in _units(report).get(cluster, []):
        if where != unit:
            continue
        for obj in objects:
            if f"{obj.get('kind')} {_meta(obj).get('namespace')}/{_meta(obj).get('name')}" == subject:
                return obj
    return {}


def _bootstrap(report: Report, engine: str, cluster: str) -> Step:
    """What installing the engine gives a new cluster: its namespace, and the CRDs of its chart."""
    chart = ENGINE_CHARTS[engine]
    crds = [o for r in report.releases if r.ok and r.release.cluster == cluster and r.release.chart.chart == chart
            for o in r.objects if _is_crd(o)]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ENGINE_NAMESPACE[engine]}}
    return Step(f"bootstrap ({engine}: {ENGINE_NAMESPACE[engine]} and the {chart} chart's CRDs)", [namespace, *crds])


def flux_plan(report: Report, cluster: str) -> tuple[list[Step], list[str]]:
    units = dict(_units(report).get(cluster, []))
    root = f"clusters/{cluster}"
    problems: list[str] = []
    if root not in units:
        return [], [f"{root} does not build"]
    steps = [_bootstrap(report, "flux", cluster), Step(root, units[root])]
    steps += _release_steps(report, cluster, root)
    layers = [o for o in units[root] if o.get("kind") == "Kustomization" and _group(o) == "kustomize.toolkit.fluxcd.io"]
    paths = {_meta(k).get("name"): _norm(str((k.get("spec") or {}).get("path", ""))) for k in layers}
    order = _topological([(str(_meta(k).get("name")), [str(d.get("name")) for d in
                                                        (k.get("spec") or {}).get("dependsOn") or []])
                          for k in layers])
    reached = {root}
    for name in order:
        path = paths[name]
        if path in reached:
            continue
        if path not in units:
            problems.append(f"Kustomization flux-system/{name}: path {path} is not a kustomization that builds")
            continue
        reached.add(path)
        steps.append(Step(path, units[path]))
        steps += _release_steps(report, cluster, path)
    for where in units:
        if where not in reached:
            problems.append(f"{where}: no Flux Kustomization of {root} applies it")
    return steps, problems


def argo_plans(report: Report) -> tuple[dict[str, list[Step]], list[str], list[str]]:
    """Per destination cluster, its steps; the hub also receives every cluster's Applications."""
    units_by_cluster = _units(report)
    hub = next((c for c, units in units_by_cluster.items() for w, objects in units if w == f"clusters/{c}"
                for o in objects if o.get("kind") == "Application" and _meta(o).get("name") == c
                and ((o.get("spec") or {}).get("source") or {}).get("path") == f"clusters/{c}"), "hub")
    plans: dict[str, list[Step]] = {c: [_bootstrap(report, "argocd", hub)] if c == hub else []
                                    for c in units_by_cluster}
    problems: list[str] = []
    applications: list[tuple[str, str, dict[str, Any]]] = []  # (cluster dir, unit, Application)
    for cluster, units in sorted(units_by_cluster.items()):
        root = f"clusters/{cluster}"
        for where, built in units:
            if where == root:
                plans[hub].append(Step(f"{root} (applied on {hub} by the root Application {cluster})", built))
            applications += [(cluster, where, o) for o in built
                             if o.get("kind") == "Application" and _group(o) == "argoproj.io"]
    # The repository itself, as each cluster's root Application names it.
    own = {str(_meta(a).get("name")): str(((a.get("spec") or {}).get("source") or {}).get("repoURL"))
           for _, _, a in applications
           if ((a.get("spec") or {}).get("source") or {}).get("path") == f"clusters/{_meta(a).get('name')}"}
    own_urls = set(own.values())
    outside: set[str] = set()
    # Every Application's sources, to their destination, in sync-wave order.
    targets: dict[str, list[tuple[int, Step]]] = {}
    for cluster, unit, app in applications:
        spec = app.get("spec") or {}
        destination = str((spec.get("destination") or {}).get("name") or "")
        target = hub if destination == "in-cluster" else destination
        if target not in plans:
            problems.append(f"{object_id(app)}: destination {destination} is not a cluster of the repository")
            continue
        name = str(_meta(app).get("name"))
        subject = f"Application {_meta(app).get('namespace')}/{name}"
        labels: list[str] = []
        objects: list[dict[str, Any]] = []
        for source in spec.get("sources") or ([spec["source"]] if spec.get("source") else []):
            path = source.get("path")
            if source.get("chart"):
                for r in report.releases:
                    release = r.release
                    if r.ok and release.subject == subject and release.cluster == cluster and release.unit == unit:
                        labels.append(f"chart {r.release.chart.chart} {r.release.chart.version}")
                        objects += r.objects
            elif path and str(source.get("repoURL")) not in own_urls:
                outside.add(f"{object_id(app)}: {source.get('repoURL')} {path} (another repository: not verified)")
            elif path and _norm(path) != f"clusters/{target}":
                found = dict(units_by_cluster.get(cluster, [])).get(_norm(path))
                if found is None:
                    found = next((b.objects for b in report.builds if b.ok and report.rel(b.path) == _norm(path)), None)
                if found is None:
                    problems.append(f"{object_id(app)}: {path} is not a kustomization of the repository that builds")
                    continue
                namespace = (spec.get("destination") or {}).get("namespace")
                labels.append(path)
                objects += [_in_namespace(o, namespace) for o in found]
        if objects:  # Argo CD syncs an Application's sources together (namespaces first)
            targets.setdefault(target, []).append((_wave(app), Step(f"{subject} ({', '.join(labels)})", objects)))
    for target, steps in targets.items():
        plans[target] += [step for _, step in sorted(steps, key=lambda s: s[0])]
    return plans, problems, sorted(outside)


def _schema_crd(group: str, kind: str, version: str, schema_dirs: Iterable[Path],
                namespaced: bool) -> dict[str, Any] | None:
    """A stand-in CRD made from a JSON schema file ({group}/{kind}_{version}.json), for a group
    whose real CRD cannot be had here; its plural is assumed to be the kind + "s"."""
    for root in schema_dirs:
        path = Path(root) / group / f"{kind.lower()}_{version}.json"
        if path.is_file():
            schema = json.loads(path.read_text(encoding="utf-8"))
            schema.pop("$schema", None)
            plural = f"{kind.lower()}s"
            return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": f"{plural}.{group}",
                                 "annotations": {"opc.dev/made-from": str(path)}},
                    "spec": {"group": group, "scope": "Namespaced" if namespaced else "Cluster",
                             "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                                       "listKind": f"{kind}List"},
                             "versions": [{"name": version, "served": True, "storage": True,
                                           "schema": {"openAPIV3Schema": _openapi(schema)}}]}}
    return None


def _openapi(schema: Any) -> Any:
    """A JSON schema as a CRD's structural openAPIV3Schema (drops what CRDs do not allow)."""
    if isinstance(schema, dict):
        out = {k: _openapi(v) for k, v in schema.items() if k not in ("$schema", "$id", "additionalProperties")
               or (k == "additionalProperties" and isinstance(v, dict))}
        if isinstance(out.get("type"), list):
            types = [t for t in out["type"] if t != "null"]
            out["type"] = types[0] if types else "object"
            out["nullable"] = True
        return out
    if isinstance(schema, list):
        return [_openapi(v) for v in schema]
    return schema


def _sourced_crds(report: Report, plans: dict[str, list[Step]], schema_dirs: list[Path],
                  notes: list[str]) -> None:
    """Add to each cluster's first step the CRDs its objects need that no step of it carries:
    those operators install at runtime (the repository's crd-sources.yaml), fetched once."""
    try:
        sources = {g: s for s in load_sources(report.root) for g in s.groups}
    except SourceError as exc:
        notes.append(str(exc))
        sources = {}
    fetched: dict[int, list[dict[str, Any]] | str] = {}
    for steps in plans.values():
        if not steps:
            continue
        carried = {str((o.get("spec") or {}).get("group")) for s in steps for o in s.objects if _is_crd(o)}
        needed: dict[str, dict[tuple[str, str], bool]] = {}
        for step in steps:
            for obj in step.objects:
                group = _group(obj)
                if group and "." in group and group not in carried and not group.endswith(".k8s.io"):
                    version = str(obj.get("apiVersion")).split("/")[1]
                    needed.setdefault(group, {})[(str(obj.get("kind")), version)] = bool(_meta(obj).get("namespace"))
        extra: list[dict[str, Any]] = []
        for group, kinds in sorted(needed.items()):
            source = sources.get(group)
            crds: list[dict[str, Any]] | str = "no source in crd-sources.yaml"
            if source is not None:
                if id(source) not in fetched:
                    try:
                        fetched[id(source)] = fetch(source)
                    except SourceError as exc:
                        fetched[id(source)] = str(exc)
                crds = fetched[id(source)]
            if isinstance(crds, list):
                extra += [c for c in crds if (c.get("spec") or {}).get("group") == group and c not in extra]
                continue
            for (kind, version), namespaced in sorted(kinds.items()):
                made = _schema_crd(group, kind, version, schema_dirs, namespaced)
                if made is not None:
                    extra.append(made)
                    note = (f"{kind}.{group} {version}: a stand-in CRD from "
                            f"{made['metadata']['annotations']['opc.dev/made-from']} ({crds})")
                    if note not in notes:
                        notes.append(note)
        if extra:
            steps[0] = Step(steps[0].label + " + CRDs operators install (crd-sources.yaml)", steps[0].objects + extra)


def plans_of(report: Report, schema_dirs: Iterable[Path] = (),
             notes: list[str] | None = None) -> tuple[str, dict[str, list[Step]], dict[str, list[str]]]:
    engine = engine_of(report)
    plans: dict[str, list[Step]] = {}
    problems: dict[str, list[str]] = {}
    if engine == "flux":
        for cluster in sorted(_units(report)):
            plans[cluster], problems[cluster] = flux_plan(report, cluster)
    else:
        plans, shared, outside = argo_plans(report)
        problems = {c: list(shared) if i == 0 else [] for i, c in enumerate(sorted(plans))}
        if notes is not None:
            notes += outside
    for generated in report.generated:
        if generated.source.endswith("vela dry-run") and generated.cluster in plans:
            plans[generated.cluster].append(Step(f"{generated.source} ({generated.where})", generated.objects))
    _sourced_crds(report, plans, list(schema_dirs), notes if notes is not None else [])
    return engine, plans, problems


# ---------------------------------------------------------------------------------------------
# Applying a plan
# ---------------------------------------------------------------------------------------------


def _pod_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    path = POD_TEMPLATES.get(str(obj.get("kind")))
    if path is None or not str(obj.get("apiVersion", "")).startswith(("apps/", "batch/")):
        return None
    template: Any = obj
    for key in path:
        template = (template or {}).get(key)
    if not isinstance(template, dict):
        return None
    meta = _meta(obj)
    tmeta = template.get("metadata") or {}
    spec = dict(template.get("spec") or {})
    claims = (obj.get("spec") or {}).get("volumeClaimTemplates") or [] if obj.get("kind") == "StatefulSet" else []
    if claims:  # the StatefulSet controller adds a volume per claim template to each pod
        spec["volumes"] = list(spec.get("volumes") or []) + [
            {"name": _meta(c).get("name"),
             "persistentVolumeClaim": {"claimName": f"{_meta(c).get('name')}-{meta.get('name')}-0"}} for c in claims]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{str(meta.get('name'))[:200]}-pod", "namespace": meta.get("namespace"),
                         "labels": tmeta.get("labels") or {}, "annotations": tmeta.get("annotations") or {}},
            "spec": spec}


_PSA_WARNING = re.compile(r'^would violate PodSecurity "(\w+):')


def explain(message: str, enforced: str = "") -> str:
    """Why a warning is expected, or "". ``enforced`` is the Pod Security level the object's
    namespace enforces."""
    psa = _PSA_WARNING.match(message)
    if psa and enforced in LEVELS and LEVELS.index(enforced) > LEVELS.index(psa.group(1)):
        return (f"the namespace enforces '{enforced}', the least its pods need (opc validate's pod gate holds "
                f"it there); its warn label '{psa.group(1)}' names the gap on purpose")
    for pattern, why in EXPLAINED_WARNINGS:
        if re.search(pattern, message):
            return why
    return ""


class Verifier:
    """Applies plans to one API server; keeps per-cluster what each cluster created itself."""

    def __init__(self, plane: ControlPlane, progress: Callable[[str], None] = lambda _m: None) -> None:
        self.plane = plane
        self.client = Client(plane)
        self.say = progress
        self.builtin: set[tuple[str, str]] = set()  # (apiVersion, kind) served before any CRD
        self._crd_resource = self._need("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        self._discover_builtin()
        self.levels: dict[str, str] = {}

    def _need(self, api_version: str, kind: str) -> Resource:
        resource = self.client.resource(api_version, kind)
        if resource is None:
            raise RuntimeError(f"the API server does not serve {kind} {api_version}")
        return resource

    def _discover_builtin(self) -> None:
        groups = self.client.call("GET", "/apis").body.get("groups") or []
        versions = ["v1"] + [v["groupVersion"] for g in groups for v in g.get("versions") or []]
        for version in versions:
            prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
            for item in self.client.call("GET", prefix).body.get("resources") or []:
                if "/" not in str(item.get("name", "")):
                    self.builtin.add((version, str(item.get("kind"))))

    # -- CRDs -----------------------------------------------------------------------------------

    def _install_crds(self, crds: list[dict[str, Any]], step: str, result: ClusterResult,
                      served: set[tuple[str, str]], timeout: float = 180.0) -> None:
        """Apply the CRDs for real and wait until each is Established. A CRD this control plane
        already holds exactly as opc left it (same content applied, same resourceVersion) is not
        sent again: the server's answer to it, warnings included, is the one it gave then."""
        current = {str(_meta(c).get("name")): str(_meta(c).get("resourceVersion"))
                   for c in self.client.list(self._crd_resource, metadata_only=True)}
        pending: list[tuple[dict[str, Any], str, list[str]]] = []
        for crd in crds:
            name = str(_meta(crd).get("name"))
            digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()
            known = self.plane.crds.get(name)
            if known and known[0] == digest and current.get(name) == known[1]:
                self._record(Answer(200, {}, known[2]), step, object_id(crd), result, real=True)
                self._serve(crd, served)
                continue
            answer = self.client.apply(crd, dry_run=False, resource=self._crd_resource)
            self._record(answer, step, object_id(crd), result, real=True)
            if answer.ok:
                pending.append((crd, digest, answer.warnings))
        deadline = time.monotonic() + timeout
        for crd, digest, warnings in pending:
            name = str(_meta(crd).get("name"))
            while True:
                body = self.client.get(self._crd_resource, name).body
                status = body.get("status") or {}
                conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
                if conditions.get("Established") == "True":
                    self.plane.crds[name] = (digest, str(_meta(body).get("resourceVersion")), warnings)
                    break
                if time.monotonic() > deadline:
                    result.rejected.append(Problem(step, f"CustomResourceDefinition {name}",
                                                   f"not Established after {timeout:.0f}s: {conditions}"))
                    break
                time.sleep(0.2)
            self._serve(crd, served)

    def _serve(self, crd: dict[str, Any], served: set[tuple[str, str]]) -> None:
        """The CRD's served versions are now kinds objects may use."""
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            if version.get("served"):
                api_version = f"{spec.get('group')}/{version.get('name')}"
                self.client.forget(api_version)
                served.add((api_version, str((spec.get("names") or {}).get("kind"))))

    # -- one object ------------------------------------------------------------------------------

    def _record(self, answer: Answer, step: str, subject: str, result: ClusterResult, real: bool = False,
                pod: bool = False, enforced: str = "") -> None:
        for warning in answer.warnings:
            result.warnings.append(Warned(step, subject, warning, explain(warning, enforced)))
        if not answer.ok:
            result.rejected.append(Problem(step, subject, answer.message))
        elif pod:
            result.pods += 1
        elif real:
            result.created += 1
        else:
            result.dry_run += 1

    def verify(self, cluster: str, engine: str, steps: list[Step], problems: Iterable[str] = ()) -> ClusterResult:
        started = time.perf_counter()
        result = ClusterResult(cluster, engine, steps=len(steps))
        result.rejected += [Problem("plan", cluster, p) for p in problems]
        namespaces = set(INITIAL_NAMESPACES)
        self.levels = {}  # namespace -> the Pod Security level it enforces, in this cluster
        served: set[tuple[str, str]] = set(self.builtin)
        priority_classes = {"system-cluster-critical", "system-node-critical"}
        for step in steps:
            crds = [o for o in step.objects if _is_crd(o)]
            if crds:
                self._install_crds(crds, step.label, result, served)
            rest = [o for o in step.objects if not _is_crd(o)]
            rest.sort(key=lambda o: REAL_KINDS.index(o["kind"]) if o.get("kind") in REAL_KINDS else len(REAL_KINDS))
            for obj in rest:
                self._one(obj, step.label, result, namespaces, served, priority_classes)
        result.seconds = time.perf_counter() - started
        return result

    def _one(self, obj: dict[str, Any], step: str, result: ClusterResult, namespaces: set[str],
             served: set[tuple[str, str]], priority_classes: set[str]) -> None:
        obj = decrypted_shape(obj)
        subject = object_id(obj)
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        if (api_version, kind) not in served:
            result.rejected.append(Problem(step, subject, f"no matches for kind \"{kind}\" in version \"{api_version}\""
                                           " (no CRD for it is installed on this cluster before this step)"))
            return
        resource = self.client.resource(api_version, kind, refresh=True)
        if resource is None:
            result.rejected.append(Problem(step, subject, f"the API server does not serve {kind} {api_version}"))
            return
        meta = _meta(obj)
        namespace = str(meta.get("namespace") or "")
        if not resource.namespaced and namespace:  # the engine drops a default namespace on these
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
            namespace = ""
        if resource.namespaced:
            if not namespace:
                result.rejected.append(Problem(step, subject, "a namespaced object without a namespace"))
                return
            if namespace not in namespaces:
                result.rejected.append(Problem(step, subject, f"namespaces \"{namespace}\" not found (this cluster "
                                               "creates it later, or never)"))
                return
        real = kind in REAL_KINDS and api_version in ("v1", "scheduling.k8s.io/v1", "node.k8s.io/v1")
        answer = self.client.apply(obj, dry_run=not real, resource=resource)
        enforced = self.levels.get(namespace, "privileged")
        self._record(answer, step, subject, result, real=real, enforced=enforced)
        if not answer.ok:
            return
        if real and kind == "Namespace":
            namespaces.add(str(meta.get("name")))
            self.levels[str(meta.get("name"))] = str((meta.get("labels") or {}).get(ENFORCE, "privileged"))
        if real and kind == "PriorityClass":
            priority_classes.add(str(meta.get("name")))
        pod = _pod_of(obj)
        if pod is not None:
            wanted = (pod.get("spec") or {}).get("priorityClassName")
            if wanted and wanted not in priority_classes:
                result.rejected.append(Problem(step, f"{subject} (its pod)", f"priorityclass \"{wanted}\" not found"))
                return
            pods = self._need("v1", "Pod")
            self._record(self.client.create(pod, pods), step, f"{subject} (its pod)", result, pod=True,
                         enforced=enforced)


def verify_report(report: Report, plane: ControlPlane, clusters: Iterable[str] = (),
                  progress: Callable[[str], None] = lambda _m: None, schema_dirs: Iterable[Path] = (),
                  notes: list[str] | None = None) -> list[ClusterResult]:
    engine, plans, problems = plans_of(report, schema_dirs, notes)
    wanted = list(clusters) or sorted(plans)
    unknown = [c for c in wanted if c not in plans]
    if unknown:
        raise KeyError(f"no cluster {', '.join(unknown)} (the clusters are {', '.join(sorted(plans))})")
    verifier = Verifier(plane, progress)
    results = []
    for cluster in wanted:
        progress(f"verifying cluster {cluster}: {sum(len(s.objects) for s in plans[cluster])} objects "
                 f"in {len(plans[cluster])} steps")
        result = verifier.verify(cluster, engine, plans[cluster], problems.get(cluster, []))
        progress(result.summary())
        results.append(result)
    verifier.client.close()
    return results


__all__ = ["EXPLAINED_WARNINGS", "ClusterResult", "Step", "Verifier", "plans_of", "verify_report"]
