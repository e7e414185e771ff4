"""The external programs opc runs, pinned, built from the Go module proxy once per machine and
cached by version (``$OPC_TOOLS_CACHE``, default ``~/.cache/opc/tools``).

`opc tools install [NAME...]` builds what is missing; a command uses a cached build, else the
same program on PATH. kustomize is not built: kubectl's built-in one serves (see kustomize.py).

helm and vela (what `opc validate` runs) are single `go install`/`go build` runs. The control
plane of `opc verify` (etcd, kube-apiserver) and the Flux controllers the test-suite runs come
from Go modules shipped in this package (``gomod/<set>/go.mod`` and ``go.sum``): one module per
set lets Go resolve one version of every shared dependency and compile it once for all the set's
programs. There are two sets because a Go module holds one version of k8s.io/api: the API
server is the Kubernetes line the platform targets (1.34), and Flux 2.9's controllers need the
1.36 libraries. A set's cache directory is named by the digest of its go.mod and go.sum, so a
changed pin rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ToolMissing(RuntimeError):
    pass


def cache_root() -> Path:
    explicit = os.environ.get("OPC_TOOLS_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opc" / "tools"


def _go(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    if shutil.which("go") is None:
        raise ToolMissing("Go is needed to build opc's tools from the Go module proxy (go.dev/dl)")
    proc = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, "GOFLAGS": "-mod=mod", **(env or {})})
    if proc.returncode != 0:
        raise ToolMissing(f"go {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def module_dir(module: str, version: str) -> Path:
    """The source of a Go module version, downloaded from the module proxy (read-only)."""
    info = json.loads(_go("mod", "download", "-json", f"{module}@{version}"))
    return Path(info["Dir"])


# Compiler flags, by how much work a program does when opc runs it. A program run briefly (a
# CLI that evaluates a few files) is compiled without optimisations: the compiler does about a
# third less work (kubeseal: 148 -> 104 CPU-s), and the program's run is too short to notice. A
# program the tests keep busy (the API server, the controllers, helm, tofu) is optimised, but
# the compiler emits no debug information, which the linker's -w would discard anyway (-7%).
BRIEF = "all=-N -l"
BUSY = "all=-dwarf=false"


def _build_helm(tool: Tool, out: Path) -> None:
    # The release's version stamp, so that `helm version` tells what it is.
    _go("install", "-trimpath", f"-gcflags={BUSY}",
        f"-ldflags=-s -w -X helm.sh/helm/v3/internal/version.version={tool.version}",
        f"helm.sh/helm/v3/cmd/helm@{tool.version}", env={"GOBIN": str(out)})


def _build_main_module(module: str, version: str, package: str, binary: Path, ldflags: str, gcflags: str,
                       env: dict[str, str] | None = None, replace: tuple[str, ...] = ()) -> None:
    """Build ``package`` of a module version as the main module, from a writable copy of its
    source (for modules `go install` refuses); ``replace``: old@version=new@version edits of its
    go.mod, for a dependency version the module proxy does not serve."""
    with tempfile.TemporaryDirectory(prefix="opc-src-") as tmp:
        src = Path(tmp) / "src"
        info = json.loads(_go("mod", "download", "-json", f"{module}@{version}", env=env))
        shutil.copytree(info["Dir"], src)
        for path in src.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        for edit in replace:
            _go("mod", "edit", f"-replace={edit}", cwd=src)
        _go("build", "-trimpath", "-gcflags", gcflags, "-ldflags", ldflags, "-o", str(binary), package, cwd=src,
            env=env)


def _build_vela(tool: Tool, out: Path) -> None:
    # `go install` refuses the module (replace directives).
    _build_main_module("github.com/oam-dev/kubevela", tool.version, "./references/cmd/cli", out / "vela",
                       f"-s -w -X github.com/oam-dev/kubevela/version.VelaVersion={tool.version}", BRIEF)


def _build_kubeseal(tool: Tool, out: Path) -> None:
    # The module is served as github.com/bitnami-labs/sealed-secrets but declares
    # github.com/bitnami/sealed-secrets, which `go install` refuses.
    _build_main_module("github.com/bitnami-labs/sealed-secrets", tool.version, "./cmd/kubeseal", out / "kubeseal",
                       f"-s -w -X main.VERSION={tool.version}", BRIEF)


def _build_kube_score(tool: Tool, out: Path) -> None:
    _go("install", "-trimpath", f"-gcflags={BRIEF}", f"-ldflags=-s -w -X main.version={tool.version.lstrip('v')}",
        f"github.com/zegl/kube-score/cmd/kube-score@{tool.version}", env={"GOBIN": str(out)})


def _build_tofu(tool: Tool, out: Path) -> None:
    # `go install` refuses the module (a replace directive for hcl); version.dev=no makes it a
    # release build, which `tofu version` reports as such.
    _build_main_module("github.com/opentofu/opentofu", tool.version, "./cmd/tofu", out / "tofu",
                       "-s -w -X github.com/opentofu/opentofu/version.dev=no", BUSY)


def _build_provider(module: str, trusted_sum: str = "", replace: tuple[str, ...] = ()) -> Callable[[Tool, Path], None]:
    """An OpenTofu provider built from its Go module (tofu installs it from infra.py's mirror).

    ``trusted_sum``: for a module version the Go checksum database does not know, the hash it had
    when opc first pinned it (trust on first use); the download must match it exactly.
    ``replace``: dependency versions the module proxy does not serve, and the nearest it does."""
    def build(tool: Tool, out: Path) -> None:
        if trusted_sum:
            info = json.loads(_go("mod", "download", "-json", f"{module}@{tool.version}", env={"GONOSUMDB": module}))
            if info.get("Sum") != trusted_sum:
                raise ToolMissing(f"{module}@{tool.version} has hash {info.get('Sum')}, not the {trusted_sum} "
                                  "opc recorded when it pinned it: refusing to build it")
        # Brief: opc runs a provider only for its schema and checks.
        _build_main_module(module, tool.version, ".", out / tool.name, "-s -w", BRIEF,
                           env={"GONOSUMDB": module} if trusted_sum else None, replace=replace)
    return build


def _build_tflint(tool: Tool, out: Path) -> None:
    _go("install", "-trimpath", f"-gcflags={BRIEF}", "-ldflags=-s -w",
        f"github.com/terraform-linters/tflint@{tool.version}", env={"GOBIN": str(out)})


def _build_checkov(tool: Tool, out: Path) -> None:
    from .audit import AuditError, install_checkov

    try:
        install_checkov(out)
    except AuditError as exc:
        raise ToolMissing(str(exc)) from exc


GOMOD = Path(__file__).parent / "gomod"


@dataclass(frozen=True)
class ToolSet:
    """Programs built together from one Go module of this package (``gomod/<name>``)."""

    name: str
    version: str  # what the set pins, for people
    programs: tuple[tuple[str, str, str], ...]  # (binary, package, extra -ldflags)

    @property
    def module(self) -> Path:
        return GOMOD / self.name

    @property
    def digest(self) -> str:
        text = b"".join(f.read_bytes() for f in self.files)
        return hashlib.sha256(text).hexdigest()[:12]

    @property
    def files(self) -> list[Path]:
        """go.mod, go.sum and the set's own programs (``*.go``), if any."""
        return sorted(f for f in self.module.iterdir() if f.name in ("go.mod", "go.sum") or f.suffix == ".go")

    @property
    def home(self) -> Path:
        return cache_root() / f"{self.name}-{self.digest}"


def _command_name(package: str) -> str:
    """The file name `go build -o DIR/` gives the program of ``package``: its last path element,
    or the one before a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = package.split("/")
    return parts[-2] if len(parts) > 1 and re.fullmatch(r"v[2-9][0-9]*", parts[-1]) else parts[-1]


def _build_set(tool: Tool, out: Path) -> None:
    """The set's programs, those with the same -ldflags in one `go build`: the shared packages
    compile once, and the programs link side by side (a link uses one core)."""
    assert tool.toolset is not None
    groups: dict[str, list[tuple[str, str]]] = {}
    for binary, package, ldflags in tool.toolset.programs:
        groups.setdefault(ldflags, []).append((binary, package))
    with tempfile.TemporaryDirectory(prefix=f"opc-{tool.toolset.name}-") as tmp:
        for file in tool.toolset.files:  # the module is read-only where opc is installed
            shutil.copy(file, Path(tmp) / file.name)
        for index, (ldflags, members) in enumerate(groups.items()):
            flags = ("-trimpath", f"-gcflags={BUSY}", f"-ldflags=-s -w {ldflags}".strip())
            if len(members) == 1:
                _go("build", *flags, "-o", str(out / members[0][0]), members[0][1], cwd=Path(tmp))
                continue
            staged = Path(tmp) / f"bin-{index}"
            staged.mkdir()
            _go("build", *flags, "-o", f"{staged}{os.sep}", *[package for _, package in members], cwd=Path(tmp))
            for binary, package in members:
                (staged / _command_name(package)).rename(out / binary)


KUBERNETES = "v1.34.4"
_K8S_VERSION = " ".join(f"-X k8s.io/component-base/version.{key}={value}" for key, value in (
    ("gitVersion", KUBERNETES), ("gitMajor", "1"), ("gitMinor", KUBERNETES.split(".")[1]),
    ("gitTreeState", "clean")))
CONTROL_PLANE = ToolSet("control-plane", f"kubernetes {KUBERNETES}, etcd v3.6.16", (
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", _K8S_VERSION),
    ("etcd", "go.etcd.io/etcd/server/v3", ""),
))
FLUX = ToolSet("flux", "Flux 2.9: source-controller v1.9.5, kustomize-controller v1.9.5, helm-controller v1.6.4; "
               "registry v3.1.2; sops v3.13.2, age v1.3.1", (
    ("registry", "github.com/distribution/distribution/v3/cmd/registry", ""),
    ("sops", "github.com/getsops/sops/v3/cmd/sops", ""),
    ("age", "filippo.io/age/cmd/age", "-X main.Version=v1.3.1"),
    ("age-keygen", "filippo.io/age/cmd/age-keygen", "-X main.Version=v1.3.1"),
    ("source-controller", "github.com/fluxcd/source-controller", ""),
    ("kustomize-controller", "github.com/fluxcd/kustomize-controller", ""),
    ("helm-controller", "github.com/fluxcd/helm-controller", ""),
))
# The strict Clusterfile checker (gomod/sealer/main.go): decodes each document into Sealer's own
# Go types, refusing unknown fields.
SEALER = ToolSet("sealer", "Sealer v0.11.0 types", (("clusterfile-check", ".", ""),))
SETS = {s.name: s for s in (CONTROL_PLANE, FLUX, SEALER)}


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    build: Callable[[Tool, Path], None]
    version_args: tuple[str, ...]
    toolset: ToolSet | None = None
    source: str = "the Go module proxy"

    @property
    def home(self) -> Path:
        if self.toolset is not None:
            return self.toolset.home
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def cached(self) -> Path:
        return self.home / self.name


TOOLS = {
    "helm": Tool("helm", "v3.22.0", _build_helm, ("version", "--short")),
    "vela": Tool("vela", "v1.10.9", _build_vela, ("version",)),
    "etcd": Tool("etcd", "v3.6.16", _build_set, ("--version",), CONTROL_PLANE),
    "kube-apiserver": Tool("kube-apiserver", KUBERNETES, _build_set, ("--version",), CONTROL_PLANE),
    "source-controller": Tool("source-controller", "v1.9.5", _build_set, (), FLUX),
    "kustomize-controller": Tool("kustomize-controller", "v1.9.5", _build_set, (), FLUX),
    "helm-controller": Tool("helm-controller", "v1.6.4", _build_set, (), FLUX),
    "registry": Tool("registry", "v3.1.2", _build_set, ("--version",), FLUX),
    "sops": Tool("sops", "v3.13.2", _build_set, ("--version", "--disable-version-check"), FLUX),
    "age": Tool("age", "v1.3.1", _build_set, ("--version",), FLUX),
    "age-keygen": Tool("age-keygen", "v1.3.1", _build_set, ("--version",), FLUX),
    "kubeseal": Tool("kubeseal", "v0.39.1", _build_kubeseal, ("--version",)),
    # the audit's scanners (opc audit): kube-score from the Go module proxy, checkov from PyPI
    "kube-score": Tool("kube-score", "v1.20.0", _build_kube_score, ("version",)),
    "checkov": Tool("checkov", "3.3.30", _build_checkov, ("--version",), source="PyPI"),
    # day 0 (opc infra): OpenTofu, the one cloud provider the module proxy serves, tflint and the
    # Clusterfile checker
    "tofu": Tool("tofu", "v1.10.10", _build_tofu, ("version",)),
    "terraform-provider-alicloud": Tool("terraform-provider-alicloud", "v1.240.0",
                                        _build_provider("github.com/aliyun/terraform-provider-alicloud"), ()),
    # The newest release whose dependencies the module proxy serves but one: its WAF SDK v1.0.802
    # (not served) is built at v1.0.800; the provider's schema is its own code, not the SDK's.
    "terraform-provider-tencentcloud": Tool("terraform-provider-tencentcloud", "v1.81.50", _build_provider(
        "github.com/tencentcloudstack/terraform-provider-tencentcloud",
        replace=("github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/waf@v1.0.802="
                 "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/waf@v1.0.800",)), ()),
    # Served by the module proxy but unknown to the checksum database: pinned to the hash it had
    # on 2026-12-01 (trust on first use).
    "terraform-provider-huaweicloud": Tool("terraform-provider-huaweicloud", "v1.71.0", _build_provider(
        "github.com/huaweicloud/terraform-provider-huaweicloud",
        trusted_sum="h1:p23i73Mx220Od4e++y0FQr/6000W7W1ySDgXay99mSI="), ()),
    "tflint": Tool("tflint", "v0.64.0", _build_tflint, ("--version",)),
    "clusterfile-check": Tool("clusterfile-check", "v0.11.0", _build_set, (), SEALER),
}
# What `opc tools install` builds without names: what `opc validate` runs.
DEFAULT = ("helm", "vela")


def expand(names: tuple[str, ...] | list[str]) -> list[str]:
    """Tool names, with set names (control-plane, flux) replaced by their programs."""
    out: list[str] = []
    for name in names or DEFAULT:
        members = [t.name for t in TOOLS.values() if t.toolset is not None and t.toolset.name == name]
        if not members and name not in TOOLS:
            known = ", ".join([*TOOLS, *SETS])
            raise ToolMissing(f"unknown tool '{name}' (known: {known})")
        out += [m for m in members or [name] if m not in out]
    return out


def find(name: str) -> str:
    """The pinned build if it is cached, else the program on PATH."""
    tool = TOOLS[name]
    if tool.cached.is_file() and (tool.home / ".built").is_file():
        return str(tool.cached)
    found = shutil.which(name)
    if found:
        return found
    target = tool.toolset.name if tool.toolset else name
    raise ToolMissing(f"{name} {tool.version} is needed: run `opc tools install {target}` (it builds it from "
                      f"{tool.source} into {tool.home}) or put {name} on PATH")


def install(name: str, progress: Callable[[str], None] = lambda _m: None) -> tuple[Path, float | None]:
    """Build ``name`` into the cache unless it is there; returns its path and the build seconds
    (None when it was cached)."""
    tool = TOOLS[name]
    if (tool.home / ".built").is_file():
        return tool.cached, None
    tool.home.parent.mkdir(parents=True, exist_ok=True)
    what = f"{tool.toolset.name} ({tool.toolset.version})" if tool.toolset else f"{name} {tool.version}"
    progress(f"building {what} from {tool.source} into {tool.home} (once per machine)")
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.home.name}.", dir=tool.home.parent))
    try:
        tool.build(tool, staging)
        (staging / ".built").write_text(tool.version + "\n")
        staging.chmod(0o755)
        if tool.home.exists():
            shutil.rmtree(tool.home)
        staging.rename(tool.home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return tool.cached, time.perf_counter() - started


def describe(name: str) -> str:
    tool = TOOLS[name]
    try:
        path = find(name)
    except ToolMissing:
        return f"{name:20} {tool.version:10} missing (opc tools install {tool.toolset.name if tool.toolset else name})"
    if not tool.version_args:  # the Flux controllers print no version; the set's module pins it
        return f"{name:20} {tool.version:10} {path}"
    proc = subprocess.run([path, *tool.version_args], capture_output=True, text=True, check=False)
    reported = ((proc.stdout or proc.stderr).strip().splitlines() or ["?"])[0]
    return f"{name:20} {tool.version:10} {path} ({reported})"
