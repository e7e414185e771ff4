"""Every Secret the clusters need, where each comes from, and SOPS-encrypted Secrets in Git.

A cluster needs a Secret when something it receives names one: a pod (environment, volumes,
image pull secrets), a Dapr component (secretKeyRef), an Istio Gateway (credentialName), an
Elasticsearch resource (file realm and roles), a Prometheus remote write or a Flux source. Each
is then one of:

- rendered: the cluster receives the Secret itself (a chart makes it, or it is encrypted in the
  repository to that cluster alone, ``clusters/<cluster>/<layer>/secrets/<namespace>.<name>.*``:
  on Flux a SOPS file (``.sops.yaml``) that Flux's kustomize-controller decrypts with the
  cluster's age key; on Argo CD a SealedSecret (``.sealed.yaml``) that the cluster's Sealed
  Secrets controller opens with the cluster's sealing key, so Argo CD itself, which renders
  manifests on the hub, never holds a plaintext Secret or a key);
- declared: a ``secrets.yaml`` in a component's folder says who provides it: ``sops`` (the
  company sets it with `opc secrets set`), ``runtime`` (a controller of the platform creates it
  when it runs) or ``out-of-band`` (it cannot live in Git, e.g. the age key itself);
- missing: neither, which `opc validate` reports.

Keys: `opc secrets init` keeps the private keys outside the repository (``--keys`` directory).
Flux: one age key per cluster plus the company's own, the public ones in ``.sops.yaml``; a
cluster's files are encrypted to that cluster's key and the company's. Argo CD: one RSA sealing
key per cluster (made with openssl, as Sealed Secrets' "bring your own certificate" expects),
its certificate in ``clusters/<cluster>/sealing.crt``. Either way another cluster's key cannot
open a cluster's files.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .pods import pod_templates
from .validate import Finding, Report, object_id, repository_entries

DECLARATIONS = "secrets.yaml"
SOPS_CONFIG = ".sops.yaml"
PROVIDERS = ("sops", "runtime", "out-of-band")
ENCRYPTED_SUFFIX = ".sops.yaml"
SEALED_SUFFIX = ".sealed.yaml"
SEALING_CERT = "sealing.crt"  # clusters/<cluster>/sealing.crt: the public half of its sealing key
SEALING_NAMESPACE = "sealed-secrets"
SEALING_SECRET = "sealed-secrets-key"  # noqa: S105 - the name of the Secret holding a cluster's sealing key
SEALING_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
KEY_SECRET = "sops-age"  # noqa: S105 - the name of the Secret in flux-system holding a cluster's age key
COMPANY = "company"
CERT_MANAGER_NAMESPACE = "cert-manager"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class Reference:
    cluster: str
    namespace: str
    name: str
    by: str  # what names it
    where: str


@dataclass
class Declaration:
    name: str  # a glob over Secret names
    namespace: str
    provided: str  # sops | runtime | out-of-band
    clusters: str  # all | hub | workload | a glob over cluster names
    keys: list[str] = field(default_factory=list)
    help: str = ""
    where: str = ""

    def covers(self, cluster: str, role: str, namespace: str, name: str) -> bool:
        if self.clusters in ("hub", "workload"):
            if self.clusters != role:
                return False
        elif self.clusters != "all" and not fnmatch.fnmatchcase(cluster, self.clusters):
            return False
        return self.namespace == namespace and fnmatch.fnmatchcase(name, self.name)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


OPTIONAL = " (optional)"  # the end of a reference's "by" when the pod starts without the Secret


def _pod_references(obj: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(namespace, Secret name, what names it) for every Secret the pods of ``obj`` name."""
    for pod in pod_templates(obj):
        label = pod.label
        spec = pod.spec

        def by(what: str, ref: dict[str, Any], label: str = label) -> str:
            return f"{label} ({what})" + (OPTIONAL if ref.get("optional") else "")

        for ref in spec.get("imagePullSecrets") or []:
            if ref.get("name"):
                yield pod.namespace, str(ref["name"]), f"{label} (image pull)"
        for volume in spec.get("volumes") or []:
            secret = volume.get("secret") or {}
            if secret.get("secretName"):
                yield pod.namespace, str(secret["secretName"]), by(f"volume {volume.get('name')}", secret)
            for source in (volume.get("projected") or {}).get("sources") or []:
                if (source.get("secret") or {}).get("name"):
                    yield pod.namespace, str(source["secret"]["name"]), by(f"volume {volume.get('name')}",
                                                                           source["secret"])
        for _, container in pod.containers():
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name"):
                    yield pod.namespace, str(ref["name"]), by(f"env {env.get('name')}", ref)
            for env_from in container.get("envFrom") or []:
                ref = env_from.get("secretRef") or {}
                if ref.get("name"):
                    yield pod.namespace, str(ref["name"]), by("envFrom", ref)


