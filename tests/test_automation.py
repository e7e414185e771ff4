"""The rendered repository's automation: workflows pass actionlint, the pre-commit configuration
is valid, the secret guard refuses plaintext Secrets, Renovate knows where the charts are."""

from __future__ import annotations

import json
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
    for workflow in workflows:
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert step["uses"].count("@v") == 1 and step["uses"].split("@v")[1].count(".") == 2, step["uses"]


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


def test_secret_guard(rendered, tmp_path: Path):
    script = rendered("valid/aliyun-prod-flux.yml") / "scripts" / "check-secrets.py"
    plain = tmp_path / "plain.yaml"
    plain.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\n"
                     "metadata: {name: db}\nstringData: {password: hunter2}\n")
    encrypted = tmp_path / "encrypted.yaml"
    encrypted.write_text("---\napiVersion: v1\nkind: Secret\nmetadata: {name: db}\ndata: {password: ENC[AES256_GCM,data:x]}\n"
                         "sops: {version: 3.9.0}\n")
    run = lambda *files: subprocess.run([sys.executable, str(script), *map(str, files)], capture_output=True, text=True)  # noqa: E731
    refused = run(plain, encrypted)
    assert refused.returncode == 1 and "Secret db is plaintext" in refused.stdout and "encrypted.yaml" not in refused.stdout
    assert run(encrypted).returncode == 0


def test_renovate_knows_the_chart_files(rendered):
    config = json.loads((rendered("valid/aliyun-prod-flux.yml") / "renovate.json").read_text())
    assert config["flux"]["managerFilePatterns"] and config["argocd"]["managerFilePatterns"]
    assert all(p.startswith("/") and p.endswith("/") for m in ("flux", "argocd") for p in config[m]["managerFilePatterns"])
