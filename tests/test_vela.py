"""KubeVela's own CLI expands every rendered Application (`vela dry-run --offline`), with the
repository's definitions and those the pinned vela-core chart installs, as `opc validate` does;
what it produces is validated and judged like everything else."""

from __future__ import annotations

import hashlib
import posixpath

import pytest
import yaml

from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS


def expanded(report) -> dict[str, list[dict]]:
    """Per cluster, what KubeVela creates there."""
    out: dict[str, list[dict]] = {}
    for generated in report.generated:
        if "vela dry-run" in generated.source:
            out.setdefault(generated.cluster, []).extend(generated.objects)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["valid/all-clouds-flux.yml", "valid/tencent-dev-argocd.yml",
                                     "valid/all-clouds-argocd.yml"])
def test_vela_renders_every_application(fixture: str, rendered, schemas, charts):
    repo = rendered(fixture)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    report = validate_repo(repo, schemas, lint=False, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings][:20]
    by_cluster = expanded(report)
    workload = {f"{c}-{e}" for c in answers["clouds"] for e in answers["environments"]}
    assert set(by_cluster) == workload  # every service lands on every workload cluster, nowhere else
    mirrors = answers.get("registry_mirrors") or {}
    # a service with a database adds its rules (ConfigMap) and its way out to it (NetworkPolicy)
    database = any(s.get("database", "none") != "none" for s in answers.get("services") or [])
    kinds = sorted(["CloneSet", "PodDisruptionBudget", "Service", "ServiceAccount"]
                   + (["ConfigMap", "NetworkPolicy"] if database else []))
    for cluster, objects in by_cluster.items():
        cloud, env = cluster.split("-", 1)
        assert sorted({o["kind"] for o in objects}) == kinds
        for clone_set in (o for o in objects if o["kind"] == "CloneSet"):
            assert clone_set["spec"]["replicas"] == (2 if env == "prod" else 1)
            assert clone_set["spec"]["updateStrategy"]["type"] == "InPlaceIfPossible"
            annotations = clone_set["spec"]["template"]["metadata"]["annotations"]
            assert annotations["dapr.io/app-protocol"] == "grpc"
            assert annotations["sidecar.istio.io/inject"] == "true"
            assert annotations["dapr.io/config"] == "appconfig"
            pod = clone_set["spec"]["template"]["spec"]
            # its own identity, with no token: these services list no Secrets
            assert pod["serviceAccountName"] == clone_set["metadata"]["name"]
            assert pod["automountServiceAccountToken"] is False
            env_vars = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
            if answers.get("java_tracing", "opentelemetry") == "opentelemetry":
                assert annotations["instrumentation.opentelemetry.io/inject-java"] == "true"
                assert "initContainers" not in pod and "javaagent" not in env_vars["JAVA_TOOL_OPTIONS"]
            else:  # the SkyWalking agent, copied in by an init container (through the cloud's mirror)
                assert "instrumentation.opentelemetry.io/inject-java" not in annotations
                assert [c["name"] for c in pod["initContainers"]] == ["skywalking-agent"]
                agent = pod["initContainers"][0]["image"]
                assert agent.startswith(f"{mirrors[cloud]}/docker.io/") if cloud in mirrors else \
                    agent.startswith("docker.io/apache/skywalking-java-agent:")
                assert "-javaagent:/skywalking/agent/skywalking-agent.jar" in env_vars["JAVA_TOOL_OPTIONS"]
                assert env_vars["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] == f"oap.{answers['base_domain']}:443"
                # mutual TLS: the agent resolves its TLS paths in its own directory, needs the CA
                # file to exist to present a client certificate at all, and takes PKCS#8 keys
                agent_dir = next(m["mountPath"] for m in pod["containers"][0]["volumeMounts"]
                                 if m["name"] == "skywalking-agent")
                assert env_vars["JAVA_TOOL_OPTIONS"].split("-javaagent:")[1].split()[0] == \
                    f"{agent_dir}/skywalking-agent.jar"
                mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
                volumes = {v["name"]: v for v in pod["volumes"]}
                resolved = {key: posixpath.normpath(posixpath.join(agent_dir, env_vars[key])) for key in (
                    "SW_AGENT_SSL_TRUSTED_CA_PATH", "SW_AGENT_SSL_CERT_CHAIN_PATH", "SW_AGENT_SSL_KEY_PATH")}
                assert resolved["SW_AGENT_SSL_TRUSTED_CA_PATH"] == "/etc/ssl/certs/ca-certificates.crt"
                for key, item in (("SW_AGENT_SSL_CERT_CHAIN_PATH", "tls.crt"), ("SW_AGENT_SSL_KEY_PATH", "tls.key")):
                    folder, name = posixpath.split(resolved[key])
                    assert name == item and volumes[mounts[folder]]["secret"]["secretName"] == "telemetry-client"
                    # not inside another mount: the runtime cannot create a mount point in the
                    # agent's read-only folder
                    assert not [m for m in mounts if m != folder and folder.startswith(m.rstrip("/") + "/")], mounts
                certificate = next(o for _, o in report.cluster_objects()[cluster] if o["kind"] == "Certificate"
                                   and o["metadata"] == {"name": "telemetry-client",
                                                         "namespace": clone_set["metadata"]["namespace"]})
                assert certificate["spec"]["privateKey"]["encoding"] == "PKCS8"
                assert certificate["spec"]["uris"] == [f"spiffe://{cluster}.telemetry.{answers['base_domain']}/telemetry"]


@pytest.mark.slow
def test_vela_rejects_a_broken_definition(rendered_copy, schemas, charts):
    repo = rendered_copy("valid/tencent-dev-argocd.yml")
    definition = repo / "platform/kubevela/definitions/grpc-service.yaml"
    definition.write_text(definition.read_text().replace("replicas: parameter.replicas", "replicas: parameter.replica"))
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    problems = [f.message for f in report.findings if f.category == "vela"]
    assert problems and "undefined field: replica" in problems[0], problems


class _Rules(yaml.SafeLoader):
    """Reads ShardingSphere's rules, whose tags (!READWRITE_SPLITTING) name rule types."""


_Rules.add_multi_constructor("!", lambda loader, tag, node: {tag: loader.construct_mapping(node, deep=True)})


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["valid/three-services.yml", "valid/huawei-three-envs-flux.yml"])
def test_a_database_service_gets_its_login_rules_and_way_out(fixture: str, rendered, schemas, charts):
    """KubeVela gives a service with a database its address and login from the Secret
    <name>-database (mounted), the rules of its environment in a ConfigMap (the service's own rules, with
    every statement logged in dev only), and egress to its engine's port; a service without
    one gets none of it."""
    repo = rendered(fixture)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    engines = {s["name"]: s.get("database", "none") for s in answers["services"]}
    shards = {s["name"]: s.get("shards", 1) for s in answers["services"]}
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    assert report.ok, [str(f) for f in report.findings][:20]
    for cluster, objects in expanded(report).items():
        env = cluster.split("-", 1)[1]
        for name, engine in engines.items():
            clone_set = next(o for o in objects if o["kind"] == "CloneSet" and o["metadata"]["name"] == name)
            pod = clone_set["spec"]["template"]["spec"]
            container = pod["containers"][0]
            variables = {e["name"]: e for e in container["env"]}
            rules = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{name}-shardingsphere"]
            egress = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"{name}-database"]
            annotations = clone_set["spec"]["template"]["metadata"]["annotations"]
            if engine == "none":
                assert not [v for v in variables if v.startswith("DATABASE_") or v == "SHARDINGSPHERE_RULES"]
                assert "checksum/shardingsphere-rules" not in annotations
                assert rules == [] and egress == [], (cluster, name)
                continue
            # the login as files (a Secret in the environment is what audits flag), readable by the pod's group only
            assert not [v for v in variables.values() if "valueFrom" in v]
            login = next(m for m in container["volumeMounts"] if m["mountPath"] == variables["DATABASE_LOGIN_DIR"]["value"])
            assert login["readOnly"] is True
            assert next(v for v in pod["volumes"] if v["name"] == login["name"])["secret"] == {
                "secretName": f"{name}-database", "defaultMode": 0o440}
            assert variables["DATABASE_SHARDS"]["value"] == str(shards[name])
            folder, file = posixpath.split(variables["SHARDINGSPHERE_RULES"]["value"])
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == folder)
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["configMap"]["name"] == f"{name}-shardingsphere" and mount["readOnly"] is True
            (config_map,) = rules
            # the pods roll when the rules change: their template carries the rules' digest
            assert annotations["checksum/shardingsphere-rules"] == hashlib.sha256(
                config_map["data"][file].encode()).hexdigest(), cluster
            environment_rules = yaml.load(config_map["data"][file], Loader=_Rules)  # noqa: S506 (a safe loader)
            own = yaml.load((repo / "services" / name / f"{name}-infrastructure" / "src" / "main" / "resources"
                             / "shardingsphere.yaml").read_text(), Loader=_Rules)  # noqa: S506
            assert environment_rules["props"].pop("sql-show") is (env == "dev"), cluster
            own["props"].pop("sql-show")
            assert environment_rules == own, cluster
            assert egress[0]["spec"]["egress"] == [{"ports": [{"protocol": "TCP",
                                                               "port": {"mysql": 3306, "postgresql": 5432}[engine]}]}]
    # the Secret is declared, so `opc secrets` asks for it on every workload cluster
    assert all(f"{n}-database" in {d["name"] for d in yaml.safe_load((repo / "apps" / n / "secrets.yaml").read_text())}
               for n, e in engines.items() if e != "none")
