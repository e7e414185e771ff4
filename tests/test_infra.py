"""Day 0: infra/ holds OpenTofu roots and Sealer Clusterfiles for exactly a fixture's clouds and
environments; every check of `opc infra check` (tofu fmt, tofu validate against the providers'
real schemas, tofu test with mock providers, tflint, Sealer's own types) passes on every valid
fixture and fails on a broken input; `make bootstrap` runs its steps in order (with stand-ins for
the programs that would reach a cloud or a cluster) and `make destroy` asks first."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES

from opc import infra

VALID = sorted(p.name for p in (FIXTURES / "valid").glob("*.yml"))
ENVIRONMENTS = ("dev", "staging", "prod")


def _answers(repo: Path) -> dict:
    return yaml.safe_load((repo / ".copier-answers.yml").read_text())


def _clusters(answers: dict) -> dict[str, str]:
    """cluster name -> cloud, from the answers."""
    clusters = {"hub": answers["hub_cloud"]}
    for cloud in answers["clouds"]:
        for env in ENVIRONMENTS:
            if env in answers["environments"]:
                clusters[f"{cloud}-{env}"] = cloud
    return clusters


@pytest.mark.parametrize("fixture", VALID, ids=[Path(v).stem for v in VALID])
def test_infra_is_rendered_for_exactly_the_answers(fixture, rendered):
    repo = rendered(f"valid/{fixture}")
    answers = _answers(repo)
    clusters = _clusters(answers)
    public = [c for c in answers["clouds"] if c != "private"]
    assert [p.name for p in infra.roots(repo / "infra")] == sorted(public)
    assert sorted(p.name for p in (repo / "infra" / "modules").glob("*")) == sorted(public) if public else \
        not (repo / "infra" / "modules").exists()
    for cloud in public:
        text = (repo / "infra" / cloud / "main.tf").read_text()
        block = re.search(r"^  clusters = \{\n(.*?)^  \}$", text, re.MULTILINE | re.DOTALL).group(1)
        declared = re.findall(r'^    "([a-z0-9-]+)" = \{$', block, re.MULTILINE)
        assert sorted(declared) == sorted(n for n, c in clusters.items() if c == cloud), cloud
        # the services with a database get theirs on each workload cluster of this cloud, not on the hub
        with_database = [s["name"] for s in answers.get("services") or [] if s.get("database", "none") != "none"]
        databases = re.search(r"^  databases = \{\n(.*?)^  \}$", text, re.MULTILINE | re.DOTALL)
        workload = sorted(n for n, c in clusters.items() if c == cloud and n != "hub")
        if with_database and workload:
            assert sorted(re.findall(r'^    "([a-z0-9-]+)" = \{$', databases.group(1), re.MULTILINE)) == workload
            assert sorted(set(re.findall(r'^      "([a-z0-9-]+)"\s+= \{ engine', databases.group(1), re.MULTILINE))) == \
                sorted(with_database)
        else:
            assert databases is None, cloud
        tests = (repo / "infra" / cloud / "tests" / "mock.tftest.hcl").read_text()
        assert sorted(re.findall(r'output\.nodes\["([a-z0-9-]+)"\]\.count', tests)) == sorted(declared)
        # the mock Redis answers where the Dapr components were rendered to look for it, so the
        # test's assertion ties the module's output to what the services use
        dapr = {e["value"] for d in yaml.safe_load_all((repo / "platform/dapr" / cloud / "components.yaml").read_text())
                if d for e in d["spec"]["metadata"] if e["name"] == "redisHost"}
        redis_mock = re.search(r'target = module\.platform\.(?:alicloud_kvstore_instance|tencentcloud_redis_instance|'
                               r'huaweicloud_dcs_instance)\.\w+\n  values = \{([^}]*)\}', tests).group(1)
        host = re.search(r'(?:connection_domain|ip|domain_name) = "([^"]+)"', redis_mock).group(1)
        answer = answers["redis_addresses"][cloud]
        assert dapr == {answer} and answer.rsplit(":", 1)[0] == host, (dapr, host)
        assert f'output.redis_address == "{host}:6379"' in tests
    private = sorted(n for n, c in clusters.items() if c == "private")
    assert sorted(p.parent.name for p in (repo / "infra" / "private").glob("*/Clusterfile")) == private
    assert sorted(p.name for p in (repo / "infrastructure/controllers/velero").iterdir()
                  if p.is_dir() and p.name != "manifests") == sorted(clusters)
    assert (repo / "infrastructure/configs/etcd-backup").is_dir() == bool(private)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", VALID, ids=[Path(v).stem for v in VALID])
def test_every_infra_check_passes(fixture, rendered):
    repo = rendered(f"valid/{fixture}")
    result = infra.check(repo)
    assert not result.problems, "\n".join(result.problems)
    answers = _answers(repo)
    public = [c for c in answers["clouds"] if c != "private"]
    # fmt (when there is OpenTofu), then init/validate/test per root, tflint per root and module, one per Clusterfile
    expected = bool(public) + 3 * len(public) + 2 * len(public) + len(list((repo / "infra/private").glob("*/Clusterfile")))
    assert result.checks == expected


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


# Each broken input, and the check that must refuse it (a fragment of its message).
BROKEN = {
    # tofu validate: the alicloud provider's schema has no such argument
    "misspelt-argument": (("infra/modules/aliyun/main.tf", "  vswitch_name = \"${var.name}-${each.key}\"",
                           "  vswitch_nmae = \"${var.name}-${each.key}\""), "Unsupported argument"),
    # the provider's own list of node images (checked when the plan has the value: tofu test)
    "wrong-image-aliyun": (("infra/aliyun/main.tf", 'node_image         = "AliyunLinux3"',
                            'node_image         = "AnolisOS8"'), "expected image_type to be one of"),
    # tofu test: the module's list of the images TKE offers
    "wrong-image-tencent": (("infra/tencent/main.tf", 'node_image         = "tlinux3.1x86_64"',
                             'node_image         = "anolis8.6x86_64"'), "node_image must be"),
    "bad-cidr": (("infra/huawei/main.tf", 'vpc_cidr           = "10.30.0.0/16"',
                  'vpc_cidr           = "10.30.0.0/33"'), "vpc_cidr must be"),
    "too-few-nodes": (("infra/aliyun/main.tf", "nodes          = 3", "nodes          = 1"), "at least 2 nodes"),
    # a database account without its password: the module's precondition names it
    "database-password-missing": (("infra/aliyun/tests/mock.tftest.hcl",
                                   '    "aliyun-prod/order-service"    = "mock-only"\n', ""),
                                  "database_passwords has no password for aliyun-prod/order-service"),
    "database-shards": (("infra/huawei/main.tf", '"order-service" = { engine = "mysql", shards = 2 }',
                         '"order-service" = { engine = "mysql", shards = 65 }'), "its shards 1 to 64"),
    "not-formatted": (("infra/tencent/main.tf", "  rocketmq       = false", "  rocketmq = false"), "tofu fmt"),
    # tflint: a variable nothing uses
    "unused-variable": (("infra/modules/huawei/variables.tf", 'variable "vpc_cidr" {',
                         'variable "unused" {\n  type = string\n}\n\nvariable "vpc_cidr" {'), "terraform_unused_declarations"),
    # clusterfile-check: Sealer's types decoded strictly
    "clusterfile-typo": (("infra/private/private-prod/Clusterfile", "      roles: [master]", "      rolse: [master]"),
                         'unknown field "rolse"'),
    "clusterfile-bad-ip": (("infra/private/private-prod/Clusterfile", '"192.168.10.140"', '"192.168.10.340"'),
                           "invalid IP address"),
    "clusterfile-even-masters": (("infra/private/private-prod/Clusterfile", ', "192.168.10.142"]', "]"),
                                 "2 masters"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_infra_check_fails_on_a_broken_input(case, rendered_copy):
    (rel, old, new), message = BROKEN[case]
    repo = rendered_copy("valid/all-clouds-flux.yml")
    _edit(repo / rel, old, new)
    only = rel.split("/")[1] if rel.split("/")[1] in ("aliyun", "tencent", "huawei") else \
        rel.split("/")[2] if rel.startswith("infra/modules/") else "private"
    result = infra.check(repo, only=only)
    assert result.problems, f"{case}: every check passed"
    assert any(message in p for p in result.problems), f"{case}: {message!r} not in:\n" + "\n".join(result.problems)


def test_the_mirror_plugin_writes_containerd_hosts(rendered, tmp_path):
    """The Clusterfile's SHELL plugin, run against a fake root: one hosts.toml per registry,
    through the mirror's path, and containerd's config_path set."""
    repo = rendered("valid/private-argocd.yml")
    docs = list(yaml.safe_load_all((repo / "infra/private/private-prod/Clusterfile").read_text()))
    plugin = next(d for d in docs if d["kind"] == "Plugin")
    (tmp_path / "etc/containerd").mkdir(parents=True)
    config = tmp_path / "etc/containerd/config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n')
    subprocess.run(["bash", "-c", plugin["spec"]["data"]], check=True, env={**os.environ, "CONTAINERD_ROOT": str(tmp_path)})
    assert 'config_path = "/etc/containerd/certs.d"' in config.read_text()
    written = sorted(p.parent.name for p in (tmp_path / "etc/containerd/certs.d").glob("*/hosts.toml"))
    listed = re.search(r"for registry in ([^;]+);", plugin["spec"]["data"]).group(1).split()
    assert len(listed) >= 5 and written == sorted(listed)
    hosts = tomllib.loads((tmp_path / "etc/containerd/certs.d/quay.io/hosts.toml").read_text())
    assert hosts["server"] == "https://quay.io"
    assert hosts["host"] == {"https://harbor.corp.onprem.internal/v2/proxy/quay.io": {
        "capabilities": ["pull", "resolve"], "override_path": True}}


@pytest.mark.slow
def test_every_image_comes_from_a_mirrored_registry(rendered, schemas, charts):
    """The registries the Clusterfile's mirror plugin covers are every registry the private
    clusters pull from: every image of their pods, charts' output and operators' specs included."""
    from opc.images import INJECTED, image_references
    from opc.validate import validate_repo

    repo = rendered("valid/private-argocd.yml")
    mirror = _answers(repo)["registry_mirrors"]["private"]
    docs = list(yaml.safe_load_all((repo / "infra/private/hub/Clusterfile").read_text()))
    data = next(d for d in docs if d["kind"] == "Plugin")["spec"]["data"]
    mirrored = set(re.search(r"for registry in ([^;]+);", data).group(1).split())
    report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
    own = _answers(repo)["image_registry"].split("/")[0]
    registries = set()
    for _cluster, objects in report.cluster_objects().items():
        for _where, obj in objects:
            for _, image in image_references(obj):
                if image not in INJECTED:
                    registries.add(image.removeprefix(mirror + "/").split("/")[0])
    registries.discard(own)
    assert len(registries) >= 3, registries
    assert registries <= mirrored, f"not mirrored by containerd: {sorted(registries - mirrored)}"


# --- make bootstrap / make destroy with stand-ins -----------------------------------------------

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
  "tofu "*"output -json kubeconfigs"*) printf '{"%s": "apiVersion: v1\\\\nkind: Config\\\\n"}\\n' "$STUB_CLUSTER" ;;
  "tofu "*"output -json databases"*) printf '{"%s/order-service": {"write_url": "jdbc:mysql://p:3306/order_service_{shard}", "read_url": "jdbc:mysql://r:3306/order_service_{shard}", "username": "order_service"}}\\n' "$STUB_CLUSTER" ;;
  "tofu "*" apply "*|"tofu "*" destroy "*) echo "  TF_VAR_redis_password=${TF_VAR_redis_password:-unset}" >> "$STUB_LOG" ;;
  "opc "*) for a in "$@"; do case "$a" in *=/*) echo "  ${a%%=*}=$(cat "${a#*=}")" >> "$STUB_LOG" ;; esac; done ;;
  "kubectl "*"create token"*) echo stub-token ;;
  "kubectl "*"jsonpath={.clusters[0].cluster.server}"*) echo https://hub.example:6443 ;;
  "kubectl "*"certificate-authority-data"*) printf 'Y2EK' ;;
  "kubectl "*"--dry-run=client -o yaml"*) printf 'kind: Secret\\n' ;;
  "kubectl "*"label -f - --local"*) cat ;;
  "kubectl "*"apply -f -"*) cat > /dev/null ;;
  "kubectl config "*) real=$(PATH="$STUB_REAL_PATH" command -v kubectl); exec "$real" "$@" ;;
  "ssh "*) echo "server: https://apiserver.cluster.local:6443" ;;
esac
exit 0
"""


