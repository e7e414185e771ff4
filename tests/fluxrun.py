"""A real Flux run for the tests: source-controller, kustomize-controller and helm-controller (built
from the Go module proxy at the Flux 2.9 line, `opc tools install flux`) reconcile one cluster of a
rendered repository against a local kube-apiserver (controlplane.py).

* The repository, committed, is served by ``git http-backend`` (Git's smart HTTP) on 127.0.0.1.
* The pinned charts are served on 127.0.0.1 as a Helm repository (``helm package`` and ``helm repo
  index``) and pushed with ``helm push`` to a local OCI registry (CNCF Distribution's registry) for
  the releases Flux pulls through an OCIRepository.
* Only the test's copy is changed, by kustomize patches committed on top of the render: the
  GitRepository, HelmRepositories and OCIRepositories point at those servers.
* There is no kubelet, scheduler or controller-manager. ``ReadinessStandIn`` marks what they and a
  cloud would make ready: every Deployment, StatefulSet and DaemonSet ready at its generation, Jobs
  complete, PersistentVolumeClaims bound, LoadBalancer Services given an address, disruption
  budgets healthy. No pod runs, so no admission webhook could answer: this API server runs without
  webhook admission (opc verify keeps it; webhook configurations are only dry-run there).
* Operators that install CRDs at runtime do not run either: their CRDs (crd-sources.yaml) are
  installed at bootstrap with Flux's own, as opc verify does.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from opc import tools
from opc.controlplane import Client, ControlPlane, free_ports
from opc.validate import Report
from opc.verify import Verifier, plans_of

WEBHOOKLESS = ["--disable-admission-plugins", "ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"]


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


class _GitHandler(http.server.BaseHTTPRequestHandler):
    root: Path

    def log_message(self, *_args: Any) -> None:
        pass

    def _backend(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {**os.environ, "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": self.client_address[0], "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _backend
    do_POST = _backend


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def git_server(root: Path) -> Any:
    handler = type("GitHandler", (_GitHandler,), {"root": root})
    return serving(handler)


def file_server(root: Path) -> Any:
    def make(*args: Any, **kwargs: Any) -> _QuietFiles:
        return _QuietFiles(*args, directory=str(root), **kwargs)

    return serving(make)  # type: ignore[arg-type]


@contextmanager
def registry(home: Path) -> Iterator[int]:
    """CNCF Distribution's registry on 127.0.0.1 (plain HTTP), storage in ``home``."""
    port = free_ports(1)[0]
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {home / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(home / "registry.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([tools.find("registry"), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        import urllib.request
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"registry did not start: {(home / 'registry.log').read_text()[-500:]}") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


# ---------------------------------------------------------------------------------------------
# The controllers
# ---------------------------------------------------------------------------------------------


@dataclass
class Controllers:
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def check(self) -> None:
        """Fail with the log's end if a controller exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-5:])
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail}")


CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller")


def instance_args(report: Report, cluster: str) -> dict[str, list[str]]:
    """The arguments the cluster's FluxInstance adds to each controller (its kustomize patches
    that append to the container's args), so the controllers run here as they run there. Any
    other kind of patch to a controller is refused: it could not be honoured here."""
    import re

    import yaml

    added: dict[str, list[str]] = {name: [] for name in CONTROLLERS}
    instances = [o for _, objects in report.cluster_units()[cluster] for o in objects if o.get("kind") == "FluxInstance"]
    assert len(instances) == 1, f"{cluster}: {len(instances)} FluxInstances"
    for patch in ((instances[0].get("spec") or {}).get("kustomize") or {}).get("patches") or []:
        target = patch.get("target") or {}
        names = [n for n in CONTROLLERS if target.get("kind") == "Deployment" and re.fullmatch(target.get("name", ".*"), n)]
        for op in yaml.safe_load(patch["patch"]):
            assert op.get("op") == "add" and op.get("path") == "/spec/template/spec/containers/0/args/-", (
                f"a FluxInstance patch this test cannot apply to the controllers: {op}")
            for name in names:
                added[name].append(str(op["value"]))
    return added


@contextmanager
def flux_controllers(plane: ControlPlane, home: Path, added: dict[str, list[str]]) -> Iterator[Controllers]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "storage").mkdir(exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "RUNTIME_NAMESPACE": "flux-system"}
    ports = iter(free_ports(7))
    storage = next(ports)
    args = {
        "source-controller": [f"--storage-path={home / 'storage'}", f"--storage-addr=127.0.0.1:{storage}",
                              f"--storage-adv-addr=127.0.0.1:{storage}"],
        "kustomize-controller": ["--requeue-dependency=2s", "--no-remote-bases=true"],
        "helm-controller": ["--requeue-dependency=2s"],
    }
    running = Controllers({}, {})
    try:
        for name, extra in args.items():
            running.logs[name] = home / f"{name}.log"
            with open(running.logs[name], "wb") as log:
                running.procs[name] = subprocess.Popen(
                    [tools.find(name), "--enable-leader-election=false", "--watch-all-namespaces=true",
                     "--log-encoding=console", "--events-addr=", f"--metrics-addr=127.0.0.1:{next(ports)}",
                     f"--health-addr=127.0.0.1:{next(ports)}", *extra, *added.get(name, [])],
                    stdout=log, stderr=subprocess.STDOUT, env=env)
        yield running
    finally:
        for proc in running.procs.values():
            proc.terminate()
        for proc in running.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------------------------------
# What a kubelet, the controller-manager and a cloud would make ready
# ---------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, reason: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": "opc test stand-in",
            "lastTransitionTime": _now(), "lastUpdateTime": _now()}


def _ready_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The status a ready object of this kind has, or None when it is ready already."""
    kind, spec, status = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 1)
    if kind == "Deployment":
        n = spec.get("replicas", 1)
        want = {"observedGeneration": generation, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
                "availableReplicas": n,
                "conditions": [_condition("Available", "MinimumReplicasAvailable"),
                               _condition("Progressing", "NewReplicaSetAvailable")]}
    elif kind == "StatefulSet":
        n = spec.get("replicas", 1)
        want = {"observedGeneration": generation, "replicas": n, "readyReplicas": n, "currentReplicas": n,
                "updatedReplicas": n, "availableReplicas": n, "currentRevision": "r1", "updateRevision": "r1"}
    elif kind == "DaemonSet":  # one node
        want = {"observedGeneration": generation, "currentNumberScheduled": 1, "desiredNumberScheduled": 1,
                "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberMisscheduled": 0}
    elif kind == "Job":
        if any(c.get("type") == "Complete" for c in status.get("conditions") or []):
            return None
        started = status.get("startTime") or _now()
        want = {"startTime": started, "completionTime": _now(), "succeeded": spec.get("completions", 1) or 1,
                "active": 0, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                "conditions": [_condition("SuccessCriteriaMet", "CompletionsReached"),
                               _condition("Complete", "CompletionsReached")]}
        for c in want["conditions"]:
            c.pop("lastUpdateTime")
            c["lastProbeTime"] = c["lastTransitionTime"]
    elif kind == "PersistentVolumeClaim":
        want = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": ((spec.get("resources") or {}).get("requests") or {"storage": "1Gi"})}
    elif kind == "Service" and spec.get("type") == "LoadBalancer":
        want = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}
    elif kind == "PodDisruptionBudget":
        want = {"observedGeneration": generation, "currentHealthy": 1, "desiredHealthy": 1,
                "disruptionsAllowed": 1, "expectedPods": 1,
                "conditions": [{**_condition("DisruptionAllowed", "SufficientPods"), "observedGeneration": generation}]}
        want["conditions"][0].pop("lastUpdateTime")
    else:
        return None
    keys = [k for k in want if k not in ("conditions", "startTime", "completionTime")]
    if all(status.get(k) == want[k] for k in keys) and (kind != "Deployment" or status.get("conditions")):
        return None
    return want


