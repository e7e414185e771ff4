"""The checks `opc validate` runs over all built objects, after schema validation.

Wiring rules (every cross-reference resolves):
- every Placement has a ManagedClusterSetBinding, in its own namespace, for each cluster set it
  uses (without one OCM selects nothing);
- every binding names a cluster set that exists, under the binding's own name;
- every Placement and every KubeVela topology policy selects at least one rendered cluster;
- every component, trait, policy and workflow-step type an Application uses is built into
  KubeVela or rendered as a definition; traits apply to the component's workload; workflow
  steps and override policies name policies and components of the same Application.
"""

from __future__ import annotations

from typing import Any

from .conflicts import check_conflicts
from .fleet import (
    BUILTIN_COMPONENTS,
    BUILTIN_POLICIES,
    BUILTIN_STEPS,
    BUILTIN_TRAIT_WORKLOADS,
    BUILTIN_TRAITS,
    Fleet,
    SourceIndex,
    _name,
    _ns,
)
from .images import check_mirrors
from .policy import check_policies
from .runtime import check_dapr, check_telemetry
from .secrets import check_secrets
from .security import check_gateways, check_identity, check_traffic
from .validate import Finding, Report, object_id
from .values import check_values


def _fleet_and_places(report: Report) -> tuple[Fleet, dict[int, str]]:
    """The fleet of all built objects, and for each object id() the kustomization it came from."""
    objects: list[dict[str, Any]] = []
    where: dict[int, str] = {}
    for path, obj in report.objects():
        objects.append(obj)
        where.setdefault(id(obj), path)
    return Fleet.from_objects(objects), where


def check_wiring(report: Report) -> list[Finding]:
    fleet, built_in = _fleet_and_places(report)
    sources = SourceIndex.of(report)
    findings: list[Finding] = []

    def fail(obj: dict[str, Any], message: str) -> None:
        findings.append(Finding("wiring", sources.locate(obj, built_in.get(id(obj), "?")), object_id(obj), message))

    for binding in fleet.bindings:
        target = (binding.get("spec") or {}).get("clusterSet", "")
        if target != _name(binding):
            fail(binding, f"binding name '{_name(binding)}' must equal spec.clusterSet '{target}'")
        if target not in fleet.sets and target != "default":
            fail(binding, f"binds cluster set '{target}', which is not rendered")

    for placement in fleet.placements:
        bound = fleet.bound_sets(_ns(placement))
        wanted = (placement.get("spec") or {}).get("clusterSets") or []
        for cluster_set in wanted:
            if cluster_set not in bound:
                fail(placement, f"uses cluster set '{cluster_set}' but namespace '{_ns(placement)}' has no "
                                f"ManagedClusterSetBinding for it")
        if not wanted and not bound:
            fail(placement, f"namespace '{_ns(placement)}' has no ManagedClusterSetBinding at all")
        if not fleet.place(placement).clusters:
            fail(placement, "selects no rendered ManagedCluster")

    components = BUILTIN_COMPONENTS | set(fleet.definitions["ComponentDefinition"])
    traits = BUILTIN_TRAITS | set(fleet.definitions["TraitDefinition"])
    policy_types = BUILTIN_POLICIES | set(fleet.definitions["PolicyDefinition"])
    steps = BUILTIN_STEPS | set(fleet.definitions["WorkflowStepDefinition"])
    for app in fleet.applications:
        spec = app.get("spec") or {}
        names = {c.get("name") for c in spec.get("components") or []}
        for component in spec.get("components") or []:
            ctype = component.get("type")
            if ctype not in components:
                fail(app, f"component '{component.get('name')}' has type '{ctype}', which is neither built in "
                          "nor rendered as a ComponentDefinition")
                continue
            definition_spec = (fleet.definitions["ComponentDefinition"].get(ctype) or {}).get("spec") or {}
            workload = definition_spec.get("workload") or {}
            for trait in component.get("traits") or []:
                ttype = trait.get("type")
                if ttype not in traits:
                    fail(app, f"component '{component.get('name')}' uses trait '{ttype}', which is neither built "
                              "in nor rendered as a TraitDefinition")
                    continue
                definition = fleet.definitions["TraitDefinition"].get(ttype)
                applies = (((definition or {}).get("spec") or {}).get("appliesToWorkloads")
                           if definition else BUILTIN_TRAIT_WORKLOADS.get(ttype))
                if applies and workload.get("type") and workload["type"] not in applies and "*" not in applies:
                    fail(app, f"trait '{ttype}' applies to {', '.join(applies)}, not to '{workload['type']}'")
        policies = {p.get("name"): p for p in spec.get("policies") or []}
        for policy in policies.values():
            if policy.get("type") not in policy_types:
                fail(app, f"policy '{policy.get('name')}' has type '{policy.get('type')}', which is neither built "
                          "in nor rendered as a PolicyDefinition")
            if policy.get("type") == "topology" and not fleet.topology(policy).clusters:
                fail(app, f"topology policy '{policy.get('name')}' selects no rendered ManagedCluster")
            if policy.get("type") == "override":
                for entry in (policy.get("properties") or {}).get("components") or []:
                    if entry.get("name") and entry["name"] not in names:
                        fail(app, f"override policy '{policy.get('name')}' names component '{entry['name']}', "
                                  "which the Application does not have")
        for step in (spec.get("workflow") or {}).get("steps") or []:
            if step.get("type") not in steps:
                fail(app, f"workflow step '{step.get('name')}' has type '{step.get('type')}', which is neither "
                          "built in nor rendered as a WorkflowStepDefinition")
            for ref in (step.get("properties") or {}).get("policies") or []:
                if ref not in policies:
                    fail(app, f"workflow step '{step.get('name')}' uses policy '{ref}', which the Application "
                              "does not define")
    return findings


ALL_CHECKS = [check_conflicts, check_values, check_policies, check_mirrors, check_wiring, check_dapr, check_telemetry,
              check_identity, check_traffic, check_gateways, check_secrets]
