"""Secrets in Git (opc secrets, src/opc/secrets.py) with the real sops and age: keys per cluster,
encryption into the layer that creates the namespace, decryption the way Flux does it, rotation,
and the rule that every Secret a cluster needs is rendered, encrypted or declared."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_rules import load, report_of

from opc.cli import main
from opc.kustomize import build_one
from opc.secrets import SecretsError, check_secrets, decrypt, references
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS

SLUG = "three-services-co"


def opc(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def flux_build(repo: Path, cluster: str, layer: str, key: Path, work: Path) -> list[dict]:
    """What Flux's kustomize-controller applies: every SOPS file of the layer decrypted with the
    cluster's key, then the layer built with kustomize."""
    copy = work / "checkout"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    for path in (copy / "clusters" / cluster / layer).rglob("*.sops.yaml"):
        path.write_text(decrypt(path, key))
    build = build_one(copy / "clusters" / cluster / layer)
    assert build.ok, build.error
    return build.objects


@pytest.mark.slow
def test_secrets_round_trip(rendered_copy, tmp_path: Path, schemas, charts):
    repo = rendered_copy("valid/three-services.yml")
    keys = tmp_path / "keys"
    out = opc("secrets", "init", "--dir", str(repo), "--keys", str(keys))
    assert "kubectl --context tencent-prod -n flux-system create secret generic sops-age" in out
    assert sorted(p.name for p in keys.glob("*.agekey")) == [
        "company.agekey", "hub.agekey", "tencent-prod.agekey", "tencent-staging.agekey"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in [*keys.glob("*.agekey"), *keys.glob("telemetry/*.key")])
    rules = yaml.safe_load((repo / ".sops.yaml").read_text())["creation_rules"]
    assert len(rules) == 3 and all(len(r["age"].split(",")) == 2 for r in rules)
    assert "AGE-SECRET-KEY" not in (repo / ".sops.yaml").read_text()

    out = opc("secrets", "set", f"{SLUG}/redis", "--cluster", "tencent-prod", "--from-literal", "password=s3cret-pw",
              "--dir", str(repo))
    path = repo / "clusters/tencent-prod/configs/secrets" / f"{SLUG}.redis.sops.yaml"
    assert path.is_file() and str(path.relative_to(repo)) in out
    text = path.read_text()
    assert "s3cret-pw" not in text and "ENC[AES256_GCM" in text and "name: redis" in text  # reviewable metadata
    assert "secrets" in yaml.safe_load((path.parent.parent / "kustomization.yaml").read_text())["resources"]
    guard = subprocess.run([sys.executable, str(repo / "scripts/check-secrets.py"), str(path)],
                           capture_output=True, text=True)
    assert guard.returncode == 0, guard.stdout

    # The cluster's key opens it, as Flux does before building the layer; no other cluster's key does.
    objects = flux_build(repo, "tencent-prod", "configs", keys / "tencent-prod.agekey", tmp_path)
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["metadata"] == {"name": "redis", "namespace": SLUG} and secret["stringData"] == {"password": "s3cret-pw"}
    for other in ("tencent-staging", "hub"):
        with pytest.raises(SecretsError, match="cannot decrypt"):
            decrypt(path, keys / f"{other}.agekey")
    assert "s3cret-pw" in decrypt(path, keys / "company.agekey")

    # opc validate (yamllint included) takes the encrypted Secrets as they are, and the list knows
    # where each one stands.
    report = validate_repo(repo, schemas, lint=True, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings][:10]
    result = CliRunner().invoke(main, ["secrets", "list", str(repo), "--offline",
                                       *[a for d in charts.dirs for a in ("--chart-dir", str(d))]])
    assert result.exit_code == 0, result.output
    rows = {tuple(line.split()[:2]): line.split()[2] for line in result.output.splitlines()
            if line.split() and line.split()[0] in ("hub", "tencent-prod", "tencent-staging")}
    assert rows[("tencent-prod", f"{SLUG}/redis")] == "encrypted"
    assert rows[("tencent-staging", f"{SLUG}/redis")] == "not"  # "not set"
    assert rows[("hub", "flux-system/sops-age")] == "out-of-band"
    assert rows[("hub", "monitoring/prometheus-stack-admission")] == "runtime"
    assert "missing" not in rows.values()
    strict = CliRunner().invoke(main, ["secrets", "list", str(repo), "--offline", "--exit-code",
                                       *[a for d in charts.dirs for a in ("--chart-dir", str(d))]])
    assert strict.exit_code == 1  # some are not set yet

    # Rotation: a new key for the cluster opens the re-encrypted file, the old one no longer does.
    old = (keys / "tencent-prod.agekey").read_text()
    opc("secrets", "rotate", "tencent-prod", "--dir", str(repo), "--keys", str(keys))
    kept = list(keys.glob("tencent-prod.agekey.*.old"))
    assert (keys / "tencent-prod.agekey").read_text() != old and [k.read_text() for k in kept] == [old]
    assert "s3cret-pw" in decrypt(path, keys / "tencent-prod.agekey")
    with pytest.raises(SecretsError, match="cannot decrypt"):
        decrypt(path, kept[0])


