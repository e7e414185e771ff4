"""Two definitions of one object in one cluster.

Each cluster applies several deployable units (its entry point and its layers: Flux
Kustomizations or Argo CD Applications, each a kustomization that no other kustomization
includes). kustomize refuses a duplicate inside one build, but not across units: two units that
both define the same object (API group, kind, namespace, name) make two owners fight over it,
and with different content the cluster ends up with whichever was applied last.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .validate import Finding, Report

ObjectKey = tuple[str, str, str, str]  # group, kind, namespace, name


def key_of(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))


def label(key: ObjectKey) -> str:
    group, kind, namespace, name = key
    return f"{kind}{'.' + group if group else ''} {namespace + '/' if namespace else ''}{name}"


def check_conflicts(report: Report) -> list[Finding]:
    findings = []
    for cluster, units in sorted(report.cluster_units().items()):
        seen: dict[ObjectKey, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for where, objects in units:
            for obj in objects:
                seen[key_of(obj)].append((where, obj))
        for key, definitions in sorted(seen.items()):
            if len(definitions) < 2:
                continue
            places = sorted({where for where, _ in definitions})
            first = definitions[0][1]
            what = "identical" if all(obj == first for _, obj in definitions[1:]) else "different"
            findings.append(Finding("conflict", places[0], label(key),
                                    f"cluster {cluster} gets {len(definitions)} {what} definitions of this object, "
                                    f"from {', '.join(places)}: one owner per object"))
    return findings