STAND_IN_KINDS = [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
                  ("batch/v1", "Job"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"),
                  ("policy/v1", "PodDisruptionBudget")]


class ReadinessStandIn(threading.Thread):
    """Marks workloads ready as nodes and a cloud would, but, like a kubelet, not while a Secret
    their pods need is missing; it makes the Secrets the platform's controllers would make when
    they run (``provides``: cert-manager's certificates, a chart's certificate Job)."""

    def __init__(self, plane: ControlPlane, every: float = 1.0, provides: set[tuple[str, str]] | None = None) -> None:
        super().__init__(daemon=True)
        self.client = Client(plane)
        self.every = every
        self.provides = provides or set()
        self.stopped = threading.Event()
        self.marked: set[str] = set()
        self.made: set[str] = set()
        self.waiting: dict[str, list[str]] = {}  # workload -> the Secrets it waits for
        self.errors: list[str] = []

    def _secrets_missing(self, obj: dict[str, Any]) -> list[str]:
        from opc.secrets import OPTIONAL, _pod_references

        secret_resource = self.client.resource("v1", "Secret")
        missing = []
        for namespace, name, by in _pod_references(obj):
            if by.endswith(OPTIONAL) or secret_resource is None:
                continue
            if self.client.get(secret_resource, name, namespace).ok:
                continue
            if (namespace, name) in self.provides:
                made = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                        "stringData": {"stand-in": "made as its controller would"}}
                if self.client.apply(made, dry_run=False, resource=secret_resource).ok:
                    self.made.add(f"{namespace}/{name}")
                    continue
            missing.append(f"{namespace}/{name}")
        return missing

    def run(self) -> None:
        while not self.stopped.is_set():
            for api_version, kind in STAND_IN_KINDS:
                resource = self.client.resource(api_version, kind)
                if resource is None:
                    continue
                for obj in self.client.list(resource):
                    obj.setdefault("kind", kind)
                    want = _ready_status(obj)
                    if want is None:
                        continue
                    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                        label = f"{kind} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
                        if missing := self._secrets_missing(obj):
                            self.waiting[label] = missing
                            continue
                        self.waiting.pop(label, None)
                    meta = obj["metadata"]
                    path = resource.path(meta.get("namespace", ""), meta["name"], "status")
                    answer = self.client.call("PATCH", path, {"status": want}, "application/merge-patch+json")
                    label = f"{kind} {meta.get('namespace', '')}/{meta['name']}"
                    if answer.ok:
                        self.marked.add(label)
                    elif len(self.errors) < 50:
                        self.errors.append(f"{label}: {answer.message}")
            self.stopped.wait(self.every)
        self.client.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


