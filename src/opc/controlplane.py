"""A real Kubernetes control plane on 127.0.0.1: etcd and kube-apiserver, built from the Go module
proxy at the Kubernetes line the platform targets (``opc tools install control-plane``).

The API server runs with real TLS (its own CA, a serving certificate for 127.0.0.1, an admin
client certificate in ``system:masters``), RBAC, service-account signing keys and the default
admission plugins, PodSecurity included. There is no kubelet, scheduler or controller-manager,
and the ServiceAccount admission plugin is off (no token controller mints the tokens it would
wait for). Each ``ControlPlane`` lives in its own directory (certificates, etcd data, logs,
kubeconfig) and is stopped by the PIDs it started.

``Client`` speaks to it over HTTPS with the standard library: discovery, server-side apply
(``dryRun=All`` or for real), creation, status updates, and the ``Warning`` headers the server
returns, one request per object, so that each answer belongs to one object.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tools

SERVICE_CIDR = "10.96.0.0/16"
FIELD_MANAGER = "opc"


class ControlPlaneError(RuntimeError):
    pass


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_certificates(pki: Path) -> None:
    """A CA, the API server's serving certificate (127.0.0.1), an admin client certificate
    (group system:masters) and the service-account signing key pair, all ECDSA P-256."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=opc-verify-ca",
             cwd=pki)
    sans = ("subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    (pki / "serving.ext").write_text(f"{sans}\nextendedKeyUsage=serverAuth\n")
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (("apiserver", "/CN=kube-apiserver", "serving.ext"),
                               ("admin", "/O=system:masters/CN=opc-admin", "client.ext")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=pki)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


@dataclass
class ControlPlane:
    """etcd and kube-apiserver in ``home`` (fresh data each start)."""

    home: Path
    etcd_port: int = 0
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_seconds: float = 0.0
    # CRDs opc installed here: name -> (digest of what was applied, resourceVersion once
    # Established, the server's warnings), so that the same CRD is not sent again while unchanged.
    crds: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.home / "pki"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(proc)
        return proc

    def _log_tail(self, name: str) -> str:
        path = self.home / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        return "\n".join(lines[-15:])

    def start(self, timeout: float = 180.0) -> ControlPlane:
        try:
            return self._start(timeout)
        except BaseException:  # Ctrl-C or a failure while starting: leave nothing running
            self.stop()
            raise

    def _start(self, timeout: float) -> ControlPlane:
        started = time.perf_counter()
        etcd, apiserver = tools.find("etcd"), tools.find("kube-apiserver")
        self.home.mkdir(parents=True, exist_ok=True)
        make_certificates(self.pki)
        ports = free_ports(3)
        self.etcd_port = self.etcd_port or ports[0]
        peer = ports[1]
        self._spawn("etcd", [
            etcd, "--name", "opc", "--data-dir", str(self.home / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"opc=http://127.0.0.1:{peer}",
            "--log-level", "warn", "--unsafe-no-fsync", "--quota-backend-bytes", str(4 << 30),
        ])
        self.port = self.port or ports[2]
        pki = self.pki
        self._spawn("kube-apiserver", [
            apiserver, "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--authorization-mode", "RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins", "ServiceAccount",
            "--cert-dir", str(pki), "--profiling=false", "--v", "1",
            *self.extra_args,
        ])
        self._write_kubeconfig()
        deadline = time.monotonic() + timeout
        client = Client(self)
        while True:
            for proc, name in zip(self.processes, ("etcd", "kube-apiserver"), strict=False):
                if proc.poll() is not None:
                    raise ControlPlaneError(f"{name} exited ({proc.returncode}):\n{self._log_tail(name)}")
            try:
                status, _body, _ = client.request("GET", "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s:\n"
                                        f"{self._log_tail('kube-apiserver')}")
            time.sleep(0.5)
        client.wait_for_namespace("default", deadline)
        client.close()
        self.started_seconds = time.perf_counter() - started
        return self

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "opc",
            "clusters": [{"name": "opc", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "opc-admin", "user": {"client-certificate": str(self.pki / "admin.crt"),
                                                     "client-key": str(self.pki / "admin.key")}}],
            "contexts": [{"name": "opc", "context": {"cluster": "opc", "user": "opc-admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")

    def alive(self) -> bool:
        """Both processes still run."""
        return bool(self.processes) and all(proc.poll() is None for proc in self.processes)

    def stop(self) -> None:
        # The last started stops first: kube-apiserver shuts down gracefully only while etcd still
        # answers (with etcd gone first it waits out the timeout). A second Ctrl-C while waiting
        # still leaves none running: whatever is left is killed.
        try:
            for proc in reversed(self.processes):
                terminate(proc, timeout=20)
        finally:
            for proc in self.processes:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# A small client: one HTTPS connection, discovery, apply, create, status
# ---------------------------------------------------------------------------------------------

_WARNING = re.compile(r'^\d{3} \S+ "((?:[^"\\]|\\.)*)"')


def parse_warning(header: str) -> str:
    """The text of a ``Warning: 299 - "text"`` header (RFC 7234), unescaped."""
    match = _WARNING.match(header.strip())
    if not match:
        return header.strip()
    return re.sub(r"\\(.)", r"\1", match.group(1))


@dataclass(frozen=True)
class Resource:
    group_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        prefix = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{urllib.parse.quote(namespace)}")
        parts.append(self.plural)
        if name:
            parts.append(urllib.parse.quote(name))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.body.get("reason") or f"HTTP {self.status}")


class Client:
    def __init__(self, plane: ControlPlane, timeout: float = 60.0) -> None:
        self.host, self.port = "127.0.0.1", plane.port
        self.context = ssl.create_default_context(cafile=str(plane.pki / "ca.crt"))
        self.context.load_cert_chain(str(plane.pki / "admin.crt"), str(plane.pki / "admin.key"))
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._resources: dict[tuple[str, str], Resource] = {}
        self._fetched: set[str] = set()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
                accept: str = "application/json") -> tuple[int, bytes, list[str]]:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                         timeout=self.timeout)
            try:
                headers = {"Accept": accept}
                if body is not None:
                    headers["Content-Type"] = content_type
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                return response.status, data, response.headers.get_all("Warning") or []
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, obj: Any = None, content_type: str = "application/json",
             accept: str = "application/json") -> Answer:
        body = None if obj is None else json.dumps(obj).encode()
        status, data, warnings = self.request(method, path, body, content_type, accept)
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"message": data.decode(errors="replace").strip()}
        return Answer(status, parsed if isinstance(parsed, dict) else {}, [parse_warning(w) for w in warnings])

    def wait_for_namespace(self, name: str, deadline: float) -> None:
        while self.call("GET", f"/api/v1/namespaces/{name}").status != 200:
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"namespace {name} never appeared")
            time.sleep(0.3)

    # -- discovery --------------------------------------------------------------------------

    def _discover(self, group_version: str) -> None:
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        answer = self.call("GET", prefix)
        if not answer.ok:
            return
        self._fetched.add(group_version)
        for item in answer.body.get("resources") or []:
            if "/" in str(item.get("name", "")):
                continue
            resource = Resource(group_version, str(item["kind"]), str(item["name"]), bool(item.get("namespaced")))
            self._resources[(group_version, resource.kind)] = resource

    def resource(self, api_version: str, kind: str, refresh: bool = False) -> Resource | None:
        key = (api_version, kind)
        if key not in self._resources and (refresh or api_version not in self._fetched):
            self._discover(api_version)
        return self._resources.get(key)

    def forget(self, api_version: str) -> None:
        self._fetched.discard(api_version)

    # -- objects ----------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], dry_run: bool, resource: Resource) -> Answer:
        meta = obj.get("metadata") or {}
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        path = resource.path(str(meta.get("namespace", "")), str(meta.get("name", "")))
        return self.call("PATCH", f"{path}?{urllib.parse.urlencode(query)}", obj, "application/apply-patch+yaml")

    def create(self, obj: dict[str, Any], resource: Resource, dry_run: bool = True) -> Answer:
        query = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
        path = resource.path(str((obj.get("metadata") or {}).get("namespace", "")))
        return self.call("POST", f"{path}?{urllib.parse.urlencode(query)}", obj)

    def get(self, resource: Resource, name: str, namespace: str = "") -> Answer:
        return self.call("GET", resource.path(namespace, name))

    def list(self, resource: Resource, namespace: str = "", metadata_only: bool = False) -> list[dict[str, Any]]:
        """The objects of a resource; with ``metadata_only``, their metadata alone (as kubectl's
        ``--output name`` asks: a PartialObjectMetadataList)."""
        accept = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1" if metadata_only
                  else "application/json")
        answer = self.call("GET", resource.path(namespace), accept=accept)
        return list(answer.body.get("items") or []) if answer.ok else []


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Stop a process we started: SIGTERM, and SIGKILL if it is still running after `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