@pytest.mark.slow
def test_sealed_secrets_round_trip_on_argo_cd(rendered_copy, tmp_path: Path, schemas, charts):
    """Argo CD renders manifests on the hub and cannot decrypt SOPS: each cluster's own Sealed
    Secrets controller opens what `opc secrets set` sealed to that cluster's key, and only that."""
    repo = rendered_copy("valid/tencent-dev-argocd.yml")
    slug, cluster = "shenzhen-apps", "tencent-dev"
    keys = tmp_path / "keys"
    out = opc("secrets", "init", "--dir", str(repo), "--keys", str(keys))
    assert f"kubectl --context {cluster} -n sealed-secrets create secret tls sealed-secrets-key" in out
    assert "sealedsecrets.bitnami.com/sealed-secrets-key=active" in out
    assert sorted(p.name for p in keys.glob("*.sealing.key")) == ["hub.sealing.key", f"{cluster}.sealing.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.glob("*.sealing.key"))
    assert (repo / "clusters" / cluster / "sealing.crt").read_text() == (keys / f"{cluster}.sealing.crt").read_text()
    assert not (repo / ".sops.yaml").exists()
    assert not [p for p in repo.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]

    out = opc("secrets", "set", f"{slug}/redis", "--cluster", cluster, "--from-literal", "password=s3cret-pw",
              "--dir", str(repo))
    path = repo / "clusters" / cluster / "secrets" / slug / f"{slug}.redis.sealed.yaml"
    assert path.is_file() and str(path.relative_to(repo)) in out
    assert "s3cret-pw" not in path.read_text() and "czNjcmV0LXB3" not in path.read_text()  # nor its base64
    guard = subprocess.run([sys.executable, str(repo / "scripts/check-secrets.py"), *map(str, repo.rglob("*.sealed.yaml"))],
                           capture_output=True, text=True)
    assert guard.returncode == 0, guard.stdout

    # Argo CD delivers each namespace's SealedSecrets with an Application of their own, right
    # after the Sealed Secrets controller and before every Application that could read them.
    for name in (cluster, "hub"):
        root = build_one(repo / "clusters" / name)
        assert root.ok, root.error
        waves = {o["metadata"]["name"]: int((o["metadata"].get("annotations") or {}).get(
                 "argocd.argoproj.io/sync-wave", 0)) for o in root.objects if o["kind"] == "Application"}
        secrets_apps = {n: w for n, w in waves.items() if "-secrets-" in n}
        assert secrets_apps  # the telemetry CA at least, on every cluster
        controller = waves[f"{cluster}-sealed-secrets" if name == cluster else "sealed-secrets"]
        others = [w for n, w in waves.items() if n not in secrets_apps and not n.endswith(("sealed-secrets", "storage"))]
        assert all(controller < w < min(others) for w in secrets_apps.values()), waves
    application = next(o for o in build_one(repo / "clusters" / cluster).objects
                       if o["metadata"]["name"] == f"{cluster}-secrets-{slug}")
    assert application["spec"]["source"]["path"] == f"clusters/{cluster}/secrets/{slug}"
    assert application["spec"]["destination"] == {"name": cluster, "namespace": slug}
    assert "CreateNamespace=true" in application["spec"]["syncPolicy"]["syncOptions"]
    refused = CliRunner().invoke(main, ["secrets", "set", "nowhere/redis", "--cluster", cluster, "--from-literal",
                                        "password=x", "--dir", str(repo)])
    assert refused.exit_code == 1 and "receives no namespace nowhere" in refused.output
    assert not (repo / "clusters" / cluster / "secrets" / "nowhere").exists()

    # What that Application delivers, as kustomize builds it: a SealedSecret, which the cluster's
    # key opens into the Secret (as its controller does) and the hub's key does not.
    build = build_one(repo / "clusters" / cluster / "secrets" / slug)
    assert build.ok, build.error
    sealed = [o for o in build.objects if o["kind"] == "SealedSecret" and o["metadata"]["name"] == "redis"]
    assert len(sealed) == 1 and not [o for o in build.objects if o["kind"] == "Secret"]
    built = tmp_path / "built.sealed.yaml"
    built.write_text(yaml.safe_dump(sealed[0]))
    secret = yaml.safe_load(decrypt(built, keys / f"{cluster}.sealing.key"))
    assert secret["metadata"]["name"] == "redis" and secret["metadata"]["namespace"] == slug
    assert base64.b64decode(secret["data"]["password"]).decode() == "s3cret-pw"
    with pytest.raises(SecretsError, match="cannot decrypt"):
        decrypt(built, keys / "hub.sealing.key")

    # opc validate takes it (the sealed-secrets chart rendered and its pods judged), and the list
    # knows where each Secret stands.
    report = validate_repo(repo, schemas, lint=True, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings][:10]
    assert any(r.release.name == "sealed-secrets" and r.ok and r.objects for r in report.releases)
    result = CliRunner().invoke(main, ["secrets", "list", str(repo), "--offline",
                                       *[a for d in charts.dirs for a in ("--chart-dir", str(d))]])
    assert result.exit_code == 0, result.output
    rows = {tuple(line.split()[:2]): line.split()[2] for line in result.output.splitlines()
            if line.split() and line.split()[0] in ("hub", cluster)}
    assert rows[(cluster, f"{slug}/redis")] == "encrypted"
    assert rows[(cluster, "cert-manager/telemetry-ca")] == "encrypted"

    # Rotation: the new key opens the file sealed again, the old one no longer does.
    out = opc("secrets", "rotate", cluster, "--dir", str(repo), "--keys", str(keys))
    assert str(path.relative_to(repo)) in out and "rollout restart deployment sealed-secrets-controller" in out
    old = next(keys.glob(f"{cluster}.sealing.key.*.old"))
    assert "s3cret-pw" in base64.b64decode(yaml.safe_load(decrypt(path, keys / f"{cluster}.sealing.key"))["data"]
                                           ["password"]).decode()
    with pytest.raises(SecretsError, match="cannot decrypt"):
        decrypt(path, old)
    assert (repo / "clusters" / cluster / "sealing.crt").read_text() == (keys / f"{cluster}.sealing.crt").read_text()


def test_secrets_refuse_bad_input(rendered_copy, tmp_path: Path):
    repo = rendered_copy("valid/three-services.yml")
    runner = CliRunner()
    inside = runner.invoke(main, ["secrets", "init", "--dir", str(repo), "--keys", str(repo / "keys")])
    assert inside.exit_code == 1 and "inside the repository" in inside.output and not (repo / "keys").exists()
    before = runner.invoke(main, ["secrets", "set", f"{SLUG}/redis", "--cluster", "tencent-prod",
                                  "--from-literal", "password=x", "--dir", str(repo)])
    assert before.exit_code == 1 and "run `opc secrets init` first" in before.output
    opc("secrets", "init", "--dir", str(repo), "--keys", str(tmp_path / "keys"))
    made = sorted((repo / "clusters").rglob("*.sops.yaml"))  # the telemetry CAs and the gateway's trust
    assert len(made) == 4
    for args, message in [
        ([f"{SLUG}/redis", "--cluster", "aliyun-prod", "--from-literal", "password=x"], "no cluster 'aliyun-prod'"),
        (["redis", "--cluster", "tencent-prod", "--from-literal", "password=x"], "expected NAMESPACE/NAME"),
        ([f"{SLUG}/redis", "--cluster", "tencent-prod"], "give the Secret's keys"),
        ([f"{SLUG}/redis", "--cluster", "tencent-prod", "--from-literal", "password"], "expected KEY=VALUE"),
        (["nowhere/redis", "--cluster", "tencent-prod", "--from-literal", "password=x"],
         "no layer of cluster tencent-prod creates namespace nowhere"),
    ]:
        result = runner.invoke(main, ["secrets", "set", *args, "--dir", str(repo)])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
    assert sorted((repo / "clusters").rglob("*.sops.yaml")) == made


DEPLOYMENT = load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: demo}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: ghcr.io/acme/api:1.0.0
          env:
            - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
            - {name: OPTIONAL, valueFrom: {secretKeyRef: {name: extra, key: x, optional: true}}}