# ---------------------------------------------------------------------------------------------
# The repository as the test serves it
# ---------------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class Served:
    git_url: str
    helm_url: str
    oci_host: str
    oci_tags: dict[str, str] = field(default_factory=dict)  # chart -> the tag pushed (a stand-in's version)


def patch_for_test(repo: Path, cluster: str, served: Served, oci_charts: dict[str, str]) -> None:
    """Kustomize patches, in every kustomization of clusters/<cluster>, that point the sources at
    the local servers (``oci_charts``: OCIRepository name -> chart)."""
    patches: list[dict[str, Any]] = [
        {"target": {"kind": "HelmRepository"},
         "patch": f"- op: replace\n  path: /spec/url\n  value: {served.helm_url}\n"},
    ]
    for name, chart in sorted(oci_charts.items()):
        ops = (f"- op: replace\n  path: /spec/url\n  value: oci://{served.oci_host}/charts/{chart}\n"
               "- op: add\n  path: /spec/insecure\n  value: true\n")
        if chart in served.oci_tags:
            ops += f"- op: replace\n  path: /spec/ref/tag\n  value: \"{served.oci_tags[chart]}\"\n"
        patches.append({"target": {"kind": "OCIRepository", "name": name}, "patch": ops})
    yaml = YAML()
    yaml.preserve_quotes = True
    for path in sorted((repo / "clusters" / cluster).rglob("kustomization.yaml")):
        data = yaml.load(path)
        extra = list(patches)
        if path.parent == repo / "clusters" / cluster / "flux-system":
            extra.append({"target": {"kind": "GitRepository", "name": "flux-system"},
                          "patch": f"- op: replace\n  path: /spec/url\n  value: {served.git_url}\n"
                                   "- op: remove\n  path: /spec/secretRef\n"})
        data.setdefault("patches", [])
        data["patches"].extend(extra)
        yaml.dump(data, path)


