"""The quality bar every rendered object must meet, checked over what each cluster really
receives: the repository's objects, the chart output of every Helm release and KubeVela's
expansion of every Application.

- Namespaces carry a Pod Security enforce label and a default-deny ingress NetworkPolicy.
- Every pod passes Pod Security admission at the level its namespace enforces (pods.py holds the
  admission rules), and no namespace is more permissive than its pods need.
- Every container sets CPU and memory requests and limits and pins its image. Containers the
  repository itself defines (its manifests, the KubeVela component, the pod templates of operator
  resources) also meet "restricted" in full, read-only root filesystem included, carry the
  app.kubernetes.io labels, and long-running ones have probes. A third-party container a chart
  leaves without probes is reported, not refused; what a chart does not let values set is accepted
  only with a reason in a policy-exceptions.yaml file.
- Chart versions are pinned to a release (no ranges), Argo CD never uses the "default" project.
- No plaintext Secret.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pods import LEVELS, PodTemplate, pod_templates, required_level, violations
from .validate import Finding, Report, object_id, repository_entries

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of")
ENFORCE = "pod-security.kubernetes.io/enforce"
EXCEPTIONS_FILE = "policy-exceptions.yaml"
# Images an admission webhook replaces: Istio's gateway chart asks for the proxy image "auto".
INJECTED_IMAGES = {"auto"}


@dataclass(frozen=True)
class Exception_:
    """A rule a third-party container cannot meet through its chart's values, or the Pod Security
    level a namespace needs for pods that no render shows (an operator creates them), and why."""

    pod: str  # glob over "<Kind> <namespace>/<name>" ("" for a level)
    container: str  # glob over the container name ("" for a level)
    rule: str  # resources | image | level
    reason: str
    where: str
    namespace: str = ""
    level: str = ""


def _exception(entry: Any, where: str) -> Exception_ | None:
    if not isinstance(entry, dict) or not str(entry.get("reason", "")).strip():
        return None
    if {"namespace", "level"} <= set(entry) and entry["level"] in LEVELS:
        return Exception_("", "", "level", str(entry["reason"]), where, str(entry["namespace"]), str(entry["level"]))
    if {"pod", "container", "rule"} <= set(entry) and entry["rule"] in ("resources", "image"):
        return Exception_(str(entry["pod"]), str(entry["container"]), entry["rule"], str(entry["reason"]), where)
    return None


def load_exceptions(root: Path) -> tuple[list[Exception_], list[Finding]]:
    """Every entry of every policy-exceptions.yaml in the repository (outside hidden folders)."""
    found = []
    entries, problems = repository_entries(root, EXCEPTIONS_FILE, "policy")
    for rel, index, entry in entries:
        exception = _exception(entry, rel)
        if exception is None:
            problems.append(Finding("policy", rel, f"entry {index}", "an exception needs a reason and either pod, "
                                    "container and rule (resources or image), or namespace and level"))
            continue
        found.append(exception)
    return found, problems


def _excepted(exceptions: list[Exception_], pod: PodTemplate, container: str, rule: str) -> Exception_ | None:
    for exception in exceptions:
        if (exception.rule == rule and fnmatch.fnmatchcase(pod.label.split(" (")[0], exception.pod)
                and fnmatch.fnmatchcase(container, exception.container)):
            return exception
    return None


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    tag = image.rpartition("/")[2].partition(":")[2]
    return bool(tag) and tag != "latest"


def container_gaps(pod: PodTemplate, ours: bool) -> Iterator[tuple[str, str, str]]:
    """(container, rule, message) for what a container lacks: resources and a pinned image for
    every container; for ours also a read-only root filesystem and probes."""
    for role, container in pod.containers():
        name = str(container.get("name"))
        what = f"{'init container' if role == 'initContainers' else 'container'} {name}"
        resources = container.get("resources") or {}
        missing = [f"{resource} {section[:-1]}" for section in ("requests", "limits")
                   for resource in ("cpu", "memory") if resource not in (resources.get(section) or {})]
        if missing:
            yield name, "resources", f"{what}: no {', '.join(missing)}"
        image = str(container.get("image", ""))
        if image not in INJECTED_IMAGES and not image_pinned(image):
            yield name, "image", f"{what}: image '{image}' is not pinned to a version"
        if not ours or pod.operator:
            continue
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            yield name, "readOnlyRootFilesystem", f"{what}: readOnlyRootFilesystem is not true"
        if role == "containers" and not pod.runs_to_completion:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    yield name, "probes", f"{what}: no {probe}"


@dataclass
class NamespaceLevel:
    """What a namespace enforces in a cluster, and what its pods need."""

    cluster: str
    namespace: str
    enforced: str
    needed: str = "restricted"
    reasons: list[str] = field(default_factory=list)  # which pod needs more than restricted, and why


def _synced_objects(report: Report) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """With Argo CD, what each cluster receives through Applications whose source is a path of the
    repository (its namespaces among them), as opc verify plans it; with Flux every layer is a
    unit of clusters/<name> already."""
    from .verify import argo_plans, engine_of

    if engine_of(report) != "argocd":
        return {}
    plans, _, _ = argo_plans(report)
    return {cluster: [(step.label, o) for step in steps for o in step.objects] for cluster, steps in plans.items()}


def pod_security(report: Report) -> tuple[list[Finding], list[NamespaceLevel], list[str]]:
    """Findings of the pod gate, the Pod Security level of every namespace with what justifies it,
    and notes on third-party containers (probes a chart leaves unset)."""
    exceptions, findings = load_exceptions(report.root)
    levels: dict[tuple[str, str], NamespaceLevel] = {}
    notes: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    ours_sources = {id(o) for _, o in report.objects()}
    ours_sources |= {id(o) for g in report.generated if "vela dry-run" in g.source for o in g.objects}

    def add(where: str, subject: str, message: str) -> None:
        if (where, subject, message) not in seen:
            seen.add((where, subject, message))
            findings.append(Finding("policy", where, subject, message))

    synced = _synced_objects(report)
    for cluster, built in sorted(report.cluster_objects().items()):
        known = {id(o) for _, o in built}
        objects = built + [(where, o) for where, o in synced.get(cluster, []) if id(o) not in known]
        enforced = {str((o.get("metadata") or {}).get("name")): str(((o.get("metadata") or {}).get("labels") or {})
                                                                      .get(ENFORCE, "privileged"))
                    for _, o in objects if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"}
        for namespace, enforcing in enforced.items():
            levels[(cluster, namespace)] = NamespaceLevel(cluster, namespace, enforcing)
        for where, obj in objects:
            ours = id(obj) in ours_sources
            for pod in pod_templates(obj):
                level = enforced.get(pod.namespace)
                if level is not None:
                    for _, message in violations(pod, level):
                        add(where, pod.label, f"refused by Pod Security '{level}' of namespace {pod.namespace} "
                                              f"in cluster {cluster}: {message}")
                    needed, why = required_level(pod)
                    entry = levels[(cluster, pod.namespace)]
                    if LEVELS.index(needed) > LEVELS.index(entry.needed):
                        entry.needed = needed
                    if needed != "restricted":
                        entry.reasons.append(f"{pod.label}: {', '.join(check for check, _ in why)}")
                if ours:
                    for _, message in violations(pod, "restricted"):
                        add(where, pod.label, f"does not meet Pod Security 'restricted': {message}")
                    labels = (obj.get("metadata") or {}).get("labels") or {}
                    for key in REQUIRED_LABELS:
                        if key not in labels and pod.owner is obj:
                            add(where, object_id(obj), f"label {key} missing")
                for container, rule, message in container_gaps(pod, ours):
                    if not ours and rule == "probes":
                        notes.add(f"{pod.label}: {message} (set by its chart)")
                    elif ours or not _excepted(exceptions, pod, container, rule):
                        add(where, pod.label, message)
    for exception in exceptions:
        if exception.rule != "level":
            continue
        for entry in levels.values():
            if entry.namespace == exception.namespace and LEVELS.index(exception.level) > LEVELS.index(entry.needed):
                entry.needed = exception.level
                entry.reasons.append(f"{exception.reason} ({exception.where})")
    for entry in levels.values():
        if LEVELS.index(entry.enforced) > LEVELS.index(entry.needed):
            because = f" (only {'; '.join(sorted(set(entry.reasons)))})" if entry.reasons else ""
            findings.append(Finding("policy", f"clusters/{entry.cluster}", f"Namespace {entry.namespace}",
                                    f"enforces Pod Security '{entry.enforced}', but its pods need only "
                                    f"'{entry.needed}'{because}: enforce '{entry.needed}'"))
    return findings, sorted(levels.values(), key=lambda e: (e.cluster, e.namespace)), sorted(notes)


def _encrypted(obj: dict[str, Any]) -> bool:
    """SOPS-encrypted: its metadata is there and every value it holds is ciphertext."""
    sops = obj.get("sops")
    values = [*(obj.get("data") or {}).values(), *(obj.get("stringData") or {}).values()]
    return isinstance(sops, dict) and bool(sops.get("mac")) and all(
        isinstance(v, str) and v.startswith("ENC[") for v in values)


def check_policies(report: Report) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    namespaces: dict[str, str] = {}  # namespace -> where it is defined
    denied: set[str] = set()

    def add(where: str, obj: dict[str, Any], message: str) -> None:
        key = (object_id(obj), message)
        if key not in seen:
            seen.add(key)
            findings.append(Finding("policy", where, object_id(obj), message))

    for where, obj in report.objects():
        kind, api = obj.get("kind"), obj.get("apiVersion")
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        if kind == "Namespace":
            namespaces.setdefault(meta.get("name", ""), where)
            if ENFORCE not in (meta.get("labels") or {}):
                add(where, obj, f"namespace has no {ENFORCE} label")
        elif kind == "NetworkPolicy":
            if (spec.get("podSelector") == {} and "Ingress" in (spec.get("policyTypes") or [])
                    and not spec.get("ingress")):
                denied.add(meta.get("namespace", ""))
        elif kind == "Secret" and (obj.get("data") or obj.get("stringData")) and not _encrypted(obj):
            add(where, obj, "plaintext Secret: encrypt it with SOPS or deliver it with External Secrets")
        elif kind == "HelmRelease":
            version = ((spec.get("chart") or {}).get("spec") or {}).get("version")
            if version is not None and not EXACT_VERSION.match(str(version)):
                add(where, obj, f"chart version '{version}' is not pinned to a release")
        elif kind == "OCIRepository":
            tag = (spec.get("ref") or {}).get("tag")
            if not tag or not EXACT_VERSION.match(str(tag)):
                add(where, obj, "OCI artifact is not pinned to a release tag")
        elif kind in ("Application", "ApplicationSet") and str(api).startswith("argoproj.io/"):
            body = (spec.get("template") or {}).get("spec", {}) if kind == "ApplicationSet" else spec
            if body.get("project", "default") == "default":
                add(where, obj, "uses Argo CD's default project")
            for source in body.get("sources") or ([body["source"]] if body.get("source") else []):
                if source.get("chart") and not EXACT_VERSION.match(str(source.get("targetRevision", ""))):
                    add(where, obj, f"chart {source['chart']} is not pinned to a release")
    for name, where in sorted(namespaces.items()):
        if name not in denied:
            findings.append(Finding("policy", where, f"Namespace {name}", "no default-deny ingress NetworkPolicy"))
    gate, levels, notes = pod_security(report)
    report.namespace_levels, report.notes = levels, report.notes + notes
    return findings + gate
