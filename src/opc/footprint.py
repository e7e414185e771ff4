"""What each cluster asks of its nodes: CPU and memory requests and limits of every pod that runs
there for good, summed per cluster and per namespace.

The pods are the real rendered ones (``opc validate``'s view of a cluster: the repository's
objects, every chart's output, KubeVela's expansion of the services, the pods the operators build
from their resources). Replicas count (a HorizontalPodAutoscaler's minimum where one scales the
workload), a DaemonSet counts once per node (``nodes``), and Jobs and CronJobs, which come and go,
do not count. The sidecars that admission webhooks add to a service's pod count too: the Istio
proxy (istiod's ``global.proxy.resources``) where the namespace or pod asks for injection, and
Dapr's daprd (the pod's ``dapr.io/sidecar-*`` annotations) where ``dapr.io/enabled`` is "true".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .pods import PodTemplate, pod_templates

CPU = "cpu"
MEMORY = "memory"


def cpu_millis(value: Any) -> int:
    text = str(value)
    if text.endswith("m"):
        return int(float(text[:-1]))
    return round(float(text) * 1000)


UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(value: Any) -> int:
    text = str(value)
    for suffix in sorted(UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * UNITS[suffix])
    return int(float(text))


@dataclass
class Amount:
    cpu_request: int = 0  # millicores
    memory_request: int = 0  # bytes
    cpu_limit: int = 0
    memory_limit: int = 0
    pods: int = 0

    def add(self, other: Amount, times: int = 1) -> None:
        self.cpu_request += other.cpu_request * times
        self.memory_request += other.memory_request * times
        self.cpu_limit += other.cpu_limit * times
        self.memory_limit += other.memory_limit * times
        self.pods += other.pods * times

    def as_dict(self) -> dict[str, Any]:
        return {"pods": self.pods, "cpu_request_m": self.cpu_request,
                "memory_request_mib": self.memory_request // 2**20, "cpu_limit_m": self.cpu_limit,
                "memory_limit_mib": self.memory_limit // 2**20}


def container_amount(resources: dict[str, Any] | None) -> Amount:
    resources = resources or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    return Amount(cpu_millis(requests.get(CPU, 0)), memory_bytes(requests.get(MEMORY, 0)),
                  cpu_millis(limits.get(CPU, 0)), memory_bytes(limits.get(MEMORY, 0)))


@dataclass
class ClusterFootprint:
    cluster: str
    total: Amount = field(default_factory=Amount)
    namespaces: dict[str, Amount] = field(default_factory=dict)


def _hpa_minimums(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    out = {}
    for obj in objects:
        if obj.get("kind") == "HorizontalPodAutoscaler":
            spec = obj.get("spec") or {}
            target = spec.get("scaleTargetRef") or {}
            namespace = str((obj.get("metadata") or {}).get("namespace", ""))
            out[(namespace, str(target.get("kind")), str(target.get("name")))] = int(spec.get("minReplicas", 1))
    return out


def _injected(pod: PodTemplate, injection: dict[str, bool], proxy: Amount | None) -> Amount:
    """The sidecars admission webhooks add to the pod."""
    extra = Amount()
    annotations = pod.metadata.get("annotations") or {}
    labels = pod.metadata.get("labels") or {}
    wants_istio = str(labels.get("sidecar.istio.io/inject", annotations.get("sidecar.istio.io/inject", ""))).lower()
    injected = wants_istio == "true" or (injection.get(pod.namespace) and wants_istio != "false")
    if proxy is not None and injected and not any(c.get("name") == "istio-proxy" for _, c in pod.containers()):
        extra.add(proxy)
    if str(annotations.get("dapr.io/enabled", "")).lower() == "true":
        extra.add(container_amount({
            "requests": {CPU: annotations.get("dapr.io/sidecar-cpu-request", 0),
                         MEMORY: annotations.get("dapr.io/sidecar-memory-request", 0)},
            "limits": {CPU: annotations.get("dapr.io/sidecar-cpu-limit", 0),
                       MEMORY: annotations.get("dapr.io/sidecar-memory-limit", 0)}}))
    return extra


def _proxy(report: Any, cluster: str) -> Amount | None:
    for rendered in report.releases:
        if rendered.release.cluster == cluster and rendered.release.name == "istiod":
            proxy = ((rendered.release.values.get("global") or {}).get("proxy") or {}).get("resources")
            return container_amount(proxy)
    return None


def compute(report: Any, nodes: int = 1) -> list[ClusterFootprint]:
    out = []
    for cluster, entries in sorted(report.cluster_objects().items()):
        objects = [obj for _, obj in entries]
        footprint = ClusterFootprint(cluster)
        minimums = _hpa_minimums(objects)
        injection = {str((o.get("metadata") or {}).get("name")): ((o.get("metadata") or {}).get("labels") or {})
                     .get("istio-injection") == "enabled" for o in objects if o.get("kind") == "Namespace"}
        proxy = _proxy(report, cluster)
        seen: set[str] = set()
        for obj in objects:
            for pod in pod_templates(obj):
                if pod.runs_to_completion or pod.label in seen:
                    continue
                seen.add(pod.label)
                meta = pod.owner.get("metadata") or {}
                replicas = minimums.get((pod.namespace, str(pod.owner.get("kind")), str(meta.get("name"))),
                                        pod.replicas)
                per_pod = Amount(pods=1)
                for role, container in pod.containers():
                    if role == "containers":
                        per_pod.add(container_amount(container.get("resources")))
                # init containers run before the others: a pod needs the larger of the two
                init = [container_amount(c.get("resources")) for r, c in pod.containers() if r == "initContainers"]
                for amount in init:
                    per_pod.cpu_request = max(per_pod.cpu_request, amount.cpu_request)
                    per_pod.memory_request = max(per_pod.memory_request, amount.memory_request)
                    per_pod.cpu_limit = max(per_pod.cpu_limit, amount.cpu_limit)
                    per_pod.memory_limit = max(per_pod.memory_limit, amount.memory_limit)
                per_pod.add(_injected(pod, injection, proxy))
                times = nodes if pod.per_node else replicas
                footprint.total.add(per_pod, times)
                footprint.namespaces.setdefault(pod.namespace, Amount()).add(per_pod, times)
        out.append(footprint)
    return out


NOT_SEEN = ("not counted either: the pods operators start from manifests of their own (Flux's controllers, "
            "Open Cluster Management's hub and agent controllers)")


def _cores(millis: int) -> str:
    return f"{millis / 1000:.2f}"


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f}"


def render_markdown(footprints: list[ClusterFootprint], nodes: int) -> str:
    lines = ["| Cluster | Pods | CPU requests | Memory requests | CPU limits | Memory limits |",
             "|---|---|---|---|---|---|"]
    for fp in footprints:
        t = fp.total
        lines.append(f"| `{fp.cluster}` | {t.pods} | {_cores(t.cpu_request)} | {_gib(t.memory_request)} GiB | "
                     f"{_cores(t.cpu_limit)} | {_gib(t.memory_limit)} GiB |")
    lines.append("")
    lines.append(f"CPU in cores, DaemonSets counted on {nodes} node{'s' if nodes != 1 else ''}; jobs not counted; "
                 f"{NOT_SEEN}.")
    return "\n".join(lines)


def render_text(footprints: list[ClusterFootprint], nodes: int) -> str:
    lines = []
    for fp in footprints:
        t = fp.total
        lines.append(f"{fp.cluster}: {t.pods} pods, requests {_cores(t.cpu_request)} CPU / "
                     f"{_gib(t.memory_request)} GiB, limits {_cores(t.cpu_limit)} CPU / {_gib(t.memory_limit)} GiB")
        for namespace, amount in sorted(fp.namespaces.items(), key=lambda kv: -kv[1].cpu_request):
            lines.append(f"  {namespace:32} {amount.pods:3} pods  requests {_cores(amount.cpu_request):>6} CPU "
                         f"{_gib(amount.memory_request):>6} GiB  limits {_cores(amount.cpu_limit):>6} CPU "
                         f"{_gib(amount.memory_limit):>6} GiB")
    lines.append(f"(DaemonSets counted on {nodes} node{'s' if nodes != 1 else ''}; jobs not counted; {NOT_SEEN})")
    return "\n".join(lines)


def render_json(footprints: list[ClusterFootprint], nodes: int) -> str:
    return json.dumps({"nodes": nodes, "clusters": {
        fp.cluster: {"total": fp.total.as_dict(),
                     "namespaces": {ns: a.as_dict() for ns, a in sorted(fp.namespaces.items())}}
        for fp in footprints}}, indent=2)


# ---------------------------------------------------------------------------------------------
# The footprint the template prints in a rendered README (hooks/footprint.yml)
# ---------------------------------------------------------------------------------------------
def _row(amount: Amount) -> list[int]:
    return [amount.pods, amount.cpu_request, amount.memory_request, amount.cpu_limit, amount.memory_limit]


def derive_for_template(template: str, charts: Any, vcs_ref: str | None = "HEAD") -> dict[str, Any]:
    """Per GitOps engine, the amounts each namespace of a hub and of a workload cluster (per
    environment) requests, what a private-cloud cluster adds, and one service's pods per
    environment: from a render of every cloud, environment and engine (reserved.PROBE_ANSWERS)."""
    import tempfile
    from pathlib import Path

    import copier

    from .reserved import PROBE_ANSWERS, PROBE_SLUG
    from .validate import validate_repo

    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="opc-footprint-") as tmp:
        for gitops in ("flux", "argocd"):
            dest = Path(tmp) / gitops
            copier.run_copy(template, dest, data={**PROBE_ANSWERS, "gitops": gitops}, defaults=True, unsafe=True,
                            vcs_ref=vcs_ref, quiet=True)
            report = validate_repo(dest, [], lint=False, wiring=[], charts=charts)
            found = {fp.cluster: fp for fp in compute(report, nodes=1)}
            engine: dict[str, Any] = {"hub": {}, "workload": {}, "private": {}, "service": {}}
            for namespace, amount in sorted(found["hub"].namespaces.items()):
                engine["hub"][namespace] = _row(amount)
            for env in ("dev", "staging", "prod"):
                public = found[f"aliyun-{env}"].namespaces
                engine["workload"][env] = {ns: _row(a) for ns, a in sorted(public.items()) if ns != PROBE_SLUG}
                engine["service"][env] = _row(public[PROBE_SLUG])
                extra = {ns: _row(a) for ns, a in sorted(found[f"private-{env}"].namespaces.items())
                         if ns not in public}
                engine["private"][env] = extra
            data[gitops] = engine
    return data


HEADER = """\
# What each namespace requests (pods, millicores and bytes requested, then limited), from the
# rendered pods of a render of every cloud, environment and GitOps engine (src/opc/footprint.py):
# the rendered README's footprint table is computed from it. Generated by scripts/footprint: do not edit.
"""


def dump(data: dict[str, Any]) -> str:
    import yaml

    return HEADER + "---\n" + yaml.safe_dump(data, sort_keys=True, width=200, default_flow_style=None)
