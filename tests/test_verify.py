"""Every cluster of every valid fixture, applied to a real kube-apiserver (etcd and kube-apiserver
1.34 built from the Go module proxy) with the real CRDs and Pod Security admission: nothing
rejected, every warning explained; and each kind of failure the server alone can see, reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FIXTURES

from opc.controlplane import Client, ControlPlane
from opc.validate import validate_repo
from opc.verify import ClusterResult, plans_of, verify_report

VALID = sorted(p.name for p in (FIXTURES / "valid").glob("*.yml"))
# Converged under the real Flux controllers in the suite: the hub of the default answers and a
# workload cluster of Tencent Cloud (three services), Huawei Cloud and the private cloud (with a
# repository branch that YAML would read as a number); Alibaba Cloud's aliyun-staging runs in the
# broken-path test below. `make converge` runs every cluster of every Flux fixture.
FLUX_RUNS = [("defaults", "hub"), ("three-services", "tencent-prod"), ("huawei-three-envs-flux", "huawei-dev"),
             ("yaml-hostile-answers", "private-dev")]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start()
    yield plane
    plane.stop()


def _verify(repo: Path, plane: ControlPlane, schemas, charts, clusters=()) -> list[ClusterResult]:
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    assert not [f for f in report.findings if f.category in ("build", "chart", "vela")]
    return verify_report(report, plane, clusters, schema_dirs=schemas)


def test_control_plane_is_real(control_plane):
    client = Client(control_plane)
    version = client.call("GET", "/version").body
    assert version["gitVersion"] == "v1.34.4"
    plugins = (control_plane.home / "kube-apiserver.log").read_text()
    assert "PodSecurity" in plugins or client.call("GET", "/readyz?verbose").ok
    # TLS with client certificates: without one, the server does not know who asks.
    import ssl
    import urllib.request
    context = ssl.create_default_context(cafile=str(control_plane.pki / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{control_plane.url}/api/v1/namespaces", context=context, timeout=10)  # noqa: S310
    assert refused.value.code in (401, 403)
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("fixture", VALID, ids=[Path(v).stem for v in VALID])
def test_every_cluster_is_accepted(fixture, rendered, control_plane, schemas, charts):
    results = _verify(rendered(f"valid/{fixture}"), control_plane, schemas, charts)
    assert results
    problems = [f"{r.cluster}: {p}" for r in results for p in r.rejected]
    assert not problems, "\n".join(problems[:20])
    unexplained = [f"{r.cluster}: {w.step}: {w.subject}: {w.message}" for r in results for w in r.unexplained]
    assert not unexplained, "\n".join(unexplained[:20])
    for result in results:
        assert result.dry_run > 50 and result.created > 10 and result.pods > 0, result.summary()
        print(result.summary())


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_unknown_field_is_rejected_by_the_server(rendered_copy, control_plane, schemas, charts):
    repo = rendered_copy("defaults")
    _edit(repo / "infrastructure/controllers/eck-operator/release.yaml", "spec:\n", "spec:\n  replicaCount: 2\n")
    results = _verify(repo, control_plane, schemas, charts, ["hub"])
    rejected = [p for r in results for p in r.rejected]
    assert [p.subject for p in rejected] == ["HelmRelease elastic-system/eck-operator"], rejected
    assert ".spec.replicaCount: field not declared in schema" in rejected[0].message


def test_value_only_the_server_checks(rendered_copy, control_plane, schemas, charts):
    """A Service port out of range passes the offline schema (an int32) and not the server."""
    repo = rendered_copy("defaults")
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    service = next(o for g in report.generated if g.cluster == "hub" for o in g.objects
                   if o.get("kind") == "Service" and o["metadata"]["name"] == "elastic-operator-webhook")
    service["spec"]["ports"][0]["port"] = 70000
    from opc.schemas import SchemaStore

    assert SchemaStore([]).validate(service).status == "valid"
    results = verify_report(report, control_plane, ["hub"], schema_dirs=schemas)
    rejected = [p for r in results for p in r.rejected]
    assert len(rejected) == 1 and rejected[0].subject == "Service elastic-system/elastic-operator-webhook"
    assert "must be between 1 and 65535" in rejected[0].message


def test_pod_refused_by_restricted_admission(rendered_copy, control_plane, schemas, charts):
    repo = rendered_copy("defaults")
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    operator = next(o for g in report.generated if g.cluster == "hub" for o in g.objects
                    if o.get("kind") == "StatefulSet" and o["metadata"]["name"] == "elastic-operator")
    pod = operator["spec"]["template"]["spec"]
    pod.pop("securityContext", None)
    for container in pod["containers"]:
        container.setdefault("securityContext", {}).pop("seccompProfile", None)
    results = verify_report(report, control_plane, ["hub"], schema_dirs=schemas)
    rejected = [p for r in results for p in r.rejected]
    assert [p.subject for p in rejected] == ["StatefulSet elastic-system/elastic-operator (its pod)"], rejected
    assert re.search(r'violates PodSecurity "restricted:latest": .*seccompProfile', rejected[0].message)


def test_namespace_another_cluster_created_does_not_count(rendered_copy, control_plane, schemas, charts):
    """The clusters share one API server; a cluster is judged on what it creates itself."""
    repo = rendered_copy("defaults")
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    _, plans, _ = plans_of(report, schemas)
    namespaces = {o["metadata"]["name"] for s in plans["hub"] for o in s.objects if o.get("kind") == "Namespace"}
    hub_only = sorted(namespaces - {o["metadata"]["name"] for s in plans["aliyun-staging"] for o in s.objects
                                    if o.get("kind") == "Namespace"})
    assert hub_only, "the hub has namespaces of its own"
    stray = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray", "namespace": hub_only[0]}}
    plans["aliyun-staging"][-1].objects.append(stray)
    from opc.verify import Verifier

    verifier = Verifier(control_plane)
    hub = verifier.verify("hub", "flux", plans["hub"])
    assert hub.ok, hub.rejected[:3]
    workload = verifier.verify("aliyun-staging", "flux", plans["aliyun-staging"])
    assert [(p.subject, p.message.split(" (")[0]) for p in workload.rejected] == [
        (f"ConfigMap {hub_only[0]}/stray", f'namespaces "{hub_only[0]}" not found')]


def test_only_a_deliberate_pod_security_gap_is_explained():
    """A Pod Security warning is expected only where the namespace enforces a looser level than its
    warn label (the level its pods need); anything else is unexplained and fails verify."""
    from opc.verify import explain

    warning = 'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
    assert "enforces 'baseline'" in explain(warning, "baseline")
    assert explain(warning, "privileged")
    assert explain(warning, "restricted") == ""
    assert explain(warning, "") == ""
    assert explain('metadata.finalizers: "x": prefer a domain-qualified finalizer name', "baseline") == ""


# ---------------------------------------------------------------------------------------------
# Reconciled by the real Flux controllers (tests/fluxrun.py)
# ---------------------------------------------------------------------------------------------


def _depends_on(report, cluster: str) -> dict[str, list[str]]:
    """"Kind namespace/name" -> what it waits for, for every Flux Kustomization and HelmRelease."""
    graph = {}
    for _, objects in report.cluster_units()[cluster]:
        for obj in objects:
            if obj.get("kind") in ("Kustomization", "HelmRelease") and "toolkit.fluxcd.io" in obj["apiVersion"]:
                ns = obj["metadata"].get("namespace", "flux-system")
                graph[f"{obj['kind']} {ns}/{obj['metadata']['name']}"] = [
                    f"{obj['kind']} {d.get('namespace', ns)}/{d['name']}" for d in obj["spec"].get("dependsOn") or []]
    return graph


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "cluster"), FLUX_RUNS, ids=[f"{f}-{c}" for f, c in FLUX_RUNS])
def test_flux_converges(fixture, cluster, rendered, schemas, charts, tmp_path):
    import fluxrun

    repo = rendered(fixture if fixture == "defaults" else f"valid/{fixture}.yml")
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    # A Secret encrypted with `opc secrets set`: kustomize-controller decrypts it with the cluster's key.
    secrets = {"three-services-co/redis": {"password": "s3cret-redis"}} if fixture == "three-services" else {}
    outcome = fluxrun.run(report, repo, cluster, tmp_path, schemas, timeout=600, secrets=secrets)
    waiting = [f"{name}: {message}" for name, (ok, message) in {**outcome.kustomizations, **outcome.helmreleases}.items()
               if not ok]
    assert outcome.converged, f"{outcome.summary()}\n" + "\n".join(waiting)
    assert not outcome.waiting, outcome.waiting  # no pod left waiting for a Secret nobody provides
    graph = _depends_on(report, cluster)
    assert sorted(graph) == sorted(outcome.ready_at), "every Kustomization and HelmRelease of the repository, no other"
    late = [f"{name} Ready at {outcome.ready_at[name]:.0f}s before {dep} at {outcome.ready_at[dep]:.0f}s"
            for name, deps in graph.items() for dep in deps if outcome.ready_at[dep] > outcome.ready_at[name]]
    assert not late, "\n".join(late)
    assert not outcome.stand_in_errors, outcome.stand_in_errors[:5]
    # Every encrypted Secret applied, decrypted: the one set here and the cluster's telemetry CA
    # that `opc secrets init` made (what cert-manager issues the cluster's client certificates from).
    ca = outcome.secrets.pop("cert-manager/telemetry-ca", {})
    assert outcome.secrets == secrets
    assert ca.get("tls.crt", "").startswith("-----BEGIN CERTIFICATE") and "PRIVATE KEY" in ca.get("tls.key", "")
    print(outcome.summary())


@pytest.mark.slow
def test_broken_kustomization_path_is_reported_by_the_controller(rendered, schemas, charts, tmp_path):
    """A misspelt path in the first layer is reported by the real kustomize-controller on that
    layer, and the layers after it wait for it instead of applying."""
    import fluxrun

    repo = rendered("defaults")
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    cluster = "aliyun-staging"
    controllers = "Kustomization flux-system/controllers"
    configs = "Kustomization flux-system/configs"

    def misspell(copy: Path) -> None:
        _edit(copy / "clusters" / cluster / "layers.yaml", f"path: ./clusters/{cluster}/controllers",
              f"path: ./clusters/{cluster}/contollers")

    def reported(outcome) -> bool:
        return ("kustomization path not found" in outcome.kustomizations.get(controllers, (False, ""))[1]
                and "is not ready" in outcome.kustomizations.get(configs, (False, ""))[1])

    outcome = fluxrun.run(report, repo, cluster, tmp_path, schemas, timeout=600, edit=misspell, until=reported)
    ok, message = outcome.kustomizations[controllers]
    assert not ok and re.search(r"kustomization path not found: .*clusters/aliyun-staging/contollers", message), message
    ok, message = outcome.kustomizations[configs]
    assert not ok and "dependency 'flux-system/controllers' is not ready" in message, message
    assert outcome.kustomizations["Kustomization flux-system/flux-system"][0], "the cluster's own layer applied"


def test_readme_restore_is_accepted_by_the_server(rendered, control_plane, schemas, charts):
    """The Restore the rendered README documents, dry-run on the API server with Velero's CRD
    (installed by verifying the cluster): accepted as written, and a misspelt field refused."""
    import yaml

    repo = rendered("valid/private-argocd.yml")
    results = _verify(repo, control_plane, schemas, charts, ["private-prod"])
    assert results and not [p for r in results for p in r.rejected]
    readme = (repo / "README.md").read_text()
    block = re.search(r"```yaml\n((?:  .*\n)*?  kind: Restore\n(?:  .*\n)*?)  ```", readme)
    assert block, "the README documents no Restore"
    restore = yaml.safe_load("\n".join(line[2:] for line in block.group(1).splitlines()))
    client = Client(control_plane)
    path = "/apis/velero.io/v1/namespaces/velero/restores?dryRun=All&fieldValidation=Strict"
    answer = client.call("POST", path, restore)
    assert answer.status == 201, answer.body
    restore["spec"]["restorePV"] = False
    answer = client.call("POST", path, restore)
    assert answer.status >= 400 and 'unknown field "spec.restorePV"' in str(answer.body), answer.body
    client.close()