def _stubs(tmp_path: Path, cluster: str) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name in ("tofu", "kubectl", "helm", "flux", "vela", "sealer", "ssh", "opc"):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log), "STUB_CLUSTER": cluster,
           "STUB_REAL_PATH": os.environ["PATH"], "REDIS_PASSWORD": "r", "GIT_TOKEN": "t",
           "ALICLOUD_ACCESS_KEY": "a", "TENCENTCLOUD_SECRET_ID": "a", "HW_ACCESS_KEY": "a",
           "OPC_KEYS": str(tmp_path / "keys")}
    (tmp_path / "keys").mkdir()
    for suffix in (".agekey", ".sealing.key", ".sealing.crt"):
        (tmp_path / "keys" / f"{cluster}{suffix}").write_text("key\n")
        (tmp_path / "keys" / f"hub{suffix}").write_text("key\n")
    return env, log


def _bootstrap(repo: Path, env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], cwd=repo, env=env, input=stdin, capture_output=True, text=True,
                          check=False, timeout=120)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _index(calls: list[str], fragment: str) -> int:
    found = [i for i, c in enumerate(calls) if fragment in c]
    assert found, f"{fragment!r} never ran:\n" + "\n".join(calls)
    return found[0]


def test_bootstrap_flux_workload_cluster_in_order(rendered_copy, tmp_path):
    repo = rendered_copy("valid/all-clouds-flux.yml")
    env, log = _stubs(tmp_path, "aliyun-staging")
    (repo / ".kube").mkdir()
    (repo / ".kube/hub.yaml").write_text("stub\n")
    proc = _bootstrap(repo, env, "bootstrap", "CLUSTER=aliyun-staging")
    assert proc.returncode == 0, proc.stderr
    calls = _calls(log)
    order = ["tofu -chdir=infra/aliyun init", "tofu -chdir=infra/aliyun apply -input=false",
             "tofu -chdir=infra/aliyun output -json kubeconfigs", "get --raw /version",
             "-n flux-system create secret generic sops-age", "helm upgrade --install flux-operator",
             "apply -f clusters/aliyun-staging/flux-system/flux-instance.yaml", "wait fluxinstance/flux",
             "flux create secret git flux-system", "apply -k clusters/aliyun-staging/flux-system",
             "--kubeconfig .kube/hub.yaml -n open-cluster-management create token agent-registration-bootstrap",
             "-n open-cluster-management-agent create secret generic bootstrap-hub-kubeconfig",
             "vela cluster join .kube/aliyun-staging.yaml --name aliyun-staging"]
    positions = [_index(calls, step) for step in order]
    assert positions == sorted(positions), "\n".join(calls)
    assert "--labels everywhere-inc.example/env=staging,everywhere-inc.example/cloud=aliyun" in calls[positions[-1]]
    # the service's database: passwords made once for every aliyun workload cluster, kept with the
    # keys (owner only), given to OpenTofu, and the Secret made from its outputs for this cluster
    passwords_file = tmp_path / "keys" / "aliyun-databases.tfvars.json"
    assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
    passwords = json.loads(passwords_file.read_text())["database_passwords"]
    assert sorted(passwords) == sorted(f"aliyun-{env}/{key}" for env in ("dev", "staging", "prod")
                                       for key in ("order-service", "mysql:admin"))
    assert all(len(p) == 24 and re.search("[A-Z]", p) and re.search("[a-z]", p) and re.search("[0-9]", p)
               and re.search("[-_=+]", p) and re.fullmatch("[A-Za-z0-9_=+-]+", p) for p in passwords.values())
    assert len(set(passwords.values())) == len(passwords)
    apply = calls[positions[1]]
    assert f"-var-file={passwords_file}" in apply
    # the Redis password reaches OpenTofu through its environment, and is printed nowhere
    assert calls[positions[1] + 1] == "  TF_VAR_redis_password=r"
    assert "redis_password" not in apply and "redis_password" not in proc.stderr
    secret = _index(calls, "opc secrets set everywhere-inc/order-service-database --cluster aliyun-staging")
    assert positions[2] < secret < positions[3]
    assert calls[secret + 1:secret + 5] == [
        "  write-url=jdbc:mysql://p:3306/order_service_{shard}", "  read-url=jdbc:mysql://r:3306/order_service_{shard}",
        "  username=order_service", f"  password={passwords['aliyun-staging/order-service']}"]
    # a second run keeps the passwords
    log.write_text("")
    assert _bootstrap(repo, env, "bootstrap", "CLUSTER=aliyun-staging").returncode == 0
    assert json.loads(passwords_file.read_text())["database_passwords"] == passwords
    # every step is printed before it runs, and the kubeconfig is the cluster's, not readable by others
    assert "+ tofu -chdir=infra/aliyun apply" in proc.stderr and "==> 4/4 aliyun-staging" in proc.stderr
    assert stat.S_IMODE((repo / ".kube/aliyun-staging.yaml").stat().st_mode) == 0o600


