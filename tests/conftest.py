"""Shared fixtures: a clean git snapshot of the template, rendering, the pinned charts and the
CRD schemas no chart carries.

Offline test data lives beside the checkout in ../shared when it exists (charts/, crd-schemas/);
without it, charts are pulled from their repositories and CRD sources fetched, as a company's CI
does. Before anything runs, a preflight makes sure every pinned chart and every schema can be had,
and otherwise stops the session with one line saying what to provide.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opc.validate import ChartOptions

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE_PARTS = ("copier.yml", "template", "includes", "hooks")


SHARED = ROOT.parent / "shared"
# Pinned charts whose exact release is in no offline source: the nearest earlier release of the
# same chart stands in, declared (the summary names it), for checks of structure only.
SUBSTITUTES = {"flux-operator-0.59.0": "flux-operator-0.49.0"}


def schema_dirs() -> list[Path]:
    """Schema directories for CRDs no chart carries: $OPC_SCHEMA_DIR, else ../shared/crd-schemas
    where it exists (else none: crd-sources.yaml is fetched)."""
    if os.environ.get("OPC_SCHEMA_DIR"):
        return [Path(p) for p in os.environ["OPC_SCHEMA_DIR"].split(os.pathsep) if p]
    shared = SHARED / "crd-schemas"
    return [shared] if shared.is_dir() else []


def catalog() -> Any:
    """The template's release catalogue (includes/catalog.jinja), as data."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT), autoescape=False)  # noqa: S701 - YAML, not HTML
    return env.get_template("includes/catalog.jinja").module


def _chart_options() -> ChartOptions:
    """Chart directories (opc itself reads $OPC_CHART_DIR; ../shared/charts where it exists) and
    the substitutes needed for pinned charts that can be had from nowhere."""
    from opc.charts import ChartError, ChartRef, ChartStore, chart_dirs

    dirs = [Path(p) for p in os.environ.get("OPC_CHART_DIR", "").split(os.pathsep) if p]
    dirs += [SHARED / "charts"] if (SHARED / "charts").is_dir() else []
    module = catalog()
    store = ChartStore(chart_dirs(dirs), pull=True)
    substitutes: dict[str, Path] = {}
    missing = []
    for release in module.releases.values():
        ref = ChartRef(release["chart"], release["version"], module.helm_repositories[release["repository"]])
        if store.find(ref):
            continue
        try:
            store.get(ref)
        except ChartError as exc:
            stand_in = next((d / SUBSTITUTES[ref.dirname] for d in dirs if ref.dirname in SUBSTITUTES
                             and (d / SUBSTITUTES[ref.dirname]).is_dir()), None)
            if stand_in is None:
                missing.append((ref.dirname, str(exc)))
            else:
                substitutes[ref.dirname] = stand_in
    if missing:
        pytest.exit(f"the pinned charts {', '.join(name for name, _ in missing)} can be had from no chart directory "
                    f"and not pulled: put them in OPC_CHART_DIR as <chart>-<version>/ (first failure: {missing[0][1]})",
                    returncode=2)
    return ChartOptions(dirs, pull=True, substitutes=substitutes)


def _schemas_available() -> None:
    """Every CRD source the fixtures need can be fetched, unless a schema directory has it."""
    from opc.crds import CrdSource, SourceError, fetch

    dirs = schema_dirs()
    for source in catalog().crd_sources:
        if any((d / group).is_dir() for d in dirs for group in source["groups"]):
            continue
        try:
            fetch(CrdSource(tuple(source["groups"]), source.get("module", ""), source.get("version", ""),
                            tuple(source.get("paths") or ()), source.get("url", "")))
        except SourceError as exc:
            pytest.exit(f"the schemas of {', '.join(source['groups'])} can be had from nowhere: put them in "
                        f"OPC_SCHEMA_DIR ({{group}}/{{kind}}_{{version}}.json) or allow access ({exc})", returncode=2)


@pytest.fixture(scope="session")
def charts() -> ChartOptions:
    return _chart_options()


def pytest_sessionstart(session: pytest.Session) -> None:
    if getattr(session.config, "workerinput", None) is None:  # once, in the controller
        _chart_options()
        _schemas_available()



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
def schemas() -> list[Path]:
    return schema_dirs()


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
def rendered(template_repo: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """Render a fixture once per session, for every worker: rendered('valid/all-clouds-flux.yml')
    -> path (read only: tests that change a render use rendered_copy)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "rendered"  # the session's, under xdist
    shared.mkdir(exist_ok=True)
    cache: dict[str, Path] = {}

    def _render(name: str) -> Path:
        if name not in cache:
            stem = name.removesuffix(".yml").replace("/", "-")
            dest = shared / stem / "repo"
            with open(shared / f"{stem}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one worker renders, the others wait for it
                if not (shared / f"{stem}.done").exists():
                    if dest.exists():
                        shutil.rmtree(dest)  # what a worker that failed half-way left
                    render(template_repo, dest, load_fixture(FIXTURES / name) if name != "defaults" else {})
                    (shared / f"{stem}.done").touch()
            cache[name] = dest
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