def publish(repo: Path, root: Path, branch: str) -> Path:
    """Commit ``repo`` on ``branch`` and make a bare clone of it under ``root``: what the Git
    server serves."""
    _git(repo, "init", "-q", "-b", branch)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=opc", "-c", "user.email=opc@example.invalid", "commit", "-q", "-m", "test")
    bare = root / "repo.git"
    _git(root, "clone", "-q", "--bare", str(repo), str(bare))
    _git(bare, "config", "http.receivepack", "false")
    return bare


def chart_packages(report: Report, cluster: str, out: Path) -> dict[str, Path]:
    """Package every chart the cluster's releases use (the pinned versions; a declared stand-in
    where the pin is in no offline source): chart name -> package."""
    out.mkdir(parents=True, exist_ok=True)
    packages: dict[str, Path] = {}
    for rendered in report.releases:
        if rendered.release.cluster != cluster or rendered.chart_dir is None:
            continue
        name = rendered.release.chart.chart
        if name in packages:
            continue
        # Packaged at the pinned version, as its publisher does (some chart sources carry a
        # placeholder version); a declared stand-in keeps its own.
        version = [] if rendered.substitute else ["--version", rendered.release.chart.version]
        proc = subprocess.run([tools.find("helm"), "package", str(rendered.chart_dir), "-d", str(out), *version],
                              capture_output=True, text=True, check=True)
        packages[name] = Path(proc.stdout.strip().rsplit(":", 1)[-1].strip())
    subprocess.run([tools.find("helm"), "repo", "index", str(out)], check=True, capture_output=True)
    return packages


# ---------------------------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    cluster: str
    seconds: float
    kustomizations: dict[str, tuple[bool, str]]
    helmreleases: dict[str, tuple[bool, str]]
    ready_at: dict[str, float]  # "Kind namespace/name" -> seconds after bootstrap it was first Ready
    marked: int
    stand_in_errors: list[str]
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # "ns/name" -> decoded data, as applied
    waiting: dict[str, list[str]] = field(default_factory=dict)  # workload -> Secrets it still waits for

    @property
    def converged(self) -> bool:
        return bool(self.kustomizations) and all(ok for ok, _ in self.kustomizations.values()) and all(
            ok for ok, _ in self.helmreleases.values())

    def summary(self) -> str:
        return (f"{self.cluster}: {sum(ok for ok, _ in self.kustomizations.values())}/{len(self.kustomizations)} "
                f"Kustomizations Ready, {sum(ok for ok, _ in self.helmreleases.values())}/{len(self.helmreleases)} "
                f"HelmReleases Ready in {self.seconds:.0f}s ({self.marked} objects made ready by the stand-in)"
                + "".join(f"; {w} waits for Secret {', '.join(m)}" for w, m in sorted(self.waiting.items())))


def _ready(obj: dict[str, Any]) -> tuple[bool, str]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True", str(condition.get("message", ""))
    return False, "no Ready condition yet"


def install_crds(plane: ControlPlane, report: Report, cluster: str, schemas: list[Path]) -> None:
    """What installing Flux gives a new cluster before the controllers start: the flux-system
    namespace, Flux's CRDs, the Flux Operator's, and those runtime operators install."""
    _, plans, _ = plans_of(report, schemas)
    verifier = Verifier(plane)
    result = verifier.verify(cluster, "flux", [plans[cluster][0]])
    verifier.client.close()
    assert not result.rejected, result.rejected