def _object_references(obj: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    kind, api = obj.get("kind"), str(obj.get("apiVersion", ""))
    namespace, spec = str(_meta(obj).get("namespace") or "default"), obj.get("spec") or {}
    label = object_id(obj)
    yield from _pod_references(obj)
    if kind == "Component" and api.startswith("dapr.io/"):
        if not (obj.get("auth") or {}).get("secretStore"):
            for entry in spec.get("metadata") or []:
                ref = entry.get("secretKeyRef") or {}
                if ref.get("name"):
                    yield namespace, str(ref["name"]), f"{label} (metadata {entry.get('name')})"
    elif kind == "Gateway" and api.startswith("networking.istio.io/"):
        for server in spec.get("servers") or []:
            tls = server.get("tls") or {}
            if tls.get("credentialName"):
                port = (server.get("port") or {}).get("name")
                yield namespace, str(tls["credentialName"]), f"{label} (server {port})"
                if tls.get("mode") == "MUTUAL":
                    yield namespace, f"{tls['credentialName']}-cacert", f"{label} (client CA)"
    elif kind == "Elasticsearch" and api.startswith("elasticsearch.k8s.elastic.co/"):
        auth = spec.get("auth") or {}
        for entry in (auth.get("fileRealm") or []) + (auth.get("roles") or []):
            if entry.get("secretName"):
                yield namespace, str(entry["secretName"]), f"{label} (auth)"
    elif kind in ("GitRepository", "HelmRepository", "OCIRepository") and api.startswith("source.toolkit.fluxcd.io/"):
        if (spec.get("secretRef") or {}).get("name"):
            yield namespace, str(spec["secretRef"]["name"]), f"{label} (credentials)"
    elif kind == "Prometheus" and api.startswith("monitoring.coreos.com/"):
        for index, remote in enumerate(spec.get("remoteWrite") or []):
            tls = remote.get("tlsConfig") or {}
            refs = ((tls.get("cert") or {}).get("secret"), tls.get("keySecret"), (tls.get("ca") or {}).get("secret"))
            for ref in refs:
                if isinstance(ref, dict) and ref.get("name"):
                    yield namespace, str(ref["name"]), f"{label} (remoteWrite {index} TLS)"
    elif kind == "Role" and api.startswith("rbac.authorization.k8s.io/"):
        # a Role that may get Secrets by name: those Secrets are meant to exist
        for rule in obj.get("rules") or []:
            if "secrets" in (rule.get("resources") or []) and "get" in (rule.get("verbs") or []):
                for name in rule.get("resourceNames") or []:
                    yield namespace, str(name), f"{label} (get)"
    elif kind == "ClusterIssuer" and api.startswith("cert-manager.io/"):
        # a ClusterIssuer's Secrets live in cert-manager's cluster resource namespace: its own
        if (spec.get("ca") or {}).get("secretName"):
            yield CERT_MANAGER_NAMESPACE, str(spec["ca"]["secretName"]), f"{label} (CA)"
    elif kind == "Issuer" and api.startswith("cert-manager.io/"):
        if (spec.get("ca") or {}).get("secretName"):
            yield namespace, str(spec["ca"]["secretName"]), f"{label} (CA)"
    elif kind == "Kustomization" and api.startswith("kustomize.toolkit.fluxcd.io/"):
        ref = ((spec.get("decryption") or {}).get("secretRef") or {}).get("name")
        if ref:
            yield namespace, str(ref), f"{label} (decryption key)"


def references(report: Report) -> list[Reference]:
    """Every Secret some object of some cluster names (Argo CD clusters: what they sync)."""
    from .policy import _synced_objects

    synced = _synced_objects(report)
    out: dict[tuple[str, str, str], Reference] = {}
    for cluster, built in sorted(report.cluster_objects().items()):
        known = {id(o) for _, o in built}
        objects = built + [(w, o) for w, o in synced.get(cluster, []) if id(o) not in known]
        for where, obj in objects:
            for namespace, name, by in _object_references(obj):
                out.setdefault((cluster, namespace, name), Reference(cluster, namespace, name, by, where))
    return sorted(out.values(), key=lambda r: (r.cluster, r.namespace, r.name))


def rendered(report: Report) -> dict[str, dict[tuple[str, str], str]]:
    """Per cluster, the Secrets it receives (namespace, name) -> "rendered", or "issued" for the
    Secret of a cert-manager Certificate."""
    from .policy import _synced_objects

    synced = _synced_objects(report)
    out: dict[str, dict[tuple[str, str], str]] = {}
    for cluster, built in report.cluster_objects().items():
        for _, obj in built + synced.get(cluster, []):
            namespace = str(_meta(obj).get("namespace") or "default")
            if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
                out.setdefault(cluster, {})[(namespace, str(_meta(obj).get("name")))] = "rendered"
            elif obj.get("kind") == "Certificate" and str(obj.get("apiVersion", "")).startswith("cert-manager.io/"):
                secret = str((obj.get("spec") or {}).get("secretName") or "")
                if secret:
                    out.setdefault(cluster, {})[(namespace, secret)] = f"issued (Certificate {namespace}/" \
                                                                        f"{_meta(obj).get('name')})"
    return out


def load_declarations(root: Path) -> tuple[list[Declaration], list[Finding]]:
    found: list[Declaration] = []
    entries, problems = repository_entries(root, DECLARATIONS, "secrets")
    for rel, index, entry in entries:
        if (not isinstance(entry, dict) or not {"name", "namespace", "provided", "help"} <= set(entry)
                or entry["provided"] not in PROVIDERS or not str(entry["help"]).strip()):
            problems.append(Finding("secrets", rel, f"entry {index}", "a declaration needs name, namespace, help "
                                    f"and provided ({' | '.join(PROVIDERS)})"))
            continue
        found.append(Declaration(str(entry["name"]), str(entry["namespace"]), str(entry["provided"]),
                                 str(entry.get("clusters", "all")), [str(k) for k in entry.get("keys") or []],
                                 " ".join(str(entry["help"]).split()), rel))
    return found, problems


def cluster_roles(report: Report) -> dict[str, str]:
    """hub or workload, per cluster (from the cluster's role label in clusters/<name>)."""
    roles: dict[str, str] = {}
    for cluster in report.cluster_units():
        roles[cluster] = "hub" if cluster == "hub" else "workload"
    return roles


def encrypted_files(root: Path) -> dict[tuple[str, str, str], Path]:
    """(cluster, namespace, name) -> the encrypted file of that Secret in the repository (SOPS or
    SealedSecret)."""
    out = {}
    for pattern in (f"*/*/secrets/*{ENCRYPTED_SUFFIX}", f"*/secrets/*/*{SEALED_SUFFIX}"):
        suffix = pattern.rpartition("*")[2]
        for path in sorted((root / "clusters").glob(pattern)):
            cluster = path.relative_to(root / "clusters").parts[0]
            namespace, _, name = path.name[: -len(suffix)].partition(".")
            out[(cluster, namespace, name)] = path
    return out


@dataclass
class Status:
    reference: Reference
    state: str  # encrypted | rendered | sops (to set) | runtime | out-of-band | missing
    detail: str = ""


def statuses(report: Report, declarations: list[Declaration]) -> list[Status]:
    roles = cluster_roles(report)
    present = rendered(report)
    files = encrypted_files(report.root)
    out = []
    for ref in references(report):
        key = (ref.cluster, ref.namespace, ref.name)
        if key in files:
            out.append(Status(ref, "encrypted", report.rel(files[key])))
            continue
        made = present.get(ref.cluster, {}).get((ref.namespace, ref.name))
        if made:
            state, _, detail = made.partition(" ")
            out.append(Status(ref, state, detail.strip("()")))
            continue
        declared = next((d for d in declarations
                         if d.covers(ref.cluster, roles.get(ref.cluster, "workload"), ref.namespace, ref.name)), None)
        if declared is None:
            out.append(Status(ref, "optional" if ref.by.endswith(OPTIONAL) else "missing"))
        elif declared.provided == "sops":
            out.append(Status(ref, "not set", f"opc secrets set {ref.namespace}/{ref.name} --cluster {ref.cluster}: "
                                              f"{declared.help}"))
        else:
            out.append(Status(ref, declared.provided, f"{declared.help} ({declared.where})"))
    return out


def check_secrets(report: Report) -> list[Finding]:
    """Every Secret a cluster needs is rendered, encrypted in the repository or declared."""
    declarations, findings = load_declarations(report.root)
    for status in statuses(report, declarations):
        if status.state == "missing":
            ref = status.reference
            findings.append(Finding("secrets", ref.where, f"Secret {ref.namespace}/{ref.name}",
                                    f"named by {ref.by} in cluster {ref.cluster}, but neither rendered, encrypted "
                                    f"in the repository nor declared in a {DECLARATIONS}"))
    return findings


# -- opc secrets: keys, encryption, rotation ----------------------------------------------------

class SecretsError(RuntimeError):
    pass


def _tool(name: str) -> str:
    from .tools import ToolMissing, find

    try:
        return find(name)
    except ToolMissing as exc:
        raise SecretsError(str(exc)) from exc


def clusters_of(root: Path) -> list[str]:
    folder = root / "clusters"
    clusters = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not clusters:
        raise SecretsError(f"{root} has no clusters/ folder: is it a repository opc rendered?")
    return clusters


def _slug(root: Path) -> str:
    answers = root / ".copier-answers.yml"
    try:
        data = yaml.safe_load(answers.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SecretsError(f"cannot read {answers}: {' '.join(str(exc).split())}") from exc
    return str(data.get("company_slug") or "company")


def default_keys_dir(root: Path) -> Path:
    explicit = os.environ.get("OPC_KEYS_DIR")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "opc" / "keys" / _slug(root)


def _outside(root: Path, keys: Path) -> Path:
    keys = keys.resolve()
    if keys == root.resolve() or root.resolve() in keys.parents:
        raise SecretsError(f"keys directory {keys} is inside the repository: private keys must never be written there")
    return keys


def public_key(key_file: Path) -> str:
    for line in key_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ").strip()
    proc = subprocess.run([_tool("age-keygen"), "-y", str(key_file)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SecretsError(f"{key_file} is not an age key: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _keygen(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = subprocess.run([_tool("age-keygen"), "-o", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SecretsError(f"age-keygen failed: {proc.stderr.strip()}")
    path.chmod(0o600)


def write_sops_config(root: Path, keys: Path) -> Path:
    """.sops.yaml: each cluster's files are encrypted to that cluster's key and the company's."""
    company = public_key(keys / f"{COMPANY}.agekey")
    lines = ["---", "# Written by `opc secrets init` and `opc secrets rotate`: who can open each cluster's",
             "# Secrets (clusters/<cluster>/<layer>/secrets/*.sops.yaml): that cluster's age key and the",
             "# company's own. Only data and stringData are encrypted; the rest stays reviewable.",
             "stores:", "  yaml:", "    indent: 2  # as the repository's .yamllint asks",
             "creation_rules:"]
    for cluster in clusters_of(root):
        lines += [f"  - path_regex: (^|/)clusters/{re.escape(cluster)}/[^/]+/secrets/[^/]+\\.sops\\.yaml$",
                  "    encrypted_regex: ^(data|stringData)$",
                  f"    age: {public_key(keys / f'{cluster}.agekey')},{company}"]
    path = root / SOPS_CONFIG
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sealing_key(keys: Path, cluster: str) -> Path:
    """The private sealing key of a cluster (its certificate beside it, .crt)."""
    return keys / f"{cluster}.sealing.key"


def sealing_cert(root: Path, cluster: str) -> Path:
    return root / "clusters" / cluster / SEALING_CERT


def make_sealing_key(key: Path, cert: Path, cluster: str, company: str) -> None:
    """A cluster's Sealed Secrets key pair: RSA 4096 and a self-signed certificate of ten years,
    the shape the controller makes itself (it takes any such pair labelled as its key)."""
    if shutil.which("openssl") is None:
        raise SecretsError("openssl is needed to make the sealing keys")
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subject = f"/O={re.sub(r'[/=+]', ' ', company)}/CN={cluster} sealed secrets"
    with tempfile.TemporaryDirectory(prefix="opc-sealing-", dir=key.parent) as tmp:
        new_key, new_cert = Path(tmp) / "key", Path(tmp) / "crt"
        proc = subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "rsa:4096", "-nodes", "-keyout",
                               str(new_key), "-out", str(new_cert), "-days", "3650", "-subj", subject],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SecretsError(f"openssl could not make the sealing key of {cluster}: {proc.stderr.strip()}")
        new_key.chmod(0o600)
        new_key.replace(key)
        new_cert.replace(key.with_suffix(".crt"))
    cert.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(key.with_suffix(".crt"), cert)


def init(root: Path, keys: Path | None = None) -> tuple[Path, list[str]]:
    """The clusters' keys that are missing (Flux: an age key per cluster and the company's, and
    .sops.yaml; Argo CD: a sealing key per cluster, its certificate in the repository), and each
    cluster's telemetry CA (see telemetry_cas). Returns the keys directory and what it created."""
    keys = _outside(root, keys or default_keys_dir(root))
    created = []
    if is_flux(root):
        for name in [*clusters_of(root), COMPANY]:
            path = keys / f"{name}.agekey"
            if not path.is_file():
                _keygen(path)
                created.append(name)
        write_sops_config(root, keys)
    else:
        company = str(_answers(root).get("company_name", "company"))
        for cluster in clusters_of(root):
            key, cert = sealing_key(keys, cluster), sealing_cert(root, cluster)
            if not key.is_file():
                make_sealing_key(key, cert, cluster, company)
                created.append(f"sealing key of {cluster}")
            elif not cert.is_file() or cert.read_bytes() != key.with_suffix(".crt").read_bytes():
                shutil.copyfile(key.with_suffix(".crt"), cert)
    created += telemetry_cas(root, keys)
    return keys, created


TELEMETRY_CA = ("cert-manager", "telemetry-ca")  # each cluster's CA (cert-manager's ClusterIssuer "telemetry")
TELEMETRY_TRUST = ("istio-ingress", "observability-tls-cacert")  # every CA, for the hub's gateway


def _answers(root: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((root / ".copier-answers.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SecretsError(f"cannot read {root / '.copier-answers.yml'}: {' '.join(str(exc).split())}") from exc
    return data if isinstance(data, dict) else {}


def telemetry_host(cluster: str, base_domain: str) -> str:
    return f"{cluster}.telemetry.{base_domain}"


def make_ca(cert: Path, key: Path, cluster: str, base_domain: str, company: str) -> None:
    """A telemetry CA for one cluster (ECDSA P-256, ten years) that may only certify URIs of the
    cluster's own host (a critical name constraint), so no cluster can speak for another."""
    if shutil.which("openssl") is None:
        raise SecretsError("openssl is needed to make the telemetry CAs")
    cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subject = f"/O={re.sub(r'[/=+]', ' ', company)}/CN={cluster} telemetry CA"
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", subject,
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", f"nameConstraints=critical,permitted;URI:{telemetry_host(cluster, base_domain)}"],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SecretsError(f"openssl could not make the telemetry CA of {cluster}: {proc.stderr.strip()}")
    key.chmod(0o600)


def is_flux(root: Path) -> bool:
    return str(_answers(root).get("gitops", "flux")) == "flux"


def telemetry_cas(root: Path, keys: Path) -> list[str]:
    """Each cluster's telemetry CA, kept in the keys directory (telemetry/<cluster>.crt, .key),
    encrypted to that cluster as cert-manager/telemetry-ca, and every CA certificate for the hub's
    gateway (istio-ingress/observability-tls-cacert). Returns the CAs it made."""
    answers = _answers(root)
    domain, company = str(answers.get("base_domain", "")), str(answers.get("company_name", "company"))
    made = []
    folder = keys / "telemetry"
    for cluster in clusters_of(root):
        cert, key = folder / f"{cluster}.crt", folder / f"{cluster}.key"
        if not cert.is_file() or not key.is_file():
            make_ca(cert, key, cluster, domain, company)
            made.append(f"telemetry CA of {cluster}")
    bundle = "".join((folder / f"{c}.crt").read_text(encoding="utf-8") for c in clusters_of(root))
    for cluster in clusters_of(root):
        if cluster_file(root, cluster, *TELEMETRY_CA) is None or f"telemetry CA of {cluster}" in made:
            set_secret(root, *TELEMETRY_CA, cluster, {"tls.crt": (folder / f"{cluster}.crt").read_text(),
                                                      "tls.key": (folder / f"{cluster}.key").read_text()},
                       "kubernetes.io/tls")
    previous = folder / "bundle.crt"
    if cluster_file(root, "hub", *TELEMETRY_TRUST) is None or not previous.is_file() \
            or previous.read_text(encoding="utf-8") != bundle:
        set_secret(root, *TELEMETRY_TRUST, "hub", {"cacert": bundle})
    (folder / "bundle.crt").write_text(bundle, encoding="utf-8")
    return made


def cluster_file(root: Path, cluster: str, namespace: str, name: str) -> Path | None:
    return encrypted_files(root).get((cluster, namespace, name))


def _layers(root: Path, cluster: str) -> list[str]:
    """The cluster's Flux layers in the order Flux applies them (dependsOn)."""
    path = root / "clusters" / cluster / "layers.yaml"
    if not path.is_file():
        raise SecretsError(f"clusters/{cluster}/layers.yaml is missing: is it a repository opc rendered?")
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    return [str((d.get("metadata") or {}).get("name")) for d in docs if d.get("kind") == "Kustomization"]


def layer_for(root: Path, cluster: str, namespace: str) -> str:
    """Flux: the first layer of the cluster whose objects create ``namespace`` (its Secrets go
    there, so they are applied with it and before anything of a later layer reads them)."""
    from .kustomize import build_one

    for layer in _layers(root, cluster):
        build = build_one(root / "clusters" / cluster / layer)
        if not build.ok:
            raise SecretsError(f"clusters/{cluster}/{layer} does not build: {build.error.splitlines()[0]}")
        if any(o.get("kind") == "Namespace" and _meta(o).get("name") == namespace for o in build.objects):
            return layer
    raise SecretsError(f"no layer of cluster {cluster} creates namespace {namespace}: its Secrets cannot be "
                       "delivered with it")


def _rt() -> Any:
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.explicit_start = True
    return rt


def _add_resource(kustomization: Path, entry: str, header: str) -> None:
    rt = _rt()
    if kustomization.is_file():
        document = rt.load(kustomization.read_text(encoding="utf-8"))
    else:
        document = rt.load(f"# {header}\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                           "resources: []\n")
    resources = document.get("resources")
    if resources is None:
        document["resources"] = resources = []
    if entry not in resources:
        resources.append(entry)
        if len(resources) == 1 and hasattr(resources, "fa"):
            resources.fa.set_block_style()
    with kustomization.open("w", encoding="utf-8") as handle:
        rt.dump(document, handle)


def secret_path(root: Path, cluster: str, layer: str, namespace: str, name: str,
                suffix: str = ENCRYPTED_SUFFIX) -> Path:
    return root / "clusters" / cluster / layer / "secrets" / f"{namespace}.{name}{suffix}"


def _sops_encrypt(root: Path, plain: Path, target: Path) -> str:
    if not (root / SOPS_CONFIG).is_file():
        raise SecretsError(f"{SOPS_CONFIG} is missing: run `opc secrets init` first")
    proc = subprocess.run([_tool("sops"), "--config", str(root / SOPS_CONFIG), "encrypt",
                           "--filename-override", target.relative_to(root).as_posix(), str(plain)],
                          capture_output=True, text=True, check=False, cwd=root)
    if proc.returncode != 0:
        raise SecretsError(f"sops could not encrypt it: {proc.stderr.strip()}")
    return proc.stdout


def _seal(cert: Path, plain: str) -> str:
    """A SealedSecret of ``plain`` (a Secret) for the holder of ``cert``'s key (strict scope: it
    opens only under its own namespace and name)."""
    proc = subprocess.run([_tool("kubeseal"), "--cert", str(cert), "--format", "yaml"], input=plain,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SecretsError(f"kubeseal could not seal it: {proc.stderr.strip()}")
    return proc.stdout


def set_secret(root: Path, namespace: str, name: str, cluster: str, values: dict[str, str],
               secret_type: str = "Opaque") -> Path:  # noqa: S107 - a Secret type, not a password
    """Encrypt a Secret for one cluster into its layer's secrets/ folder; plaintext never touches
    the repository."""
    if not NAME.match(name) or not NAME.match(namespace):
        raise SecretsError(f"'{namespace}/{name}' is not a valid namespace/name")
    if cluster not in clusters_of(root):
        raise SecretsError(f"no cluster '{cluster}' (clusters: {', '.join(clusters_of(root))})")
    if not values:
        raise SecretsError("give the Secret's keys: --from-literal KEY=VALUE or --from-file KEY=PATH")
    flux = is_flux(root)
    cert = sealing_cert(root, cluster)
    if (flux and not (root / SOPS_CONFIG).is_file()) or (not flux and not cert.is_file()):
        raise SecretsError(f"{SOPS_CONFIG if flux else cert.relative_to(root)} is missing: run `opc secrets init` "
                           "first")
    if flux:
        layer = layer_for(root, cluster, namespace)
        target = secret_path(root, cluster, layer, namespace, name)
    else:
        target = root / "clusters" / cluster / "secrets" / namespace / f"{namespace}.{name}{SEALED_SUFFIX}"
    document = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                "type": secret_type, "stringData": dict(sorted(values.items()))}
    plain_text = yaml.safe_dump(document, sort_keys=False)
    if flux:
        with tempfile.TemporaryDirectory(prefix="opc-secret-") as tmp:
            plain = Path(tmp) / "secret.yaml"
            plain.write_text(plain_text, encoding="utf-8")
            plain.chmod(0o600)
            encrypted = _sops_encrypt(root, plain, target)
    else:
        encrypted = _seal(cert, plain_text)
    if not flux:
        if namespace not in argo_namespaces(root, cluster):
            raise SecretsError(f"cluster {cluster} receives no namespace {namespace}: its Secrets would land in a "
                               "namespace no component owns (no Pod Security level, no network policies)")
        _secrets_application(root, cluster, namespace)  # first: nothing half-written if it fails
    _write(target, encrypted)
    if flux:
        _add_resource(target.parent / "kustomization.yaml", target.name,
                      f"Secrets of cluster {cluster} applied with its {layer} (SOPS; opc secrets set)")
        _add_resource(target.parent.parent / "kustomization.yaml", "secrets", "")
    else:
        _add_resource(target.parent / "kustomization.yaml", target.name,
                      f"SealedSecrets of cluster {cluster} in namespace {namespace} (opc secrets set)")
    return target


def argo_namespaces(root: Path, cluster: str) -> set[str]:
    """Argo CD: the namespaces the cluster's Applications install into or create from this
    repository's folders."""
    from .kustomize import build_one

    build = build_one(root / "clusters" / cluster)
    if not build.ok:
        raise SecretsError(f"clusters/{cluster} does not build: {build.error.splitlines()[0]}")
    found: set[str] = set()
    paths: set[str] = set()
    for app in build.objects:
        if app.get("kind") != "Application" or not str(app.get("apiVersion", "")).startswith("argoproj.io/"):
            continue
        spec = app.get("spec") or {}
        found.add(str((spec.get("destination") or {}).get("namespace") or ""))
        paths |= {str(src["path"]) for src in [spec.get("source") or {}, *(spec.get("sources") or [])]
                  if src.get("path") and (root / str(src["path"]) / "kustomization.yaml").is_file()}
    for path in sorted(paths):
        built = build_one(root / path)
        if built.ok:
            found |= {str(_meta(o).get("name")) for o in built.objects if o.get("kind") == "Namespace"}
    return found - {""}


SECRETS_WAVE = -24  # right after the Sealed Secrets controller (catalogue wave -25), before any reader
APPLICATIONS = "applications.yaml"  # clusters/<cluster>/secrets/applications.yaml


def _secrets_application(root: Path, cluster: str, namespace: str) -> None:
    """Argo CD: the Application that delivers a cluster's SealedSecrets of one namespace, in the
    sync wave right after the Sealed Secrets controller and before everything that reads them,
    creating the namespace if it is not there yet (without managing it: the component that owns
    it keeps its labels and policies)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    folder = root / "clusters" / cluster
    entry = _rt().load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    layers = [d for d in yaml.safe_load_all((folder / "layers.yaml").read_text(encoding="utf-8"))
              if isinstance(d, dict) and d.get("kind") == "Application"]
    if not layers:
        raise SecretsError(f"clusters/{cluster}/layers.yaml has no Argo CD Application to take the repository from")
    source = (layers[0].get("spec") or {}).get("source") or {}
    prefixed = bool(entry.get("namePrefix"))  # a workload cluster's Applications are named <cluster>-...
    name = f"{'' if prefixed else cluster + '-'}secrets-{namespace}"
    application: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd",
                     "annotations": {"argocd.argoproj.io/sync-wave": DoubleQuotedScalarString(str(SECRETS_WAVE))},
                     "finalizers": ["resources-finalizer.argocd.argoproj.io/foreground"]},
        "spec": {"project": "platform",
                 "source": {"repoURL": source.get("repoURL"), "targetRevision": source.get("targetRevision"),
                            "path": f"clusters/{cluster}/secrets/{namespace}"},
                 "destination": {"name": "in-cluster", "namespace": namespace},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                                "syncOptions": ["ServerSideApply=true", "CreateNamespace=true"]}},
    }
    path = folder / "secrets" / APPLICATIONS
    existing = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)] \
        if path.is_file() else []
    if not any((d.get("metadata") or {}).get("name") == name for d in existing):
        header = (f"# The SealedSecrets of cluster {cluster}, one Application per namespace (opc secrets set):\n"
                  "# synced right after the Sealed Secrets controller, before anything reads them.\n")
        buffer = io.StringIO()
        _rt().dump_all([*existing, application], buffer)  # the repository's YAML style (.yamllint)
        _write(path, "---\n" + header + buffer.getvalue().removeprefix("---\n"))
    _add_resource(folder / "kustomization.yaml", f"secrets/{APPLICATIONS}", "")


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_text(text if text.startswith("---") else "---\n" + text, encoding="utf-8")
    staging.replace(target)


def decrypt(path: Path, key_file: Path) -> str:
    """The plaintext of a SOPS file (opened with one age key) or of a SealedSecret (one sealing
    key, as its controller opens it); fails for any other key."""
    if path.name.endswith(SEALED_SUFFIX):
        proc = subprocess.run([_tool("kubeseal"), "--recovery-unseal", "--recovery-private-key", str(key_file),
                               "--format", "yaml"], input=path.read_text(encoding="utf-8"),
                              capture_output=True, text=True, check=False)
    else:
        proc = subprocess.run([_tool("sops"), "decrypt", str(path)], capture_output=True, text=True, check=False,
                              env={**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)})
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"sops exited with {proc.returncode}"])[-1]
        raise SecretsError(f"cannot decrypt {path.name} with {key_file.name}: {why}")
    return proc.stdout


def rotate(root: Path, cluster: str, keys: Path | None = None) -> list[Path]:
    """A new age key for ``cluster`` (the old one kept as .agekey.old until its files are re-keyed),
    its files re-encrypted to it with a fresh data key; returns those files."""
    keys = _outside(root, keys or default_keys_dir(root))
    if not is_flux(root):
        return _rotate_sealing(root, cluster, keys)
    if cluster not in [*clusters_of(root), COMPANY]:
        raise SecretsError(f"no cluster '{cluster}' (clusters: {', '.join(clusters_of(root))}, or {COMPANY})")
    company = keys / f"{COMPANY}.agekey"
    if not company.is_file():
        raise SecretsError(f"{company} is missing: rotation opens the files with the company's key")
    if missing := [name for name in [*clusters_of(root), COMPANY] if not (keys / f"{name}.agekey").is_file()]:
        raise SecretsError(f"no key for {', '.join(missing)} in {keys}: run `opc secrets init` first")
    current = keys / f"{cluster}.agekey"
    # the old key is kept under a name of its own (a second rotation never overwrites it)
    old = current.with_name(f"{current.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.old")
    shutil.copy2(current, old)
    _keygen(current.with_name(current.name + ".new"))
    current.with_name(current.name + ".new").replace(current)
    write_sops_config(root, keys)
    files = sorted(encrypted_files(root).values()) if cluster == COMPANY else \
        [p for (c, _, _), p in sorted(encrypted_files(root).items()) if c == cluster]
    # The company's key opens every file; rotating the company's own key, the old one opens them
    # until they are re-keyed.
    opener = old if cluster == COMPANY and old.is_file() else company
    for path in files:
        for args, key in ((["updatekeys", "--yes"], opener), (["rotate", "--in-place"], company)):
            proc = subprocess.run([_tool("sops"), "--config", str(root / SOPS_CONFIG), *args, str(path)],
                                  capture_output=True, text=True, check=False, cwd=root,
                                  env={**os.environ, "SOPS_AGE_KEY_FILE": str(key)})
            if proc.returncode != 0:
                raise SecretsError(f"sops {args[0]} {path.relative_to(root)}: {proc.stderr.strip()}")
    return files


def _unsealed(text: str) -> str:
    """The Secret as it was sealed (without what the controller would add: its owner)."""
    document = yaml.safe_load(text)
    for key in ("ownerReferences", "creationTimestamp"):
        (document.get("metadata") or {}).pop(key, None)
    return yaml.safe_dump(document, sort_keys=False)


def _rotate_sealing(root: Path, cluster: str, keys: Path) -> list[Path]:
    """Argo CD: a new sealing key for ``cluster`` (the old one kept as .old), its certificate in
    the repository, and the cluster's SealedSecrets opened with the old key and sealed again to
    the new one; returns those files."""
    if cluster not in clusters_of(root):
        raise SecretsError(f"no cluster '{cluster}' (clusters: {', '.join(clusters_of(root))}; on Argo CD there is "
                           "no company key)")
    key = sealing_key(keys, cluster)
    if not key.is_file():
        raise SecretsError(f"no sealing key of {cluster} in {keys}: run `opc secrets init` first")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    old = key.with_name(f"{key.name}.{stamp}.old")
    shutil.copy2(key, old)
    files = [p for (c, _, _), p in sorted(encrypted_files(root).items()) if c == cluster
             and p.name.endswith(SEALED_SUFFIX)]
    plain = {path: _unsealed(decrypt(path, old)) for path in files}  # all opened before anything changes
    make_sealing_key(key, sealing_cert(root, cluster), cluster, str(_answers(root).get("company_name", "company")))
    for path in files:
        _write(path, _seal(sealing_cert(root, cluster), plain[path]))
    return files
