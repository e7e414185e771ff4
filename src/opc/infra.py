"""Day-0 checks of a rendered repository's ``infra/`` (`opc infra check`), with the real tools:

- ``tofu fmt -check`` over every OpenTofu file;
- per cloud root (``infra/<cloud>/``): ``tofu init -backend=false`` from a local mirror of the
  pinned providers (built from the Go module proxy by `opc tools install`), ``tofu validate``
  (every argument against the provider's real schema), and ``tofu test`` (the root's
  ``tests/*.tftest.hcl``: an apply with a mock provider, which still takes its schema from the
  real one, asserting zones, node counts, images and the Redis address);
- tflint (its bundled terraform ruleset, ``infra/.tflint.hcl``) over every root and module;
- every Sealer Clusterfile (``infra/private/<cluster>/Clusterfile``), decoded strictly into
  Sealer's own Go types by ``clusterfile-check``.

Nothing reaches a cloud: the backend is not initialised, and the roots run in a copy of
``infra/`` so that the repository gets no ``.terraform`` directories or lock files from here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import tools


class InfraError(RuntimeError):
    pass


# provider local name -> (namespace, type, the tool that builds it)
PROVIDERS = {
    "alicloud": ("aliyun", "alicloud", "terraform-provider-alicloud"),
    "tencentcloud": ("tencentcloudstack", "tencentcloud", "terraform-provider-tencentcloud"),
    "huaweicloud": ("huaweicloud", "huaweicloud", "terraform-provider-huaweicloud"),
}
REQUIRED = re.compile(r'source\s*=\s*"([a-z0-9-]+)/([a-z0-9-]+)"\s*\n\s*version\s*=\s*"([^"]+)"')


@dataclass
class Result:
    checks: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message.strip()}")


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    text = (proc.stdout + "\n" + proc.stderr).strip()
    return "\n".join(text.splitlines()[-lines:])


def _default_host(tofu: str, env: dict[str, str]) -> str:
    """The registry host tofu assumes for a provider source without one (the mirror's top folder)."""
    with tempfile.TemporaryDirectory(prefix="opc-tofu-host-") as tmp:
        probe = 'terraform {\n  required_providers {\n    x = { source = "opc/probe" }\n  }\n}\n'
        Path(tmp, "main.tf").write_text(probe)
        proc = _run([tofu, "providers"], Path(tmp), env)
        found = re.search(r"provider\[([^/\]]+)/opc/probe\]", proc.stdout)
        if not found:
            raise InfraError(f"tofu providers did not name the default registry host: {_tail(proc)}")
        return found.group(1)


def _mirror(tofu: str, dirs: list[Path], into: Path, env: dict[str, str]) -> None:
    """A -plugin-dir holding every provider version the OpenTofu files of ``dirs`` pin, linked
    from the cache."""
    host = _default_host(tofu, env)
    pins = {m.groups() for d in dirs for f in d.rglob("*.tf") for m in REQUIRED.finditer(f.read_text(encoding="utf-8"))}
    for namespace, kind, version in sorted(pins):
        tool = next((t for ns, k, t in PROVIDERS.values() if (ns, k) == (namespace, kind)), None)
        if tool is None:
            raise InfraError(f"no pinned build of provider {namespace}/{kind} (opc builds {', '.join(PROVIDERS)})")
        if tools.TOOLS[tool].version != f"v{version}":
            raise InfraError(f"infra pins {namespace}/{kind} {version}, opc builds {tools.TOOLS[tool].version}")
        binary = tools.find(tool)
        target = into / host / namespace / kind / version / "linux_amd64"
        target.mkdir(parents=True, exist_ok=True)
        (target / f"terraform-provider-{kind}_v{version}").symlink_to(binary)


def roots(infra: Path) -> list[Path]:
    """The OpenTofu root modules: infra/<cloud>/ (those with a backend)."""
    return sorted(p.parent for p in infra.glob("*/main.tf") if "backend " in p.read_text(encoding="utf-8"))


def check(repo: Path, progress: Callable[[str], None] = lambda _m: None, only: str | None = None) -> Result:
    """Every check of infra/; ``only``: one cloud (its root and module, and the formatting) or
    "private" (the Clusterfiles)."""
    infra = repo / "infra"
    result = Result()
    if not infra.is_dir():
        raise InfraError(f"{repo} has no infra/ folder")
    tofu, tflint = tools.find("tofu"), tools.find("tflint")
    public = only != "private" and bool(roots(infra))
    with tempfile.TemporaryDirectory(prefix="opc-infra-") as tmp:
        work = Path(tmp) / "infra"
        shutil.copytree(infra, work)
        config = Path(tmp) / "tofurc"
        config.write_text("")  # no credentials helpers, no provider_installation of the machine's own
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TFLINT_"))}
        env.update(TF_CLI_CONFIG_FILE=str(config), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
        plugins = Path(tmp) / "plugins"
        selected = [r for r in roots(work) if public and only in (None, r.name)]
        modules = [m for m in (work / "modules").glob("*") if m.is_dir() and public and only in (None, m.name)]
        if public:
            _mirror(tofu, [*selected, *modules], plugins, env)
            progress("tofu fmt -check")
            result.checks += 1
            proc = _run([tofu, "fmt", "-check", "-recursive", "-no-color", "."], work, env)
            if proc.returncode != 0:
                result.fail("infra", f"not formatted as `tofu fmt` would: {' '.join(proc.stdout.split())}")

        for root in selected:
            name = f"infra/{root.name}"
            progress(f"{name}: tofu init, validate, test")
            result.checks += 3
            proc = _run([tofu, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={plugins}"],
                        root, env)
            if proc.returncode != 0:
                result.fail(name, f"tofu init failed:\n{_tail(proc)}")
                continue
            proc = _run([tofu, "validate", "-json", "-no-color"], root, env)
            report = json.loads(proc.stdout or "{}")
            for diag in report.get("diagnostics", []):
                if diag.get("severity") == "error":
                    rng = diag.get("range") or {}
                    at = f"{rng.get('filename', '?')}:{(rng.get('start') or {}).get('line', '?')}"
                    result.fail(name, f"tofu validate: {at}: {diag.get('summary')}: {diag.get('detail', '')}")
            if proc.returncode != 0 and not report.get("diagnostics"):
                result.fail(name, f"tofu validate failed:\n{_tail(proc)}")
            proc = _run([tofu, "test", "-no-color"], root, env)
            if proc.returncode != 0:
                result.fail(name, f"tofu test failed:\n{_tail(proc)}")

        config_file = work / ".tflint.hcl"
        for module in sorted({*selected, *modules}):
            name = f"infra/{module.relative_to(work)}"
            progress(f"{name}: tflint")
            result.checks += 1
            argv = [tflint, f"--chdir={module}", "--format=compact", "--no-color"]
            if config_file.is_file():
                argv.append(f"--config={config_file}")
            proc = _run(argv, work, env)
            if proc.returncode != 0:
                result.fail(name, f"tflint:\n{_tail(proc)}")

    clusterfiles = sorted(infra.glob("private/*/Clusterfile")) if only in (None, "private") else []
    if clusterfiles:
        progress(f"{len(clusterfiles)} Clusterfile(s): clusterfile-check (Sealer's types)")
        result.checks += len(clusterfiles)
        proc = _run([tools.find("clusterfile-check"), *map(str, clusterfiles)], repo, dict(os.environ))
        for line in proc.stdout.splitlines():
            if not line.endswith(": ok"):
                result.fail("infra/private", line.replace(str(repo) + "/", ""))
        if proc.returncode != 0 and not any(not line.endswith(": ok") for line in proc.stdout.splitlines()):
            result.fail("infra/private", f"clusterfile-check failed:\n{_tail(proc)}")
    return result
