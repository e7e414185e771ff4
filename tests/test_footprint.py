"""`opc footprint`: what each cluster asks of its nodes, from the real rendered pods."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from opc.cli import main
from opc.footprint import compute, cpu_millis, memory_bytes, render_markdown
from opc.validate import validate_repo

FIXTURE = "valid/aliyun-prod-flux.yml"


def test_units():
    assert (cpu_millis("250m"), cpu_millis("2"), cpu_millis(0.5)) == (250, 2000, 500)
    assert (memory_bytes("64Mi"), memory_bytes("1Gi"), memory_bytes("1G")) == (64 * 2**20, 2**30, 10**9)


def test_sums_follow_replicas_autoscalers_daemonsets_and_sidecars(rendered, charts):
    report = validate_repo(rendered(FIXTURE), [], lint=False, wiring=[], charts=charts)
    one, three = ({fp.cluster: fp for fp in compute(report, nodes)} for nodes in (1, 3))
    hub, prod = one["hub"], one["aliyun-prod"]
    # grafana: the operator (20m, 64Mi requested) and the Grafana it runs (50m, 128Mi)
    assert (hub.namespaces["grafana"].cpu_request, hub.namespaces["grafana"].memory_request) == (70, 192 * 2**20)
    # fluentd is a DaemonSet: once per node
    assert three["hub"].namespaces["logging"].cpu_request == 3 * hub.namespaces["logging"].cpu_request == 150
    # the ingress gateway's autoscaler keeps two in production (100m each), one elsewhere
    assert prod.namespaces["istio-ingress"].pods == 2 and prod.namespaces["istio-ingress"].cpu_request == 200
    assert hub.namespaces["istio-ingress"].pods == 1
    # the service: two replicas in production, each with its container (250m), the Istio proxy (50m) and
    # daprd (50m, from the pod's dapr.io/sidecar-cpu-request)
    service = prod.namespaces["hangzhou-widgets"]
    assert service.pods == 2 and service.cpu_request == 2 * (250 + 50 + 50)
    assert prod.total.cpu_request == sum(a.cpu_request for a in prod.namespaces.values())


def test_cli_formats(rendered, charts):
    dirs = [arg for d in charts.dirs for arg in ("--chart-dir", str(d))]
    dirs += [arg for k, v in charts.substitutes.items() for arg in ("--chart-substitute", f"{k}={v}")]
    repo = str(rendered(FIXTURE))
    result = CliRunner().invoke(main, ["footprint", repo, "--format", "json", "--nodes", "2", "-q", *dirs])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["nodes"] == 2 and set(data["clusters"]) == {"hub", "aliyun-prod"}
    result = CliRunner().invoke(main, ["footprint", repo, "--format", "markdown", "-q", *dirs])
    assert result.exit_code == 0 and "| `aliyun-prod` |" in result.output


@pytest.mark.parametrize("fixture", ["valid/three-services.yml", "valid/all-clouds-argocd.yml",
                                     "valid/huawei-three-envs-flux.yml"])
def test_rendered_readme_shows_the_real_footprint(fixture: str, rendered, charts):
    """The README's table (computed at render time from hooks/footprint.yml) is what `opc
    footprint` finds in the same render: the derived data is current and the model is right."""
    repo = rendered(fixture)
    report = validate_repo(repo, [], lint=False, wiring=[], charts=charts)
    table = [line for line in render_markdown(compute(report, 1), 1).splitlines() if line.startswith("|")]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("## Footprint"):readme.index("## Bootstrap")]
    assert [line for line in section.splitlines() if line.startswith("|")] == table, \
        "the README's footprint differs from the render's: run scripts/footprint"
