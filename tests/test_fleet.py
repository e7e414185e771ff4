"""Multi-cluster wiring: each rule fires on a rendered copy broken on purpose; `opc placements`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from opc.cli import main
from opc.fleet import Fleet, selector_matches
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS, check_wiring

FLUX = "valid/all-clouds-flux.yml"
ARGO = "valid/all-clouds-argocd.yml"
SLUG = "everywhere-inc"
PREFIX = "everywhere-inc.example"


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def wiring_findings(repo: Path, schemas: list[Path]):
    """Wiring findings only: schemas and lint are checked by the render matrix."""
    report = validate_repo(repo, [], wiring=[check_wiring], lint=False)
    return [f for f in report.findings if f.category == "wiring"], report


@pytest.mark.parametrize("fixture", [FLUX, ARGO])
def test_rendered_fleet_is_wired(rendered, fixture: str, schemas: list[Path], charts):
    report = validate_repo(rendered(fixture), schemas, wiring=ALL_CHECKS, charts=charts)
    assert report.ok and report.wiring_errors == 0, [str(f) for f in report.findings]


def test_placement_without_binding(rendered_copy, schemas: list[Path]):
    repo = rendered_copy(FLUX)
    placements = repo / "platform/ocm/placements.yaml"
    edit(placements, f"kind: ManagedClusterSetBinding\nmetadata:\n  name: prod\n  namespace: {SLUG}\nspec:\n  clusterSet: prod\n",
         "kind: ConfigMap\nmetadata:\n  name: prod-binding-removed\n  namespace: " + SLUG + "\n")
    findings, _ = wiring_findings(repo, schemas)
    messages = {(f.where, f.subject, f.message) for f in findings}
    assert ("platform/ocm/placements.yaml", f"Placement {SLUG}/prod",
            f"uses cluster set 'prod' but namespace '{SLUG}' has no ManagedClusterSetBinding for it") in messages
    assert any(f.subject == f"Placement {SLUG}/prod-aliyun" for f in findings)


def test_binding_to_missing_set(rendered_copy, schemas: list[Path]):
    repo = rendered_copy(FLUX)
    edit(repo / "platform/ocm/placements.yaml", "  name: dev\n  namespace: " + SLUG + "\nspec:\n  clusterSet: dev",
         "  name: qa\n  namespace: " + SLUG + "\nspec:\n  clusterSet: qa")
    findings, _ = wiring_findings(repo, schemas)
    assert any(f.where == "platform/ocm/placements.yaml" and f.subject == f"ManagedClusterSetBinding {SLUG}/qa"
               and "binds cluster set 'qa', which is not rendered" in f.message for f in findings), findings
    assert any(f.subject == f"Placement {SLUG}/dev" and "no ManagedClusterSetBinding" in f.message for f in findings)


def test_placement_selecting_nothing(rendered_copy, schemas: list[Path]):
    repo = rendered_copy(FLUX)
    edit(repo / "platform/ocm/placements.yaml", f'{PREFIX}/cloud: "huawei"', f'{PREFIX}/cloud: "aws"')
    findings, _ = wiring_findings(repo, schemas)
    assert [(f.where, f.subject, f.message) for f in findings] == [
        ("platform/ocm/placements.yaml", f"Placement {SLUG}/prod-huawei", "selects no rendered ManagedCluster")]


def test_topology_selecting_nothing(rendered_copy, schemas: list[Path]):
    repo = rendered_copy(FLUX)
    edit(repo / "apps/order-service/application.yaml", f'{PREFIX}/env: "staging"', f'{PREFIX}/env: "qa"')
    findings, _ = wiring_findings(repo, schemas)
    assert [(f.where, f.subject, f.message) for f in findings] == [
        ("apps/order-service/application.yaml", f"Application {SLUG}/order-service",
         "topology policy 'topology-staging' selects no rendered ManagedCluster")]


@pytest.mark.parametrize("old, new, message", [
    ("type: grpc-service", "type: grpc-servce", "has type 'grpc-servce', which is neither built in nor rendered"),
    ("- type: rollout-strategy", "- type: rolout-strategy", "uses trait 'rolout-strategy', which is neither"),
    ("- type: disruption-budget", "- type: scaler", "trait 'scaler' applies to deployments.apps"),
    ("            - topology-prod\n", "            - topology-production\n", "uses policy 'topology-production'"),
    ("type: suspend", "type: approval", "workflow step 'approve-prod' has type 'approval'"),
    ("          - name: order-service\n            properties:\n              replicas: 2",
     "          - name: orders\n            properties:\n              replicas: 2", "names component 'orders'"),
])
def test_application_references(rendered_copy, schemas: list[Path], old: str, new: str, message: str):
    repo = rendered_copy(FLUX)
    edit(repo / "apps/order-service/application.yaml", old, new)
    findings, _ = wiring_findings(repo, schemas)
    assert any(message in f.message and f.where == "apps/order-service/application.yaml" for f in findings), \
        [str(f) for f in findings]


def test_argocd_placements_need_their_own_bindings(rendered_copy, schemas: list[Path]):
    repo = rendered_copy(ARGO)
    edit(repo / "platform/ocm/argocd.yaml", "  name: global\n  namespace: argocd\nspec:\n  clusterSet: global\n",
         "  name: global\n  namespace: somewhere-else\nspec:\n  clusterSet: global\n")
    findings, _ = wiring_findings(repo, schemas)
    assert [(f.where, f.subject, f.message) for f in findings] == [
        ("platform/ocm/argocd.yaml", "Placement argocd/workload-clusters",
         "uses cluster set 'global' but namespace 'argocd' has no ManagedClusterSetBinding for it"),
        ("platform/ocm/argocd.yaml", "Placement argocd/workload-clusters", "selects no rendered ManagedCluster")]


def _cluster(name: str, **labels: str) -> dict:
    return {"apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
            "metadata": {"name": name, "labels": labels}, "spec": {"hubAcceptsClient": True}}


def test_placement_simulation_spreads_and_tolerates():
    clusters = [_cluster(f"{cloud}-{i}", cloud=cloud, env="prod", **{"cluster.open-cluster-management.io/clusterset": "prod"})
                for cloud in ("a", "b", "c") for i in (1, 2)]
    clusters[0]["spec"]["taints"] = [{"key": "maintenance", "effect": "NoSelect"}]
    objects = clusters + [
        {"apiVersion": "cluster.open-cluster-management.io/v1beta2", "kind": "ManagedClusterSet",
         "metadata": {"name": "prod"}, "spec": {"clusterSelector": {"selectorType": "ExclusiveClusterSetLabel"}}},
        {"apiVersion": "cluster.open-cluster-management.io/v1beta2", "kind": "ManagedClusterSetBinding",
         "metadata": {"name": "prod", "namespace": "apps"}, "spec": {"clusterSet": "prod"}},
    ]
    fleet = Fleet.from_objects(objects)
    placement = {"metadata": {"name": "p", "namespace": "apps"},
                 "spec": {"clusterSets": ["prod"], "numberOfClusters": 3,
                          "spreadPolicy": {"spreadConstraints": [{"topologyKey": "cloud", "topologyKeyType": "Label"}]}}}
    assert fleet.place(placement).clusters == ["a-2", "b-1", "c-1"]  # one per cloud; a-1 is tainted
    placement["spec"]["tolerations"] = [{"key": "maintenance", "operator": "Exists"}]
    assert fleet.place(placement).clusters == ["a-1", "b-1", "c-1"]
    placement["metadata"]["namespace"] = "unbound"
    assert fleet.place(placement).clusters == []


def test_selector_expressions():
    labels = {"env": "prod", "cloud": "aliyun"}
    assert selector_matches({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "cloud", "operator": "NotIn", "values": ["aliyun"]}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({"matchLabels": {"env": "dev"}}, labels)


def test_opc_placements_output(rendered):
    result = CliRunner().invoke(main, ["placements", str(rendered(FLUX))])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Clusters (12, from the rendered ManagedClusters):" in out
    prod = out[out.index("Environment prod:"):]
    assert f"  Placement {SLUG}/prod  [sets: prod; env=prod, role=workload; numberOfClusters 4; spread by cloud]\n" \
           "    -> aliyun-prod, huawei-prod, private-prod, tencent-prod\n" in prod
    assert f"  Placement {SLUG}/prod-huawei  [sets: prod; cloud=huawei, env=prod, role=workload; numberOfClusters 1]\n" \
           "    -> huawei-prod\n" in prod
    assert f"  Application {SLUG}/order-service topology-prod  [env=prod, role=workload]\n" \
           "    -> aliyun-prod, huawei-prod, private-prod, tencent-prod" in prod
    assert out.index("Environment dev:") < out.index("Environment staging:") < out.index("Environment prod:")
    data = json.loads(CliRunner().invoke(main, ["placements", str(rendered(ARGO)), "--format", "json"]).output)
    assert [r["clusters"] for r in data["environments"]["staging"] if r["subject"] == "argocd/clusters-staging"] == [
        ["aliyun-staging", "huawei-staging", "private-staging", "tencent-staging"]]


def test_opc_placements_fails_when_something_lands_nowhere(rendered_copy):
    repo = rendered_copy(FLUX)
    edit(repo / "platform/ocm/placements.yaml", f'{PREFIX}/cloud: "tencent"', f'{PREFIX}/cloud: "gcp"')
    result = CliRunner().invoke(main, ["placements", str(repo)])
    assert result.exit_code == 1 and "-> NOTHING" in result.output


def test_check_wiring_needs_no_schemas(rendered):
    """Wiring works on any report: the same findings with schema validation skipped entirely."""
    report = validate_repo(rendered(FLUX), [], wiring=[check_wiring], lint=False)
    assert report.wiring_errors == 0
