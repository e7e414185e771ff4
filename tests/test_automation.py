"""The rendered repository's automation: workflows pass actionlint, the pre-commit configuration
is valid, the secret guard refuses plaintext Secrets, Renovate knows where the charts are."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT


def actionlint() -> str:
    exe = shutil.which("actionlint", path=str(ROOT / ".tools" / "bin")) or shutil.which("actionlint")
    if exe is None:
        pytest.fail("actionlint is not installed: run scripts/install-tools")
    return exe


@pytest.mark.parametrize("fixture", ["valid/all-clouds-flux.yml", "valid/three-services.yml", "valid/tencent-dev-argocd.yml"])
def test_workflows_lint_clean(fixture: str, rendered):
    repo = rendered(fixture)
    workflows = sorted((repo / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["services.yml", "template-update.yml", "validate.yml"]
    result = subprocess.run([actionlint(), "-no-color", *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load((repo / ".github/workflows/services.yml").read_text())
    names = [s["name"] for s in yaml.safe_load((repo / ".copier-answers.yml").read_text())["services"]]
    assert services["jobs"]["build"]["strategy"]["matrix"]["service"] == names
    action = yaml.safe_load((repo / ".github/actions/setup-opc/action.yml").read_text())
    steps = [s for w in workflows for job in yaml.safe_load(w.read_text())["jobs"].values() for s in job["steps"]]
    for step in steps + action["runs"]["steps"]:
        if "uses" in step and not step["uses"].startswith("./"):  # other repositories' actions: a release
            assert step["uses"].count("@v") == 1 and step["uses"].split("@v")[1].count(".") == 2, step["uses"]
    assert any(s.get("uses") == "./.github/actions/setup-opc" for s in steps)


def test_actionlint_catches_a_broken_workflow(rendered, tmp_path: Path):
    broken = tmp_path / "validate.yml"
    text = (rendered("valid/all-clouds-flux.yml") / ".github/workflows/validate.yml").read_text()
    broken.write_text(text.replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-24.04\n    step:\n      - run: x", 1))
    result = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "step" in result.stdout


def test_pre_commit_configuration_is_valid(rendered):
    repo = rendered("valid/aliyun-prod-flux.yml")
    result = subprocess.run([sys.executable, "-m", "pre_commit", "validate-config", ".pre-commit-config.yaml"],
                            cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_yaml_hooks_pass_every_rendered_yaml_file(rendered, tmp_path: Path):
    """The rendered check-yaml hooks, run as pre-commit selects their files, pass on a render with
    databases; the strict one alone would refuse the ShardingSphere rules (their !TAGS)."""
    repo = rendered("valid/three-services.yml")
    config = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())
    hooks = [h for r in config["repos"] for h in r["hooks"] if h["id"] == "check-yaml"]
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.suffix in (".yaml", ".yml")
                   and ".git" not in p.parts)
    tagged = [f for f in files if f.endswith("/shardingsphere.yaml")]
    assert len(tagged) == 2 and len(hooks) == 2
    for hook in hooks:
        chosen = [f for f in files if re.search(hook.get("files", ""), f) and not re.search(hook.get("exclude", "^$"), f)]
        assert chosen, hook
        result = subprocess.run([sys.executable, "-m", "pre_commit_hooks.check_yaml", *hook.get("args", []), *chosen],
                                cwd=repo, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(f for h in hooks for f in files if re.search(h.get("files", ""), f)
                  and not re.search(h.get("exclude", "^$"), f)) == files  # every file, once
    strict = subprocess.run([sys.executable, "-m", "pre_commit_hooks.check_yaml", "--allow-multiple-documents", tagged[0]],
                            cwd=repo, capture_output=True, text=True)
    assert strict.returncode == 1 and "READWRITE_SPLITTING" in strict.stdout


def test_secret_guard(rendered, tmp_path: Path):
    script = rendered("valid/aliyun-prod-flux.yml") / "scripts" / "check-secrets.py"
    plain = tmp_path / "plain.yaml"
    plain.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\n"
                     "metadata: {name: db}\nstringData: {password: hunter2}\n")
    encrypted = tmp_path / "encrypted.yaml"
    encrypted.write_text("---\napiVersion: v1\nkind: Secret\nmetadata: {name: db}\ndata: {password: 'ENC[AES256_GCM,data:x]'}\n"
                         "sops: {version: 3.13.2, mac: 'ENC[AES256_GCM,data:y]'}\n")
    half = tmp_path / "half.yaml"  # SOPS metadata, but one value left in the clear
    half.write_text("---\napiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
                    "stringData: {user: admin, password: 'ENC[AES256_GCM,data:x]'}\nsops: {mac: 'ENC[AES256_GCM,data:y]'}\n")
    unencrypted = tmp_path / "db.sops.yaml"  # named for SOPS, never encrypted
    unencrypted.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {password: hunter2}\n")
    sealed = tmp_path / "ns.db.sealed.yaml"
    sealed.write_text("---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: ns}\n"
                      "spec:\n  encryptedData: {password: AgBy3i4OJSWK}\n  template: {metadata: {name: db}}\n")
    # a SealedSecret whose template carries a value in the clear (the controller copies it as is)
    leaky = tmp_path / "ns.leaky.sealed.yaml"
    leaky.write_text("---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: leaky}\n"
                     "spec:\n  encryptedData: {password: AgBy3i4OJSWK}\n  template: {data: {user: YWRtaW4=}}\n")
    run = lambda *files: subprocess.run([sys.executable, str(script), *map(str, files)], capture_output=True, text=True)  # noqa: E731
    refused = run(plain, encrypted, half, unencrypted, sealed, leaky)
    assert refused.returncode == 1, refused.stdout
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in refused.stdout.splitlines()) == [
        "db.sops.yaml", "half.yaml", "ns.leaky.sealed.yaml", "plain.yaml"], refused.stdout
    assert "Secret db is not encrypted" in refused.stdout
    assert run(encrypted, sealed).returncode == 0


def test_renovate_knows_the_chart_files(rendered):
    config = json.loads((rendered("valid/aliyun-prod-flux.yml") / "renovate.json").read_text())
    assert config["flux"]["managerFilePatterns"] and config["argocd"]["managerFilePatterns"]
    assert all(p.startswith("/") and p.endswith("/") for m in ("flux", "argocd") for p in config[m]["managerFilePatterns"])


# --- the rendered repository's own CI, run as written -----------------------------------------
def _expression(text: str, env: dict[str, str]) -> str:
    """The GitHub Actions expressions a step of ours uses: env.X, vars.X (unset here), 'literal'
    and ||; anything else is a test failure, not a guess."""
    def evaluate(expr: str) -> str:
        for term in (t.strip() for t in expr.split("||")):
            if term.startswith("'") and term.endswith("'"):
                value = term[1:-1]
            elif term.startswith("env."):
                value = env.get(term[4:], "")
            elif term.startswith("vars."):
                value = ""
            else:
                pytest.fail(f"no evaluation for the expression {expr!r}")
            if value:
                return value
        return ""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: evaluate(m.group(1)), text)


def _steps(repo: Path, workflow: str, job: str) -> list[dict]:
    """A job's steps, local composite actions expanded, with the workflow's env on each."""
    data = yaml.safe_load((repo / ".github/workflows" / workflow).read_text())
    out = []
    for step in data["jobs"][job]["steps"]:
        uses = step.get("uses", "")
        if uses.startswith("./"):
            action = yaml.safe_load((repo / uses / "action.yml").read_text())
            out.extend(action["runs"]["steps"])
        else:
            out.append(step)
    return [{**s, "env": {**(data.get("env") or {}), **(s.get("env") or {})}} for s in out]


def _full_checkout(dest: Path) -> Path:
    """This repository as it stands (working tree included), as a git repository at a release tag."""
    from conftest import git, releases

    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    ignored = shutil.ignore_patterns(".git", ".venv", ".tools", ".cache", "__pycache__", ".mypy_cache", ".ruff_cache",
                                     ".pytest_cache")
    shutil.copytree(ROOT, dest, ignore=ignored, dirs_exist_ok=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "--allow-empty", "-m", "working tree under test")
    git(dest, "tag", "-f", releases()["next"])
    return dest


JOBS = {
    "validate": ["Install opc", "Build the tools opc runs (helm, vela), unless cached", "Validate"],
    "verify": ["Install opc", "Build the tools opc runs (helm, vela), unless cached",
               "Build etcd and kube-apiserver, unless cached", "Verify against a real API server"],
}


@pytest.mark.slow
def test_rendered_validate_workflow_runs_as_written(tmp_path: Path, schemas, charts):
    """Each job of the validate workflow of a fresh render, step by step in a shell, with opc
    installed the way the job installs it: from the template's git URL at the rendered version
    (here a local one). The verify job applies the repository to the real kube-apiserver it
    builds. The jobs run one after the other on one runner Python (the second job's install
    finds opc there and installs it again as written)."""
    from conftest import releases

    from opc.render import render_new

    template = _full_checkout(tmp_path / "opc")
    rendered = render_new(tmp_path / "company", {"gitops": "argocd", "clouds": ["tencent"], "environments": ["dev"]},
                          template=f"git+file://{template}", vcs_ref=releases()["next"], quiet=True)
    answers = yaml.safe_load((rendered / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == f"git+file://{template}"
    venv = tmp_path / "runner-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # actions/setup-python
    path = f"{venv / 'bin'}:{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"
    # what a company sets as repository variables where the chart repositories are out of reach
    extra = {"OPC_CHART_DIR": os.pathsep.join(map(str, charts.dirs)), "OPC_SCHEMA_DIR": os.pathsep.join(map(str, schemas))}
    for job in sorted(JOBS):
        repo = shutil.copytree(rendered, tmp_path / job)  # actions/checkout, on a fresh runner's disk
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        ran = []
        for step in _steps(repo, "validate.yml", job):
            uses = step.get("uses", "")
            if uses:
                assert uses.split("@")[0] in {"actions/checkout", "actions/setup-python", "actions/setup-go",
                                              "actions/cache"}, uses  # provided by the runner here
                continue
            env = {**os.environ, "PATH": path, **extra}
            env.update({k: _expression(str(v), env) for k, v in step["env"].items()})
            result = subprocess.run(["bash", "-e", "-c", _expression(step["run"], env)], cwd=repo, env=env,
                                    capture_output=True, text=True, timeout=1800)
            assert result.returncode == 0, (f"job {job}, step {step.get('name')}:\n{result.stdout[-3000:]}\n"
                                            f"{result.stderr[-3000:]}")
            ran.append(step.get("name"))
        assert ran == JOBS[job]
    assert (venv / "bin" / "opc").is_file()
