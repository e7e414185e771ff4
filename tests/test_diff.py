"""`opc diff` reports exactly the objects a commit changed, per cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import git

from opc.cli import main
from opc.diff import deployable_units, run

ISTIOD = "infrastructure/controllers/istio/istiod.yaml"
PEER_AUTH = "infrastructure/configs/istio/peer-authentication.yaml"


@pytest.fixture
def repo(rendered_copy):
    def _repo(fixture: str) -> Path:
        dest = rendered_copy(fixture)
        git(dest, "init", "-q", "-b", "main")
        git(dest, "add", "-A")
        git(dest, "commit", "-q", "-m", "rendered")
        return dest
    return _repo


def make_test_commit(repo: Path) -> None:
    istiod = repo / ISTIOD
    istiod.write_text(istiod.read_text().replace("accessLogEncoding: JSON", "accessLogEncoding: TEXT"))
    kustomization = repo / "infrastructure/configs/istio/kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("  - peer-authentication.yaml\n", "  - sidecar.yaml\n"))
    (repo / PEER_AUTH).unlink()
    (repo / "infrastructure/configs/istio/sidecar.yaml").write_text(
        "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: istio-system\n"
        "spec:\n  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "test commit")


def keys(changes) -> set[tuple[str, str, str, str]]:
    return {(c.key[0], c.key[2], c.key[3], c.key[4]) for c in changes}


def test_flux_diff_is_exactly_the_test_commit(repo):
    project = repo("valid/huawei-three-envs-flux.yml")
    make_test_commit(project)
    result = run(project, "HEAD~1", "HEAD")
    clusters = ["huawei-dev", "huawei-prod", "huawei-staging", "hub"]  # the hub runs the mesh too
    assert keys(result.changed) == {(c, "HelmRelease", "istio-system", "istiod") for c in clusters}
    assert keys(result.removed) == {(c, "PeerAuthentication", "istio-system", "default") for c in clusters}
    assert keys(result.added) == {(c, "Sidecar", "istio-system", "default") for c in clusters}
    change = result.changed[0]
    assert "-      accessLogEncoding: JSON\n+      accessLogEncoding: TEXT" in change.diff


def test_argocd_diff_names_clusters_and_shared_units(repo):
    project = repo("valid/tencent-dev-argocd.yml")
    make_test_commit(project)
    result = run(project, "HEAD~1", "HEAD")
    # the Helm values live in the cluster's Application; the config objects in the folder its
    # configs Application syncs
    # (the hub runs the mesh too, its own Application named plainly)
    assert keys(result.changed) == {("tencent-dev", "Application", "argocd", "tencent-dev-istiod"),
                                    ("hub", "Application", "argocd", "istiod")}
    assert keys(result.removed) == {(c, "PeerAuthentication", "istio-system", "default") for c in ("tencent-dev", "hub")}
    assert keys(result.added) == {(c, "Sidecar", "istio-system", "default") for c in ("tencent-dev", "hub")}


def test_working_tree_default_and_formats(repo):
    project = repo("valid/aliyun-prod-flux.yml")
    assert run(project).empty  # merge-base with main .. working tree: nothing yet
    dapr = project / "infrastructure/controllers/dapr/release.yaml"  # on workload clusters only
    dapr.write_text(dapr.read_text().replace("workloadCertTTL: 24h", "workloadCertTTL: 12h"))
    runner = CliRunner()
    text = runner.invoke(main, ["diff", "--dir", str(project), "--exit-code"])
    assert text.exit_code == 1 and "0 added, 0 removed, 1 changed" in text.output
    assert "aliyun-prod\n  ~ HelmRelease.helm.toolkit.fluxcd.io dapr-system/dapr" in text.output
    markdown = runner.invoke(main, ["diff", "--dir", str(project), "--format", "markdown"]).output
    assert "| aliyun-prod | changed | `HelmRelease.helm.toolkit.fluxcd.io dapr-system/dapr` |" in markdown
    assert "```diff" in markdown and "+        workloadCertTTL: 12h" in markdown
    data = json.loads(runner.invoke(main, ["diff", "--dir", str(project), "--format", "json"]).output)
    assert [(c["scope"], c["kind"], c["name"]) for c in data["changed"]] == [("aliyun-prod", "HelmRelease", "dapr")]


def test_units_are_what_engines_apply(rendered):
    root = rendered("valid/huawei-three-envs-flux.yml")
    units = {u.relative_to(root).as_posix() for u in deployable_units(root)}
    assert "clusters/huawei-prod" in units and "clusters/huawei-prod/controllers" in units
    assert "clusters/huawei-prod/flux-system" not in units  # included by the cluster's entry point
    assert not any(u.startswith("infrastructure/controllers/istio") for u in units)