""")


def test_missing_secret_is_reported_and_a_rendered_one_is_not():
    findings = check_secrets(report_of(DEPLOYMENT))
    assert [f"{f.subject}: {f.message}" for f in findings] == [
        "Secret demo/db: named by Deployment demo/api (env DB_PASSWORD) in cluster c1, but neither rendered, "
        "encrypted in the repository nor declared in a secrets.yaml"]
    with_secret = DEPLOYMENT + load("apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: demo}\n"
                                    "stringData: {password: 'ENC[AES256_GCM,data:x]'}\nsops: {mac: y}\n")
    assert check_secrets(report_of(with_secret)) == []
    # the optional one is named, not needed
    assert [(r.name, r.by.endswith("(optional)")) for r in references(report_of(DEPLOYMENT))] == [
        ("db", False), ("extra", True)]


def _leaf(work: Path, ca: str, keys: Path, uri: str) -> tuple[Path, Path]:
    """A client certificate as cert-manager's CA issuer makes it (ECDSA, the URI, client auth)."""
    key, csr, cert, ext = (work / f"{ca}-{n}" for n in ("leaf.key", "leaf.csr", "leaf.crt", "leaf.ext"))
    ext.write_text(f"subjectAltName=URI:{uri}\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", "/CN=client"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(keys / "telemetry" / f"{ca}.crt"),
                    "-CAkey", str(keys / "telemetry" / f"{ca}.key"), "-CAcreateserial", "-days", "1",
                    "-extfile", str(ext), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.slow
def test_telemetry_cas_confine_each_cluster(rendered_copy, tmp_path: Path):
    """Each cluster's telemetry CA (made by `opc secrets init`) certifies its own identity and no
    other's, and the bundle the hub's gateway trusts admits a client of every cluster in a real
    TLS handshake and nobody without a certificate (openssl, TLS 1.2 and 1.3)."""
    import socket
    import time

    repo = rendered_copy("valid/three-services.yml")
    keys = tmp_path / "keys"
    opc("secrets", "init", "--dir", str(repo), "--keys", str(keys))
    domain = yaml.safe_load((repo / ".copier-answers.yml").read_text())["base_domain"]
    bundle = keys / "telemetry" / "bundle.crt"
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 3
    for cluster in ("hub", "tencent-prod"):  # delivered encrypted to that cluster alone
        path = next((repo / "clusters" / cluster).rglob("cert-manager.telemetry-ca.sops.yaml"))
        assert "PRIVATE KEY" not in path.read_text() and "BEGIN CERTIFICATE" not in path.read_text()
        assert "BEGIN EC PRIVATE KEY" in decrypt(path, keys / f"{cluster}.agekey") or \
            "BEGIN PRIVATE KEY" in decrypt(path, keys / f"{cluster}.agekey")
    trust = next((repo / "clusters/hub").rglob("istio-ingress.observability-tls-cacert.sops.yaml"))
    assert decrypt(trust, keys / "hub.agekey").count("BEGIN CERTIFICATE") == 3

    own, own_key = _leaf(tmp_path, "tencent-prod", keys, f"spiffe://tencent-prod.telemetry.{domain}/telemetry")
    forged, forged_key = _leaf(tmp_path, "tencent-staging", keys, f"spiffe://tencent-prod.telemetry.{domain}/telemetry")
    verify = lambda cert: subprocess.run(["openssl", "verify", "-CAfile", str(bundle), str(cert)],  # noqa: E731
                                         capture_output=True, text=True)
    assert verify(own).returncode == 0, verify(own).stderr
    refused = verify(forged)
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr

    server_key, server_cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(server_key), "-out", str(server_cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for version in ("-tls1_2", "-tls1_3"):
        server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", version, "-cert",
                                   str(server_cert), "-key", str(server_key), "-Verify", "1", "-CAfile", str(bundle),
                                   "-verify_return_error", "-www"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)

            def connect(*client: str, version: str = version) -> subprocess.CompletedProcess[str]:
                return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version,
                                       "-CAfile", str(server_cert), "-ign_eof", *client],
                                      input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True, timeout=20)

            with_cert = connect("-cert", str(own), "-key", str(own_key))
            assert "HTTP/1.0 200 ok" in with_cert.stdout, with_cert.stdout + with_cert.stderr  # it answered
            without = connect()
            assert "HTTP/1.0 200" not in without.stdout, without.stdout
            impostor = connect("-cert", str(forged), "-key", str(forged_key))  # another cluster's CA
            assert "HTTP/1.0 200" not in impostor.stdout, impostor.stdout
        finally:
            server.terminate()
            server.wait(timeout=10)