def test_bootstrap_argocd_private_hub(rendered_copy, tmp_path):
    repo = rendered_copy("valid/private-argocd.yml")
    env, log = _stubs(tmp_path, "hub")
    proc = _bootstrap(repo, env, "bootstrap", "CLUSTER=hub")
    assert proc.returncode == 0, proc.stderr
    calls = _calls(log)
    order = ["sealer apply -f infra/private/hub/Clusterfile", "ssh root@10.20.30.160 cat /etc/kubernetes/admin.conf",
             "-n sealed-secrets create secret tls sealed-secrets-key", "helm upgrade --install argo-cd argo-cd",
             "label -f - --local -o yaml argocd.argoproj.io/secret-type=repository", "apply -k clusters/hub"]
    positions = [_index(calls, step) for step in order]
    assert positions == sorted(positions), "\n".join(calls)
    assert not [c for c in calls if c.startswith(("tofu", "vela"))]
    # Sealer's API server name is replaced by the first master's address
    assert "https://10.20.30.160:6443" in (repo / ".kube/hub.yaml").read_text()


def test_bootstrap_refuses_without_what_it_needs(rendered_copy, tmp_path):
    repo = rendered_copy("valid/all-clouds-flux.yml")
    env, log = _stubs(tmp_path, "tencent-prod")
    del env["REDIS_PASSWORD"]
    proc = _bootstrap(repo, env, "bootstrap", "CLUSTER=tencent-prod")
    assert proc.returncode != 0 and "REDIS_PASSWORD is not set" in proc.stderr
    assert _calls(log) == []
    proc = _bootstrap(repo, env, "bootstrap", "CLUSTER=nowhere")
    assert proc.returncode != 0 and "usage: scripts/bootstrap" in proc.stderr and "tencent-prod" in proc.stderr
    # a workload cluster needs the hub's kubeconfig for its join: it stops there, before joining
    env["REDIS_PASSWORD"] = "r"
    proc = _bootstrap(repo, env, "bootstrap", "CLUSTER=tencent-prod")
    assert proc.returncode != 0 and "bootstrap the hub first" in proc.stderr
    assert not [c for c in _calls(log) if "create token" in c]


