"""`opc audit`: kube-score and checkov, the real programs, over everything the clusters receive
(charts' output and KubeVela's included). Every valid fixture family passes with the reasoned
skips the template carries, every skip is needed by some fixture, and a broken object of the
repository's own is caught by both scanners."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from opc.audit import _checkov, _kube_score, audited_objects, check_audit, load_skips, scan
from opc.cli import main
from opc.tools import find
from opc.validate import validate_repo

# Both engines, every cloud (the private one's bare-metal components included), SkyWalking
# agents, and services that call each other and read Secrets.
FIXTURES = ["valid/all-clouds-flux.yml", "valid/all-clouds-argocd.yml", "valid/three-services.yml"]


@pytest.mark.slow
def test_every_fixture_passes_the_audit_and_every_skip_is_needed(rendered, charts):
    used: dict[tuple[str, str, tuple[str, ...], str], int] = {}  # an entry: its file, tool, checks and reason
    for fixture in FIXTURES:
        repo = rendered(fixture)
        report = validate_repo(repo, [], lint=False, wiring=[], charts=charts)
        assert not [f for f in report.findings if f.category in ("build", "chart", "vela")]
        raws, count = scan(report)
        findings, covered = check_audit(report, raws)
        assert findings == [], (fixture, [str(f) for f in findings][:20])
        assert count > 700 and {r.source for r in raws} == {"charts", "repository"}
        # the services run as CloneSets, which the scanners do not know: they see them as Deployments
        objects = audited_objects(report)
        assert any(o["kind"] == "Deployment" and o["metadata"]["name"] == "order-service" for _, o, _ in objects)
        # the clusters receive CRDs; the scanners are not shown them (no check of theirs applies)
        assert any(o["kind"] == "CustomResourceDefinition" for built in report.cluster_objects().values()
                   for _, o in built)
        assert not [o for _, o, _ in objects if o["kind"] == "CustomResourceDefinition"]
        # a finding fixed: clouds that host the control plane get no monitors for it
        for cluster, objects in report.cluster_objects().items():
            control_plane = {o["metadata"]["name"] for _, o in objects if o["kind"] == "Service"
                             and o["metadata"].get("namespace") == "kube-system"
                             and o["metadata"]["name"].endswith(("kube-scheduler", "kube-controller-manager",
                                                                 "kube-etcd"))}
            labels = yaml.safe_load((repo / "clusters" / cluster / "kustomization.yaml").read_text())["labels"][0]
            cloud = next(v for k, v in labels["pairs"].items() if k.endswith("/cloud"))
            assert len(control_plane) == (3 if cloud == "private" else 0), (cluster, cloud, control_plane)
        for skip, n in covered.items():
            key = (skip.where, skip.tool, skip.checks, skip.reason)  # objects may name the fixture's slug
            used[key] = used.get(key, 0) + n
    stale = [key for key, n in used.items() if n == 0]
    assert not stale, f"skips no fixture needs (remove them): {stale}"


BROKEN = """---
apiVersion: apps/v1
kind: Deployment
metadata: {name: debug, namespace: %s}
spec:
  selector: {matchLabels: {app: debug}}
  template:
    metadata: {labels: {app: debug}}
    spec:
      containers:
        - name: debug
          image: busybox
          securityContext: {privileged: true}
"""


@pytest.mark.slow
def test_a_broken_object_of_the_repository_is_caught(rendered_copy, charts):
    """What the template skips for charts' output still holds for the repository's own objects."""
    repo = rendered_copy("valid/tencent-dev-argocd.yml")
    slug = yaml.safe_load((repo / ".copier-answers.yml").read_text())["company_slug"]
    namespace_file = repo / "infrastructure/configs/workloads/namespace.yaml"
    namespace_file.write_text(namespace_file.read_text() + BROKEN % slug)
    args = ["audit", str(repo), "--offline", "-q", *[a for d in charts.dirs for a in ("--chart-dir", str(d))],
            *[a for name, path in charts.substitutes.items() for a in ("--chart-substitute", f"{name}={path}")]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    for expected in ("kube-score container-resources", "kube-score container-image-tag",
                     "kube-score container-security-context-privileged", "checkov CKV_K8S_16",
                     "checkov CKV_K8S_14", "checkov CKV_K8S_11"):
        assert f"Deployment {slug}/debug: {expected}" in result.output, result.output[-3000:]


def test_skip_entries_need_a_tool_a_check_and_a_reason(tmp_path: Path):
    (tmp_path / "audit-skips.yaml").write_text(
        "---\n- {tool: kube-score, check: pod-probes, reason: fine}\n- {tool: trivy, check: x, reason: y}\n"
        "- {tool: checkov, check: CKV_K8S_8}\n- {tool: checkov, check: [CKV_K8S_8, CKV_K8S_9], from: nowhere, "
        "reason: z}\n")
    skips, problems = load_skips(tmp_path)
    assert [s.checks for s in skips] == [("pod-probes",)]
    assert [p.subject for p in problems] == ["entry 1", "entry 2", "entry 3"]


CRD = """---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def test_neither_scanner_checks_a_crd(tmp_path: Path):
    """Why the audit leaves CustomResourceDefinitions out: each scanner, shown one beside a
    Deployment, judges the Deployment and applies no check to the CRD."""
    (tmp_path / "crd.yaml").write_text(CRD)
    (tmp_path / "deployment.yaml").write_text(BROKEN % "default")
    names = {n: (n, n, "repository") for n in ("crd.yaml", "deployment.yaml")}
    for scanner in (_kube_score, _checkov):
        judged = {raw.where for raw in scanner(tmp_path, names)}
        assert judged == {"deployment.yaml"}, scanner
    proc = subprocess.run([find("checkov"), "--file", str(tmp_path / "crd.yaml"), "--framework", "kubernetes",
                           "--output", "json", "--quiet", "--skip-download"], capture_output=True, text=True)
    result = json.loads(proc.stdout)  # with nothing to report, checkov prints the bare summary
    summary = result.get("summary", result)
    assert (summary["passed"], summary["failed"], summary["parsing_errors"]) == (0, 0, 0), summary
