"""Shared fixtures: a clean git snapshot of the template, rendering, and the CRD schemas."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE_PARTS = ("copier.yml", "template", "includes", "hooks")


def schema_dir() -> Path:
    """The CRD schemas the tests validate against ($OPC_SCHEMA_DIR, else ../shared/crd-schemas)."""
    path = Path(os.environ.get("OPC_SCHEMA_DIR", ROOT.parent / "shared" / "crd-schemas"))
    if not path.is_dir():
        raise RuntimeError(f"CRD schemas not found at {path}; set OPC_SCHEMA_DIR")
    return path


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "opc tests", "GIT_AUTHOR_EMAIL": "tests@opc.invalid",
           "GIT_COMMITTER_NAME": "opc tests", "GIT_COMMITTER_EMAIL": "tests@opc.invalid",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def snapshot_template(dest: Path) -> Path:
    """Copy the template's files (working tree, uncommitted changes included) into a fresh repo."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / part)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "template snapshot")
    return dest


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def schemas() -> Path:
    return schema_dir()


def render(template: Path, dest: Path, answers: dict[str, Any]) -> Path:
    import copier

    copier.run_copy(str(template), dest, data=answers, defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    return dest


def load_fixture(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def fixture_header(path: Path, key: str) -> str | None:
    """The value of a `# key: value` comment at the top of a fixture file."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        name, _, value = line[1:].strip().partition(":")
        if name.strip() == key:
            return value.strip()
    return None


@pytest.fixture(scope="session")
def rendered(template_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    """Render a fixture once per session: rendered('valid/all-clouds-flux.yml') -> path."""
    cache: dict[str, Path] = {}

    def _render(name: str) -> Path:
        if name not in cache:
            answers = load_fixture(FIXTURES / name) if name != "defaults" else {}
            dest = tmp_path_factory.mktemp(Path(name).stem) / "repo"
            cache[name] = render(template_repo, dest, answers)
        return cache[name]

    return _render


@pytest.fixture
def rendered_copy(rendered, tmp_path: Path):
    """A writable copy of a rendered fixture, for tests that break it: rendered_copy(name) -> path."""
    def _copy(name: str) -> Path:
        dest = tmp_path / "repo"
        shutil.copytree(rendered(name), dest)
        return dest

    return _copy


def releases() -> dict:
    return yaml.safe_load((ROOT / "releases.yml").read_text())


def released_template(dest: Path) -> Path:
    """A clone of this repository with the release tags of releases.yml re-created, and the
    working tree (the code under test) committed on top and tagged as the next version."""
    data = releases()
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    for version, commit in data["releases"].items():
        try:
            git(dest, "cat-file", "-e", f"{commit}^{{commit}}")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"release {version} ({commit}) is not in this clone; a full (not shallow) "
                               "clone of the repository is needed") from exc
        git(dest, "tag", "-f", version, commit)
    for part in (*TEMPLATE_PARTS, "releases.yml"):
        target = dest / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, target)
    git(dest, "add", "-A")
    if git(dest, "status", "--porcelain"):
        git(dest, "commit", "-q", "-m", "working tree under test")
    git(dest, "tag", "-f", data["next"])
    return dest
