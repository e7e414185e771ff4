"""What will actually run: every pinned chart rendered with its values, every values key read by its
chart, every pod through the Pod Security gate of its namespace, every image through the mirror.
Each check is shown failing on a rendered repository broken on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opc.charts import deep_merge
from opc.images import paths_for, upstream
from opc.validate import validate_repo
from opc.values import chart_values, unknown_keys
from opc.wiring import ALL_CHECKS

FIXTURE = "valid/aliyun-prod-flux.yml"
SLUG = "hangzhou-widgets"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def findings(repo: Path, schemas, charts, category: str) -> list[str]:
    report = validate_repo(repo, schemas, lint=False, wiring=ALL_CHECKS, charts=charts)
    return [f"{f.where}: {f.subject}: {f.message}" for f in report.findings if f.category == category]


def test_every_release_of_every_cluster_is_rendered(rendered, schemas, charts):
    report = validate_repo(rendered(FIXTURE), schemas, lint=False, wiring=[], charts=charts)
    rendered_releases = {(r.release.cluster, r.release.name) for r in report.releases if r.ok}
    assert ("hub", "kube-prometheus-stack") in rendered_releases and ("aliyun-prod", "istiod") in rendered_releases
    assert report.count("chart") == 0 and all(r.objects for r in report.releases)
    # the namespace a chart leaves to its installer is the release's
    skywalking = next(r for r in report.releases if r.release.name == "skywalking")
    assert {o["metadata"].get("namespace") for o in skywalking.objects if o["kind"] == "Deployment"} == {"observability"}
    # KubeVela's expansion of the service lands in the clusters its topology selects
    vela = [g for g in report.generated if "vela dry-run" in g.source]
    assert {g.cluster for g in vela} == {"aliyun-prod"}
    assert {o["kind"] for g in vela for o in g.objects} == {"CloneSet", "Service", "PodDisruptionBudget", "ServiceAccount"}


def test_misspelt_values_key(rendered_copy, schemas, charts):
    repo = rendered_copy(FIXTURE)
    edit(repo / "infrastructure/controllers/skywalking/release.yaml", "    secretMounts:", "    secretMount:")
    found = findings(repo, schemas, charts, "values")
    assert found == ["clusters/hub/platform: HelmRelease observability/skywalking: values key 'oap.secretMount' is "
                     "not read by chart skywalking-helm 4.7.0"], found


def test_values_keys_are_checked_against_documents_and_templates(tmp_path: Path):
    """Known: documented in values.yaml (subcharts under their alias, Istio's internal defaults),
    read by a template (.Values.a.b or index), or defined by values.schema.json."""
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "charts" / "db" / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 1.0.0\n"
                                      "dependencies: [{name: db, version: 1.0.0, alias: database}]\n")
    (chart / "values.yaml").write_text("image: {repository: x}\n_internal_defaults_do_not_set: {hub: docker.io}\n")
    (chart / "values.schema.json").write_text('{"properties": {"extra": {"type": "object"}}}')
    (chart / "templates" / "d.yaml").write_text("{{ toYaml .Values.ui.resources }} {{ index .Values \"odd-key\" }}")
    (chart / "charts" / "db" / "Chart.yaml").write_text("apiVersion: v2\nname: db\nversion: 1.0.0\n")
    (chart / "charts" / "db" / "values.yaml").write_text("size: 1\n")
    values = chart_values(chart)
    good = {"image": {"repository": "y"}, "hub": "m", "ui": {"resources": {"limits": {"cpu": 1}}},
            "odd-key": {"a": 1}, "extra": {"b": 2}, "database": {"size": 2}, "global": {}}
    assert unknown_keys(good, values) == []
    bad = {"image": {"respository": "y"}, "database": {"sise": 2}, "uii": {}}
    assert unknown_keys(bad, values) == ["image.respository", "database.sise", "uii"]


def test_chart_version_that_exists_nowhere(rendered_copy, schemas, charts):
    repo = rendered_copy(FIXTURE)
    for release in (repo / "infrastructure/controllers/kube-prometheus-stack/release.yaml",):
        edit(release, 'version: "82.15.1"', 'version: "82.15.99"')
    found = findings(repo, schemas, charts, "chart")
    assert any("HelmRelease monitoring/kube-prometheus-stack: chart kube-prometheus-stack 82.15.99 is in no chart "
               "directory" in f and "helm pull from https://prometheus-community.github.io/helm-charts failed" in f
               for f in found), found


@pytest.mark.parametrize(("fixture", "indent"), [(FIXTURE, 4), ("valid/defaults-argocd.yml", 10)],
                         ids=["flux", "argocd"])
def test_privileged_container_in_a_restricted_namespace(fixture, indent, rendered_copy, schemas, charts):
    """With Argo CD the namespace comes from another Application's path than the chart's: judged all the same."""
    repo = rendered_copy(fixture)
    pad = " " * indent
    edit(repo / "infrastructure/controllers/grafana-operator/release.yaml", f"{pad}podSecurityContext:\n",
         f"{pad}securityContext:\n{pad}  privileged: true\n{pad}podSecurityContext:\n")
    found = findings(repo, schemas, charts, "policy")
    assert any("Deployment grafana/grafana-operator: refused by Pod Security 'restricted' of namespace grafana in "
               'cluster hub: privileged (container "grafana-operator" must not set securityContext.privileged=true)'
               in f for f in found), found


NODE_READER = """\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: node-reader
  namespace: observability
  labels: {app.kubernetes.io/name: node-reader, app.kubernetes.io/part-of: x}
spec:
  selector: {matchLabels: {app: node-reader}}
  template:
    metadata: {labels: {app: node-reader}}
    spec:
      containers:
        - name: reader
          image: docker.io/library/busybox:1.36
      volumes:
        - name: host
          hostPath: {path: /var/run}
"""


def test_host_path_in_a_baseline_namespace(rendered_copy, schemas, charts):
    repo = rendered_copy(FIXTURE)
    (repo / "platform/observability/hub/node-reader.yaml").write_text(NODE_READER)
    edit(repo / "platform/observability/hub/kustomization.yaml", "resources:\n", "resources:\n  - node-reader.yaml\n")
    found = findings(repo, schemas, charts, "policy")
    assert any("refused by Pod Security 'baseline' of namespace observability in cluster hub: hostPath volumes "
               '(volume "host")' in f for f in found), found


def test_namespace_more_permissive_than_its_pods(rendered_copy, schemas, charts):
    repo = rendered_copy(FIXTURE)
    edit(repo / "infrastructure/controllers/grafana-operator/manifests/namespace.yaml",
         "pod-security.kubernetes.io/enforce: restricted", "pod-security.kubernetes.io/enforce: baseline")
    found = findings(repo, schemas, charts, "policy")
    assert any("Namespace grafana: enforces Pod Security 'baseline', but its pods need only 'restricted'" in f
               for f in found), found


def test_resources_of_third_party_containers_and_exceptions(rendered_copy, schemas, charts):
    repo = rendered_copy(FIXTURE)
    exceptions = repo / "infrastructure/controllers/skywalking/policy-exceptions.yaml"
    exceptions.unlink()
    found = findings(repo, schemas, charts, "policy")
    assert any("Deployment observability/skywalking-oap: init container wait-for-elasticsearch: no cpu request, "
               "memory request, cpu limit, memory limit" in f for f in found), found
    exceptions.write_text("---\n- pod: Deployment observability/skywalking-oap\n  container: wait-for-elasticsearch\n"
                          "  rule: resources\n")
    found = findings(repo, schemas, charts, "policy")
    assert any("an exception needs a reason" in f for f in found), found


def test_unmirrored_image(rendered_copy, schemas, charts):
    repo = rendered_copy("valid/all-clouds-flux.yml")
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    mirror = answers["registry_mirrors"]["aliyun"]
    overlay = repo / "infrastructure/overlays/aliyun/kustomization.yaml"
    edit(overlay, f"value: {mirror}/docker.io/istio", "value: docker.io/istio")
    found = findings(repo, schemas, charts, "mirror")
    assert any(f"cluster aliyun-prod (aliyun) pulls 'docker.io/istio/install-cni:1.30.3' past the mirror {mirror}"
               in f for f in found), found
    assert not any("tencent" in f for f in found)  # a cloud without a mirror pulls from upstream


def test_image_paths_are_derived_from_values():
    values = {"image": {"registry": "quay.io", "repository": "prometheus/prometheus"},
              "other": {"image": {"registry": "quay.io", "repository": "prometheus/alertmanager"}},
              "init": {"image": "busybox"}}
    paths, orphans = paths_for(values, ["quay.io/prometheus/prometheus:v3.9.1", "busybox:1.30", "ghcr.io/x/y:1"])
    assert paths == {"image.registry": "quay.io", "init.image": "docker.io/library/busybox"}
    assert orphans == ["ghcr.io/x/y:1"]
    assert upstream("oamdev/vela-core") == "docker.io/oamdev/vela-core"


def test_image_paths_file_matches_a_fresh_derivation(template_repo: Path, charts):
    from conftest import ROOT

    from opc.images import derive_for_template, dump

    assert dump(derive_for_template(str(template_repo), charts)) == (ROOT / "hooks" / "image-paths.yml").read_text(), \
        "hooks/image-paths.yml is stale: run scripts/image-paths"


def test_values_merge_like_helm():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2], "d": 3}}) == {"a": {"b": 1, "c": [2], "d": 3}}


def test_skywalking_gets_the_elasticsearch_credentials(rendered, schemas, charts):
    """skywalking-helm 4.7.0 reads oap.secretMounts: the OAP and its init job mount the Secret
    the file realm credentials are in, at the path SW_ES_SECRETS_MANAGEMENT_FILE names."""
    report = validate_repo(rendered(FIXTURE), schemas, lint=False, wiring=[], charts=charts)
    skywalking = next(r for r in report.releases if r.release.name == "skywalking")
    for kind, name in (("Deployment", "skywalking-oap"), ("Job", "skywalking-oap-init")):
        obj = next(o for o in skywalking.objects if o["kind"] == kind and o["metadata"]["name"] == name)
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        assert volumes["elasticsearch-credentials"]["secret"]["secretName"] == "skywalking-elasticsearch", kind
        oap = next(c for c in pod["containers"] if c["name"] == "oap")
        mounts = {m["name"]: m["mountPath"] for m in oap.get("volumeMounts") or []}
        assert mounts["elasticsearch-credentials"] == "/skywalking/secrets", kind
        env = {e["name"]: e.get("value") for e in oap.get("env") or []}
        assert env["SW_ES_SECRETS_MANAGEMENT_FILE"] == "/skywalking/secrets/credentials.properties", kind