def test_destroy_asks_first(rendered_copy, tmp_path):
    repo = rendered_copy("valid/all-clouds-flux.yml")
    env, log = _stubs(tmp_path, "huawei-dev")
    proc = _bootstrap(repo, env, "destroy", "CLUSTER=huawei-dev", stdin="no\n")
    assert proc.returncode != 0 and "Not destroyed" in proc.stderr
    assert _calls(log) == []
    proc = _bootstrap(repo, env, "destroy", "CLUSTER=huawei-dev", stdin="huawei-dev\n")
    assert proc.returncode == 0, proc.stderr
    destroy = [c for c in _calls(log) if " destroy " in c]
    assert destroy == ['tofu -chdir=infra/huawei destroy -input=false '
                       '-target=module.platform.huaweicloud_cce_cluster.this["huawei-dev"] '
                       '-target=module.platform.huaweicloud_vpc_eip.api["huawei-dev"]']
    assert "  TF_VAR_redis_password=r" in _calls(log)


def test_bootstrap_script_is_valid_bash(rendered):
    for fixture in VALID:
        script = rendered(f"valid/{fixture}") / "scripts/bootstrap"
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{fixture}: {proc.stderr}"


def test_etcd_snapshot_script_tries_each_master(rendered, tmp_path):
    """The CronJob's script, run by bash with a stand-in etcdctl that only the second master
    answers: it saves one timestamped snapshot from that master, with etcd's client identity."""
    repo = rendered("valid/private-argocd.yml")
    docs = list(yaml.safe_load_all((repo / "infrastructure/configs/etcd-backup/snapshots.yaml").read_text()))
    cronjob = next(d for d in docs if d["kind"] == "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][-1]
    pki, snapshots, bin_dir = tmp_path / "pki", tmp_path / "snapshots", tmp_path / "bin"
    for d in (pki, snapshots, bin_dir):
        d.mkdir()
    (pki / "endpoints").write_text("https://10.0.0.1:2379 https://10.0.0.2:2379 https://10.0.0.3:2379")
    etcdctl = bin_dir / "etcdctl"
    etcdctl.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n'
                       'case "$*" in *10.0.0.2*) : > "${@: -1}";; *) exit 1;; esac\n')
    etcdctl.chmod(0o755)
    calls = tmp_path / "calls"
    script = script.replace("/pki/", f"{pki}/").replace("/snapshots/", f"{snapshots}/")
    proc = subprocess.run(["bash", "-c", script], env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                          "CALLS": str(calls), "TZ": "UTC"}, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    tried = calls.read_text().splitlines()
    assert [re.search(r"--endpoints=(\S+)", t).group(1) for t in tried] == ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
    assert f"--cacert={pki}/ca.crt --cert={pki}/tls.crt --key={pki}/tls.key snapshot save" in tried[1]
    saved = [p.name for p in snapshots.iterdir()]
    assert len(saved) == 1 and re.fullmatch(r"etcd-\d{8}T\d{6}Z\.db", saved[0]), saved
    # no master answers: the job fails (and Kubernetes retries it)
    (pki / "endpoints").write_text("https://10.0.0.9:2379")
    proc = subprocess.run(["bash", "-c", script], env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                          "CALLS": str(calls)}, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
