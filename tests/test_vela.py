"""KubeVela's own CLI renders every rendered Application with the rendered definitions
(`vela dry-run --offline`); what it produces must pass the same strict checks as everything else.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from opc.policy import workload_violations
from opc.schemas import SchemaStore

TOOLS = ROOT / ".tools"
UPSTREAM_DEFINITIONS = TOOLS / "vela-definitions"  # topology, override, suspend (scripts/install-tools)
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
users: [{name: offline, user: {token: offline}}]
"""


def vela() -> str:
    exe = shutil.which("vela") or str(TOOLS / "bin" / "vela")
    if not Path(exe).is_file():
        pytest.fail("vela is not installed: run scripts/install-tools")
    assert UPSTREAM_DEFINITIONS.is_dir(), "run scripts/install-tools (it copies KubeVela's definitions)"
    return exe


def dry_run(repo: Path, app: Path, tmp: Path) -> subprocess.CompletedProcess:
    defs = tmp / "definitions"
    defs.mkdir(exist_ok=True)
    for path in sorted((repo / "platform" / "kubevela" / "definitions").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if len(docs) == 1 and docs[0].get("kind", "").endswith("Definition"):  # vela reads one object per file
            shutil.copy(path, defs / path.name)
    for path in UPSTREAM_DEFINITIONS.glob("*.cue"):
        shutil.copy(path, defs / path.name)
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return subprocess.run([vela(), "dry-run", "--offline", "-d", str(defs), "-f", str(app)], capture_output=True,
                          text=True, env={"KUBECONFIG": str(kubeconfig), "HOME": str(tmp), "PATH": "/usr/bin:/bin"},
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["valid/all-clouds-flux.yml", "valid/tencent-dev-argocd.yml", "valid/all-clouds-argocd.yml"])
def test_vela_renders_every_application(fixture: str, rendered, schemas: Path, tmp_path: Path):
    repo = rendered(fixture)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    store = SchemaStore([schemas])
    apps = sorted((repo / "apps").glob("*/application.yaml"))
    assert apps
    for app in apps:
        result = dry_run(repo, app, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        objects = [d for d in yaml.safe_load_all(result.stdout) if d]
        kinds = sorted({o["kind"] for o in objects})
        assert kinds == ["CloneSet", "PodDisruptionBudget", "Service"], kinds
        # one rendering per environment's topology policy, each with that environment's override
        clonesets = [o for o in objects if o["kind"] == "CloneSet"]
        assert len(clonesets) == len(answers["environments"])
        replicas = sorted(c["spec"]["replicas"] for c in clonesets)
        expected = sorted(2 if env == "prod" else 1 for env in answers["environments"])
        assert replicas == expected
        for obj in objects:
            outcome = store.validate(obj)
            assert outcome.status == "valid", (obj["kind"], outcome.errors)
            if obj["kind"] == "CloneSet":
                assert list(workload_violations(obj)) == []
                assert obj["spec"]["updateStrategy"]["type"] == "InPlaceIfPossible"
                annotations = obj["spec"]["template"]["metadata"]["annotations"]
                assert annotations["dapr.io/app-protocol"] == "grpc"
                assert annotations["sidecar.istio.io/inject"] == "true"
                assert annotations["dapr.io/config"] == "appconfig"
                pod = obj["spec"]["template"]["spec"]
                env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
                if answers.get("java_tracing", "opentelemetry") == "opentelemetry":
                    assert annotations["instrumentation.opentelemetry.io/inject-java"] == "true"
                    assert "initContainers" not in pod and "javaagent" not in env["JAVA_TOOL_OPTIONS"]
                else:  # the SkyWalking agent, copied in by an init container, reporting to the hub
                    assert "instrumentation.opentelemetry.io/inject-java" not in annotations
                    assert [c["name"] for c in pod["initContainers"]] == ["skywalking-agent"]
                    assert "-javaagent:/skywalking/agent/skywalking-agent.jar" in env["JAVA_TOOL_OPTIONS"]
                    assert env["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] == f"oap.{answers['base_domain']}:443"


@pytest.mark.slow
def test_vela_rejects_a_broken_definition(rendered_copy, tmp_path: Path):
    repo = rendered_copy("valid/tencent-dev-argocd.yml")
    definition = repo / "platform/kubevela/definitions/grpc-service.yaml"
    definition.write_text(definition.read_text().replace("replicas: parameter.replicas", "replicas: parameter.replica"))
    result = dry_run(repo, repo / "apps/order-service/application.yaml", tmp_path)
    assert result.returncode != 0 and "undefined field: replica" in result.stderr, result.stderr[-1000:]