def bootstrap(plane: ControlPlane, cluster: str, repo: Path, key: Path) -> None:
    """The README's bootstrap with the test's sources: the cluster's age key (Secret sops-age, as
    `opc secrets init` prints it), the GitRepository and the root Kustomization of
    clusters/<cluster>/flux-system."""
    from opc.kustomize import build_one

    build = build_one(repo / "clusters" / cluster / "flux-system")
    assert build.ok, build.error
    client = Client(plane)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sops-age", "namespace": "flux-system"},
              "stringData": {"age.agekey": key.read_text()}}
    resource = client.resource("v1", "Secret")
    assert resource is not None
    answer = client.apply(secret, dry_run=False, resource=resource)
    assert answer.ok, answer.message
    for obj in build.objects:
        if obj.get("kind") not in ("GitRepository", "Kustomization"):
            continue
        resource = client.resource(str(obj["apiVersion"]), str(obj["kind"]), refresh=True)
        assert resource is not None
        answer = client.apply(obj, dry_run=False, resource=resource)
        assert answer.ok, answer.message
    client.close()


def expected_counts(report: Report, cluster: str) -> tuple[int, int]:
    """How many Flux Kustomizations and HelmReleases the cluster's repository declares."""
    kinds = [o.get("kind") for _, objects in report.cluster_units()[cluster] for o in objects
             if "toolkit.fluxcd.io" in str(o.get("apiVersion"))]
    return kinds.count("Kustomization"), kinds.count("HelmRelease")


def converge(plane: ControlPlane, cluster: str, controllers: Controllers, expected: tuple[int, int],
             timeout: float, until: Callable[[Outcome], bool] | None = None, poll: float = 2.0) -> Outcome:
    """Poll the Ready condition of every Kustomization and HelmRelease until ``expected`` (counts of
    each) are all Ready, ``until`` holds, or ``timeout``; the time each first became Ready is kept."""
    client = Client(plane)
    started = time.perf_counter()
    outcome = Outcome(cluster, 0.0, {}, {}, {}, 0, [])
    while True:
        controllers.check()
        now = time.perf_counter() - started  # one time per poll: what it sees Ready together, it dates together
        for kind, api, into in (("Kustomization", "kustomize.toolkit.fluxcd.io/v1", outcome.kustomizations),
                                ("HelmRelease", "helm.toolkit.fluxcd.io/v2", outcome.helmreleases)):
            resource = client.resource(api, kind, refresh=not into)
            for obj in client.list(resource) if resource else []:
                name = f"{kind} {obj['metadata']['namespace']}/{obj['metadata']['name']}"
                into[name] = _ready(obj)
                if into[name][0]:
                    outcome.ready_at.setdefault(name, now)
        outcome.seconds = time.perf_counter() - started
        counts = (len(outcome.kustomizations), len(outcome.helmreleases))
        if (outcome.converged and counts >= expected) or (until and until(outcome)) or outcome.seconds > timeout:
            break
        time.sleep(poll)
    client.close()
    return outcome


def read_secrets(plane: ControlPlane, refs: list[str]) -> dict[str, dict[str, str]]:
    """The data of Secrets on the API server, decoded ("namespace/name" -> key -> value)."""
    client = Client(plane)
    resource = client.resource("v1", "Secret")
    assert resource is not None
    out = {}
    for ref in refs:
        namespace, name = ref.split("/")
        answer = client.get(resource, name, namespace)
        if answer.ok:
            data = answer.body.get("data") or {}
            out[ref] = {k: base64.b64decode(v).decode() for k, v in data.items()}
    client.close()
    return out


