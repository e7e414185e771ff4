"""The fleet as rendered: clusters, cluster sets, placements and KubeVela topology, offline.

``Fleet`` gathers the Open Cluster Management and KubeVela objects of a rendered repository and
answers two questions without a cluster: which clusters a Placement or a topology policy would
pick (``opc placements``), and whether every reference between those objects resolves (the
wiring checks of ``opc validate``).

Placement decisions are simulated from the rendered ManagedCluster labels: cluster sets bound to
the Placement's namespace, predicates (label selectors; claim and CEL selectors need live
clusters and match nothing here), taints and tolerations, then numberOfClusters with the
spread constraints. Prioritizer scores are not simulated: ties are broken by cluster name.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .kustomize import parse_documents

OCM = "cluster.open-cluster-management.io"
CLUSTERSET_LABEL = f"{OCM}/clusterset"
OAM = "core.oam.dev"

# Definitions KubeVela 1.10 installs with vela-core (charts/vela-core/templates/defwithtemplate).
BUILTIN_COMPONENTS = {"webservice", "worker", "task", "cron-task", "daemon", "statefulset", "k8s-objects",
                      "ref-objects"}
BUILTIN_TRAITS = {"affinity", "annotations", "command", "container-image", "container-ports", "cpuscaler", "env",
                  "expose", "gateway", "hostalias", "hpa", "init-container", "json-merge-patch", "json-patch",
                  "k8s-update-strategy", "labels", "lifecycle", "nocalhost", "podsecuritycontext", "pure-ingress",
                  "resource", "scaler", "securitycontext", "service-account", "service-binding", "sidecar",
                  "startup-probe", "storage", "topologyspreadconstraints"}
# appliesToWorkloads of built-in traits, where KubeVela restricts them.
BUILTIN_TRAIT_WORKLOADS = {"scaler": ["deployments.apps", "statefulsets.apps"]}
BUILTIN_POLICIES = {"apply-once", "garbage-collect", "override", "read-only", "replication", "resource-update",
                    "shared-resource", "take-over", "topology"}
BUILTIN_STEPS = {"deploy", "suspend", "apply-component", "apply-object", "step-group", "notification",
                 "depends-on-app", "apply-deployment", "apply-terraform-config", "apply-terraform-provider",
                 "build-push-image", "clean-jobs", "collect-service-endpoints", "create-config", "delete-config",
                 "export-data", "export-service", "export2config", "export2secret", "generate-jdbc-connection",
                 "list-config", "print-message-in-status", "read-app", "read-config", "read-object",
                 "request", "share-cloud-resource", "vela-cli", "webhook", "check-metrics", "deploy-cloud-resource",
                 "deploy2env", "deploy2runtime", "apply-application", "apply-remaining"}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: dict[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def _ns(obj: dict[str, Any]) -> str:
    return str(_meta(obj).get("namespace", ""))


def _group(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


@dataclass
class Decision:
    """What a Placement or topology policy selects, and how it got there."""

    clusters: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Fleet:
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)  # ManagedCluster name -> object
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    applications: list[dict[str, Any]] = field(default_factory=list)
    definitions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def from_objects(cls, objects: Iterable[dict[str, Any]]) -> Fleet:
        fleet = cls()
        seen: set[tuple[str, str, str]] = set()
        for obj in objects:
            key = (str(obj.get("kind")), _ns(obj), _name(obj))
            if key in seen:
                continue
            seen.add(key)
            kind, group = obj.get("kind"), _group(obj)
            if group == OCM and kind == "ManagedCluster":
                fleet.clusters[_name(obj)] = obj
            elif group == OCM and kind == "ManagedClusterSet":
                fleet.sets[_name(obj)] = obj
            elif group == OCM and kind == "ManagedClusterSetBinding":
                fleet.bindings.append(obj)
            elif group == OCM and kind == "Placement":
                fleet.placements.append(obj)
            elif group == OAM and kind == "Application":
                fleet.applications.append(obj)
            elif group == OAM and kind in ("ComponentDefinition", "TraitDefinition", "PolicyDefinition",
                                           "WorkflowStepDefinition"):
                fleet.definitions[kind][_name(obj)] = obj
        return fleet

    # -- cluster sets and placements -----------------------------------------------------------

    def labels(self, cluster: str) -> dict[str, str]:
        return {k: str(v) for k, v in (_meta(self.clusters[cluster]).get("labels") or {}).items()}

    def set_members(self, name: str) -> list[str]:
        cluster_set = self.sets.get(name)
        if cluster_set is None:
            return []
        selector = ((cluster_set.get("spec") or {}).get("clusterSelector")) or {}
        if selector.get("selectorType", "ExclusiveClusterSetLabel") == "LabelSelector":
            return sorted(c for c in self.clusters if selector_matches(selector.get("labelSelector"), self.labels(c)))
        return sorted(c for c in self.clusters if self.labels(c).get(CLUSTERSET_LABEL) == name)

    def bound_sets(self, namespace: str) -> list[str]:
        return sorted({(b.get("spec") or {}).get("clusterSet", "") for b in self.bindings if _ns(b) == namespace})

    def place(self, placement: dict[str, Any]) -> Decision:
        spec = placement.get("spec") or {}
        notes: list[str] = []
        bound = [s for s in self.bound_sets(_ns(placement)) if s in self.sets]
        wanted = spec.get("clusterSets") or bound
        usable = [s for s in wanted if s in bound]
        candidates = sorted({c for s in usable for c in self.set_members(s)})
        predicates = spec.get("predicates") or []
        if predicates:
            kept = []
            for cluster in candidates:
                for predicate in predicates:
                    required = predicate.get("requiredClusterSelector") or {}
                    if required.get("claimSelector") or required.get("celSelector"):
                        notes.append("claim and CEL selectors need live clusters; treated as matching nothing")
                        continue
                    if selector_matches(required.get("labelSelector"), self.labels(cluster)):
                        kept.append(cluster)
                        break
            candidates = kept
        tolerated = spec.get("tolerations") or []
        candidates = [c for c in candidates if not self._untolerated_taint(c, tolerated)]
        count = spec.get("numberOfClusters")
        if count is not None and count < len(candidates):
            candidates = self._spread(candidates, count, spec.get("spreadPolicy") or {})
            notes.append("ties broken by cluster name (prioritizer scores are not simulated)")
        return Decision(sorted(candidates), sorted(set(notes)))

    def _untolerated_taint(self, cluster: str, tolerations: list[dict[str, Any]]) -> bool:
        for taint in (self.clusters[cluster].get("spec") or {}).get("taints") or []:
            if taint.get("effect") not in ("NoSelect", "NoSelectIfNew"):
                continue
            if not any(t.get("key") == taint.get("key")
                       and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
                       for t in tolerations):
                return True
        return False

    def _spread(self, clusters: list[str], count: int, spread: dict[str, Any]) -> list[str]:
        constraints = spread.get("spreadConstraints") or []
        label_keys = [c.get("topologyKey") for c in constraints if c.get("topologyKeyType", "Label") == "Label"]
        if not label_keys:
            return clusters[:count]
        key = label_keys[0]
        groups: dict[str, list[str]] = defaultdict(list)
        for cluster in clusters:
            groups[self.labels(cluster).get(key, "")].append(cluster)
        picked: list[str] = []
        queues = [sorted(groups[v]) for v in sorted(groups)]
        while len(picked) < count and any(queues):
            for queue in queues:
                if queue and len(picked) < count:
                    picked.append(queue.pop(0))
        return picked

    # -- KubeVela --------------------------------------------------------------------------------

    def topology(self, policy: dict[str, Any]) -> Decision:
        props = policy.get("properties") or {}
        if props.get("clusters"):
            return Decision(sorted(c for c in props["clusters"] if c in self.clusters or c == "local"))
        selector = props.get("clusterLabelSelector") or props.get("clusterSelector")
        if selector is None:
            return Decision(["local"], ["no cluster selector: KubeVela deploys to the hub itself"])
        wanted = {k: str(v) for k, v in selector.items()}
        return Decision(sorted(c for c in self.clusters if all(self.labels(c).get(k) == v for k, v in wanted.items())))

    def topology_policies(self) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
        for app in self.applications:
            for policy in (app.get("spec") or {}).get("policies") or []:
                if policy.get("type") == "topology":
                    yield app, policy


# -- locating objects in source files -------------------------------------------------------------

class SourceIndex:
    """Which file of the repository an object comes from (by kind and name)."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[tuple[str, str], str] | None = None

    @classmethod
    def of(cls, report: Any) -> SourceIndex:
        """The index of a report's repository, built once per report."""
        index = report.memo.get("sources")
        if index is None:
            index = report.memo["sources"] = cls(report.root)
        return index  # type: ignore[no-any-return]

    def _build(self) -> dict[tuple[str, str], str]:
        index: dict[tuple[str, str], str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in {"target", "node_modules"})
            for name in sorted(filenames):
                if not name.endswith((".yaml", ".yml")):
                    continue
                path = Path(dirpath) / name
                try:
                    docs = parse_documents(path.read_text(encoding="utf-8"))
                except (yaml.YAMLError, UnicodeDecodeError):
                    continue
                for doc in docs:
                    if isinstance(doc, dict) and "kind" in doc:
                        index.setdefault((str(doc["kind"]), _name(doc)), path.relative_to(self.root).as_posix())
        return index

    def locate(self, obj: dict[str, Any], default: str) -> str:
        if self._index is None:
            self._index = self._build()
        return self._index.get((str(obj.get("kind")), _name(obj)), default)
