"""The quality bar every rendered object must meet (DESIGN §4), checked over built objects.

- Namespaces carry Pod Security Admission labels and a default-deny ingress NetworkPolicy.
- Workloads meet Pod Security "restricted", set requests, limits and probes, carry the
  app.kubernetes.io labels, and pin their images.
- Chart versions are pinned to a release (no ranges), Argo CD never uses the "default" project.
- No plaintext Secret.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from .validate import Finding, Report, object_id

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
WORKLOAD_KINDS = {
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("apps.kruise.io/v1alpha1", "CloneSet"),
    ("apps.kruise.io/v1beta1", "StatefulSet"), ("apps.kruise.io/v1alpha1", "DaemonSet"),
}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "CloneSet"}
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of")


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or None


def workload_violations(obj: dict[str, Any]) -> Iterator[str]:
    """Why a workload falls short of the bar (nothing if it meets it)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key in REQUIRED_LABELS:
        if key not in labels:
            yield f"label {key} missing"
    pod = _pod_spec(obj)
    if pod is None:
        yield "no pod template"
        return
    pod_sc = pod.get("securityContext") or {}
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        yield "uses host namespaces"
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            yield f"volume {volume.get('name')} is a hostPath"
    containers = [("container", c) for c in pod.get("containers") or []]
    containers += [("init container", c) for c in pod.get("initContainers") or []]
    for role, c in containers:
        name = f"{role} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            yield f"{name}: runAsNonRoot is not true"
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{name}: seccompProfile is not RuntimeDefault"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation is not false"
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            yield f"{name}: capabilities do not drop ALL"
        if sc.get("privileged"):
            yield f"{name}: privileged"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"{name}: readOnlyRootFilesystem is not true"
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(section) or {}):
                    yield f"{name}: no {resource} {section[:-1]}"
        image = str(c.get("image", ""))
        tag = image.rsplit("@", 1)[0].rpartition("/")[2].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            yield f"{name}: image {image or '<none>'} is not pinned to a version"
        if role == "container" and obj.get("kind") in LONG_RUNNING:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    yield f"{name}: no {probe}"


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
            if "pod-security.kubernetes.io/enforce" not in (meta.get("labels") or {}):
                add(where, obj, "namespace has no pod-security.kubernetes.io/enforce label")
        elif kind == "NetworkPolicy":
            if spec.get("podSelector") == {} and "Ingress" in (spec.get("policyTypes") or []) and not spec.get("ingress"):
                denied.add(meta.get("namespace", ""))
        elif kind == "Secret" and (obj.get("data") or obj.get("stringData")):
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
        if (api, kind) in WORKLOAD_KINDS:
            for message in workload_violations(obj):
                add(where, obj, message)
    for name, where in sorted(namespaces.items()):
        if name not in denied:
            findings.append(Finding("policy", where, f"Namespace {name}", "no default-deny ingress NetworkPolicy"))
    return findings
