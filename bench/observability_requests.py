#!/usr/bin/env python3
"""The CPU and memory the runtime and observability stack requests on each cluster of a rendered
repository: every `resources.requests` in the Helm values of its releases and in the custom
resources it creates (collector, Elasticsearch, Kibana, Grafana), per cluster, from the objects
`kustomize build` produces for that cluster. DaemonSets (fluentd, node-exporter) count once, as
they run on each node. Sidecars and agents the services carry are listed separately, per pod.

Usage: bench/observability_requests.py [RENDERED_REPO]   (default: renders the default answers)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from conftest import render, snapshot_template  # noqa: E402
from opc.kustomize import build_one  # noqa: E402

RELEASES = {"dapr", "kube-prometheus-stack", "opentelemetry-operator", "grafana-operator", "eck-operator",
            "fluentd", "skywalking"}
CUSTOM_RESOURCES = {"OpenTelemetryCollector", "Elasticsearch", "Kibana", "Grafana"}
PER_NODE = {"fluentd", "prometheus-node-exporter"}


def cpu(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(value: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2}
    for suffix, factor in units.items():
        if str(value).endswith(suffix):
            return float(str(value)[: -len(suffix)]) * factor
    return float(value) / 2 ** 20


def requests(node, path=()):
    """(path, cpu cores, memory MiB) for every resources.requests under a values tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (key == "requests" and path and path[-1] == "resources" and isinstance(value, dict)
                    and ("cpu" in value or "memory" in value)):  # not a volume claim's storage
                yield path, cpu(value.get("cpu", 0)), memory(value.get("memory", "0Mi"))
            else:
                yield from requests(value, path + (key,))
    elif isinstance(node, list):
        for item in node:
            yield from requests(item, path)


def release_values(obj):
    if obj.get("kind") == "HelmRelease":
        return obj["metadata"]["name"], obj["spec"].get("values") or {}
    if obj.get("kind") == "Application" and obj.get("spec", {}).get("sources"):
        source = obj["spec"]["sources"][0]
        name = obj["metadata"]["name"]
        return name, (source.get("helm") or {}).get("valuesObject") or {}
    return None, None


def cluster_requests(repo: Path, cluster: Path):
    rows = []
    for layer in sorted(p for p in cluster.iterdir() if (p / "kustomization.yaml").is_file()):
        build = build_one(layer)
        if not build.ok:
            raise SystemExit(f"{layer}: {build.error}")
        for obj in build.objects:
            name, values = release_values(obj)
            short = name.split("-", 2)[-1] if name and name not in RELEASES else name
            for candidate in (name, short):
                if candidate in RELEASES:
                    for path, c, m in requests(values):
                        rows.append((candidate, ".".join(path[:-1]) or "(main)", c, m))
                    break
            if obj.get("kind") in CUSTOM_RESOURCES:
                for path, c, m in requests(obj.get("spec") or {}):
                    rows.append((f"{obj['kind']} {obj['metadata']['name']}", ".".join(path[:-1]), c, m))
    return rows


def main() -> None:
    if len(sys.argv) > 1:
        repo = Path(sys.argv[1]).resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="opc-requests-"))
        repo = render(snapshot_template(tmp / "template"), tmp / "repo", {})
    clusters = sorted(p for p in (repo / "clusters").iterdir() if p.is_dir())
    seen_roles = set()
    for cluster in clusters:
        rows = cluster_requests(repo, cluster)
        role = "hub" if cluster.name == "hub" else "workload"
        if role in seen_roles:
            continue
        seen_roles.add(role)
        print(f"\n{cluster.name} ({role}): runtime and observability requests")
        print(f"  {'component':<30} {'where':<48} {'cpu':>7} {'memory':>9}")
        total_cpu = total_mem = 0.0
        for owner, where, c, m in rows:
            per_node = any(p in where or p == owner for p in PER_NODE)
            print(f"  {owner:<30} {where[:48]:<48} {c:>6.2f}c {m:>7.0f}Mi{'  (per node)' if per_node else ''}")
            total_cpu += c
            total_mem += m
        print(f"  {'total':<30} {'':<48} {total_cpu:>6.2f}c {total_mem:>7.0f}Mi")
    print("\nPer service pod (sidecars and agents): Dapr sidecar 0.05c 64Mi (grpc-service annotations), "
          "Istio proxy 0.05c 64Mi (istiod values), Java agent init container 0.01c 32Mi (while starting)")


if __name__ == "__main__":
    main()