def run(report: Report, repo_dir: Path, cluster: str, work: Path, schemas: list[Path],
        timeout: float = 900.0, edit: Callable[[Path], None] | None = None,
        until: Callable[[Outcome], bool] | None = None, secrets: dict[str, dict[str, str]] | None = None) -> Outcome:
    """Serve a copy of the rendered repository and its charts, start a control plane and the Flux
    controllers, bootstrap ``cluster`` and wait until it converges (or ``timeout``). ``secrets``
    ("namespace/name" -> values) are encrypted for the cluster with `opc secrets set` first, and
    read back from the API server once it converged."""
    from opc import secrets as sops
    from opc.controlplane import ControlPlane

    work.mkdir(parents=True, exist_ok=True)
    repo = work / "repo"
    shutil.copytree(repo_dir, repo)
    keys, _ = sops.init(repo, work / "keys")
    # The README's bootstrap: every Secret the company provides with `opc secrets set`, here with
    # test values (those of ``secrets`` where given).
    declarations, _ = sops.load_declarations(repo_dir)
    needed = sops.statuses(report, declarations)
    encrypted = sops.encrypted_files(repo)  # what `opc secrets init` made already (the telemetry CAs)
    wanted = {f"{s.reference.namespace}/{s.reference.name}": {} for s in needed
              if s.reference.cluster == cluster and s.state == "not set"
              and (cluster, s.reference.namespace, s.reference.name) not in encrypted}
    keys_of = {(d.namespace, d.name): d.keys for d in declarations}
    for ref in wanted:
        namespace, name = ref.split("/")
        wanted[ref] = {key: f"test-{key}" for key in keys_of.get((namespace, name)) or ["value"]}
    for ref, values in {**wanted, **(secrets or {})}.items():
        namespace, name = ref.split("/")
        sops.set_secret(repo, namespace, name, cluster, values)
    provides = {(s.reference.namespace, s.reference.name) for s in needed
                if s.reference.cluster == cluster and s.state in ("runtime", "issued")}
    packages = chart_packages(report, cluster, work / "charts")
    oci_charts: dict[str, str] = {}
    for _, objects in report.cluster_units().get(cluster, []):
        for obj in objects:
            if obj.get("kind") == "OCIRepository":
                oci_charts[obj["metadata"]["name"]] = str(obj["spec"]["url"]).rsplit("/", 1)[-1]
    if edit is not None:
        edit(repo)
    git_root = work / "git"
    git_root.mkdir()
    with git_server(git_root) as git_port, file_server(work / "charts") as helm_port, \
            registry(work / "registry") as oci_port:
        served = Served(f"http://127.0.0.1:{git_port}/repo.git", f"http://127.0.0.1:{helm_port}/",
                        f"127.0.0.1:{oci_port}")
        for chart in sorted(set(oci_charts.values())):
            package = packages.get(chart)
            if package is None:
                continue
            subprocess.run([tools.find("helm"), "push", str(package), f"oci://{served.oci_host}/charts",
                            "--plain-http"], check=True, capture_output=True, text=True)
            version = package.name.removeprefix(f"{chart}-").removesuffix(".tgz")
            served.oci_tags[chart] = version
        patch_for_test(repo, cluster, served, oci_charts)
        source = next(o for _, objects in report.cluster_units()[cluster] for o in objects
                      if o.get("kind") == "GitRepository" and o["metadata"]["name"] == "flux-system")
        publish(repo, git_root, str(source["spec"]["ref"]["branch"]))
        plane = ControlPlane(work / "control-plane", extra_args=WEBHOOKLESS)
        plane.start()
        stand_in = ReadinessStandIn(plane, provides=provides)
        try:
            install_crds(plane, report, cluster, schemas)
            with flux_controllers(plane, work / "flux", instance_args(report, cluster)) as controllers:
                stand_in.start()
                bootstrap(plane, cluster, repo, keys / f"{cluster}.agekey")
                outcome = converge(plane, cluster, controllers, expected_counts(report, cluster), timeout, until)
                outcome.secrets = read_secrets(plane, [*(secrets or {}), "/".join(sops.TELEMETRY_CA)])
        finally:
            stand_in.stop()
            plane.stop()
    outcome.marked = len(stand_in.marked)
    outcome.stand_in_errors = stand_in.errors
    outcome.waiting = dict(stand_in.waiting)
    return outcome
