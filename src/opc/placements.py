"""`opc placements`: where every Placement and topology policy lands, computed offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kustomize
from .fleet import Fleet, _name, _ns

ENV_ORDER = ["dev", "staging", "prod"]


@dataclass
class Row:
    kind: str  # Placement | topology
    subject: str  # namespace/name, or namespace/app policy
    selector: str
    clusters: list[str]
    notes: list[str] = field(default_factory=list)


def _env_of(labels: dict[str, Any]) -> str:
    for key, value in labels.items():
        if key.rpartition("/")[2] == "env":
            return str(value)
    return ""


def _describe(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k.rpartition('/')[2]}={v}" for k, v in sorted(labels.items())) or "every cluster"


def load_fleet(root: Path, jobs: int | None = None) -> Fleet:
    builds = list(kustomize.build_all(kustomize.find_kustomizations(root), jobs=jobs))
    failed = [b for b in builds if not b.ok]
    if failed:
        raise RuntimeError("kustomize failed on " + ", ".join(str(b.path.relative_to(root)) for b in failed)
                           + "; run `opc validate` for details")
    return Fleet.from_objects(o for b in builds for o in b.objects)


def compute(fleet: Fleet) -> dict[str, list[Row]]:
    """Rows grouped by environment ("" for selections that span environments)."""
    groups: dict[str, list[Row]] = {}
    for placement in sorted(fleet.placements, key=lambda p: (_ns(p), _name(p))):
        spec = placement.get("spec") or {}
        labels: dict[str, Any] = {}
        for predicate in spec.get("predicates") or []:
            selector = (predicate.get("requiredClusterSelector") or {}).get("labelSelector") or {}
            labels.update(selector.get("matchLabels") or {})
        decision = fleet.place(placement)
        parts = [f"sets: {', '.join(spec.get('clusterSets') or fleet.bound_sets(_ns(placement)))}", _describe(labels)]
        if spec.get("numberOfClusters") is not None:
            parts.append(f"numberOfClusters {spec['numberOfClusters']}")
        constraints = (spec.get("spreadPolicy") or {}).get("spreadConstraints") or []
        spread = [c.get("topologyKey", "").rpartition("/")[2] for c in constraints]
        if spread:
            parts.append("spread by " + ", ".join(spread))
        groups.setdefault(_env_of(labels), []).append(
            Row("Placement", f"{_ns(placement)}/{_name(placement)}", "; ".join(parts), decision.clusters,
                decision.notes))
    for app, policy in fleet.topology_policies():
        selector = (policy.get("properties") or {}).get("clusterLabelSelector") or {}
        decision = fleet.topology(policy)
        groups.setdefault(_env_of(selector), []).append(
            Row("topology", f"{_ns(app)}/{_name(app)} {policy.get('name')}", _describe(selector), decision.clusters,
                decision.notes))
    def order(item: tuple[str, list[Row]]) -> tuple[int, str]:
        return (ENV_ORDER.index(item[0]) if item[0] in ENV_ORDER else len(ENV_ORDER), item[0])

    return dict(sorted(groups.items(), key=order))


def render_text(fleet: Fleet, groups: dict[str, list[Row]]) -> str:
    lines = [f"Clusters ({len(fleet.clusters)}, from the rendered ManagedClusters):"]
    table = []
    for name in sorted(fleet.clusters):
        facts = {k.rpartition("/")[2]: v for k, v in fleet.labels(name).items()}
        table.append([name] + [f"{k}={facts[k]}" for k in ("cloud", "region", "env") if k in facts])
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(max(map(len, table), default=0))]
    for row in table:
        lines.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for env, rows in groups.items():
        lines.append("")
        lines.append(f"Environment {env}:" if env else "Across environments:")
        for entry in rows:
            label = "Placement" if entry.kind == "Placement" else "Application"
            lines.append(f"  {label} {entry.subject}  [{entry.selector}]")
            lines.append("    -> " + (", ".join(entry.clusters) if entry.clusters else "NOTHING"))
            for note in entry.notes:
                lines.append(f"       ({note})")
    return "\n".join(lines)


def render_json(fleet: Fleet, groups: dict[str, list[Row]]) -> dict[str, Any]:
    return {
        "clusters": {name: fleet.labels(name) for name in sorted(fleet.clusters)},
        "environments": {
            env or "*": [{"kind": r.kind, "subject": r.subject, "selector": r.selector, "clusters": r.clusters,
                          "notes": r.notes} for r in rows]
            for env, rows in groups.items()
        },
    }
