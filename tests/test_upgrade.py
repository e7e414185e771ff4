"""Upgrades: from every release to the version under development, a project with local edits is
updated with `opc update`; no edit is lost, conflicts fail the command, removals are reported.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import git, released_template, releases
from packaging.version import Version

from opc.cli import main
from opc.render import render_new
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS

RELEASES = list(releases()["releases"])
NEXT = releases()["next"]
MIGRATIONS = yaml.safe_load((Path(__file__).resolve().parents[1] / "hooks" / "migrations.yml").read_text())
REMOVED = "infrastructure/controllers/istio/manifests/namespaces.yaml"  # split into one file per namespace
MOVED = ("platform/kubevela/grpc-service.yaml", "platform/kubevela/definitions/grpc-service.yaml")
UNCHANGED = "infrastructure/configs/istio/peer-authentication.yaml"
REGISTRY = "registry.example.com/upgraded"
# Releases before v0.3.0 name the registry answer container_registry, keep the Istio namespaces
# in one file (REMOVED) and the KubeVela definitions beside their kustomization (MOVED[0]).
OLD_LAYOUT = {r for r in RELEASES if Version(r.lstrip("v")) < Version("0.3.0")}
# The edits are kept across the longest way (the oldest release, every migration) and the shortest
# (the newest release); every release updates to a fresh render below, and a conflict is the same
# mechanism from any release (the newest is used).
ENDS = sorted({RELEASES[0], RELEASES[-1]}, key=RELEASES.index)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return released_template(tmp_path_factory.mktemp("releases") / "opc")


@pytest.fixture(scope="module")
def fresh(template: Path, tmp_path_factory) -> Path:
    """The version under development rendered with the default answers: what an unedited
    project of any release updates to."""
    dest = tmp_path_factory.mktemp("fresh") / "acme"
    render_new(dest, {}, template=str(template), vcs_ref=NEXT, quiet=True)
    return dest


def render_at(template: Path, version: str, dest: Path, answers: dict) -> Path:
    render_new(dest, answers, template=str(template), vcs_ref=version, quiet=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", f"rendered at {version}")
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def update(project: Path, *args: str):
    return CliRunner().invoke(main, ["update", str(project), "--vcs-ref", NEXT, *args])


def test_migrations_file_matches_the_template():
    """Every migration moves a file to a path the template renders, and renames to a real question."""
    questions = yaml.safe_load((Path(__file__).resolve().parents[1] / "copier.yml").read_text())
    for version, steps in MIGRATIONS.items():
        for old, new in (steps.get("answers") or {}).items():
            assert new in questions and old not in questions, (version, old, new)


@pytest.mark.slow
@pytest.mark.parametrize("release", ENDS)
def test_update_keeps_every_edit(release: str, template: Path, tmp_path: Path, schemas: list[Path], charts):
    old_layout = release in OLD_LAYOUT
    registry_answer = "container_registry" if old_layout else "image_registry"
    project = render_at(template, release, tmp_path / "acme", {registry_answer: REGISTRY})
    old_answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert old_answers["_commit"] == release and old_answers[registry_answer] == REGISTRY

    # 1. a file the new version may also change (the README): a section of our own at its end
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Our runbook\n\nPage the founder.\n")
    # 2. a file the new version leaves alone
    edit(project / UNCHANGED, "mode: STRICT", "mode: STRICT  # audited 2026-11")
    # 3. a file of our own
    (project / "docs").mkdir()
    (project / "docs" / "decisions.md").write_text("# Decisions\n\nWe run two clouds.\n")
    # 4. an edited file the new version removes (releases before v0.3.0 have one)
    if old_layout:
        edit(project / REMOVED, "name: istio-ingress", "name: istio-ingress\n  annotations:\n    owner: founder")
    # 5. an edited file the new version moves (v0.2.0 has it)
    moved_edit = (project / MOVED[0]).is_file()
    if moved_edit:
        edit(project / MOVED[0], "  name: grpc-service\n", "  name: grpc-service\n  labels:\n    team: founder\n")
    git(project, "commit", "-q", "-am", "our edits")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "our files")

    if old_layout:
        stopped = update(project)
        assert stopped.exit_code == 2
        assert f"{REMOVED}: edited here, deleted by the new version" in stopped.output
        assert MOVED[0] not in stopped.output  # moved by a migration, so not endangered
        assert git(project, "status", "--porcelain") == ""  # nothing was touched
        updated = update(project, "--force")
        assert updated.exit_code == 0, updated.output
        assert f"forced: {REMOVED}" in updated.output
    else:
        updated = update(project)
        assert updated.exit_code == 0, updated.output
    assert "0 conflicted" in updated.output

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEXT
    assert answers["image_registry"] == REGISTRY and "container_registry" not in answers  # renamed answer
    assert readme.read_text().endswith("## Our runbook\n\nPage the founder.\n")
    assert "mode: STRICT  # audited 2026-11" in (project / UNCHANGED).read_text()
    assert (project / "docs" / "decisions.md").read_text() == "# Decisions\n\nWe run two clouds.\n"
    assert not (project / REMOVED).exists()
    assert (project / "infrastructure/controllers/istio/manifests/istio-ingress.yaml").is_file()
    assert f"image: {REGISTRY}/order-service:0.1.0" in (project / "apps/order-service/application.yaml").read_text()
    if moved_edit:
        assert not (project / MOVED[0]).exists()
        assert "team: founder" in (project / MOVED[1]).read_text()
    report = validate_repo(project, schemas, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings][:20]


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES)
def test_unedited_project_updates_to_a_fresh_render(release: str, template: Path, fresh: Path, tmp_path: Path):
    """Without local edits, an update leaves exactly what rendering the new version gives."""
    project = render_at(template, release, tmp_path / "acme", {})
    result = update(project)
    assert result.exit_code == 0, result.output
    assert "0 conflicted" in result.output
    files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*")
                   if p.is_file() and p.name != ".copier-answers.yml")
    ours = sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(project).parts and p.name != ".copier-answers.yml")
    assert ours == files
    _, mismatch, errors = filecmp.cmpfiles(project, fresh, files, shallow=False)
    assert not mismatch and not errors, mismatch[:10]


def template_changing(template: Path, dest: Path, path: str, old: str, new: str, tag: str) -> Path:
    """A clone of the release template with one more version, `tag`, that changes one line."""
    git(dest.parent, "clone", "--quiet", str(template), str(dest))
    for line in git(template, "tag").split():
        git(dest, "tag", "-f", line, git(template, "rev-list", "-n", "1", line).strip())
    edit(dest / path, old, new)
    git(dest, "commit", "-q", "-am", "a newer version changes a line")
    git(dest, "tag", tag)
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES[-1:])
def test_conflicting_edit_fails_the_update(release: str, template: Path, tmp_path: Path):
    """An edit to a line a newer version changes ends inside conflict markers, and the update fails."""
    newer = template_changing(template, tmp_path / "template", "template/infrastructure/controllers/istio/istiod.yaml.jinja",
                              "accessLogEncoding: JSON", "accessLogEncoding: TEXT", "v99.0.0")
    project = render_at(newer, release, tmp_path / "acme", {})
    target = "infrastructure/controllers/istio/istiod.yaml"
    edit(project / target, "accessLogEncoding: JSON", "accessLogEncoding: JSON  # our wording")
    git(project, "commit", "-q", "-am", "reword")

    result = CliRunner().invoke(main, ["update", str(project), "--vcs-ref", "v99.0.0", "--force"])
    assert result.exit_code == 1
    assert f"CONFLICT  {target}" in result.output
    text = (project / target).read_text()
    assert "<<<<<<<" in text and "# our wording" in text and "accessLogEncoding: TEXT" in text


def test_update_refuses_a_dirty_tree(template: Path, tmp_path: Path):
    project = render_at(template, RELEASES[-1], tmp_path / "acme", {})
    (project / "scratch.txt").write_text("not committed")
    result = update(project)
    assert result.exit_code == 2 and "uncommitted changes" in result.output and "scratch.txt" in result.output


def test_update_refuses_unknown_answers(template: Path, tmp_path: Path):
    project = render_at(template, RELEASES[-1], tmp_path / "acme", {})
    result = update(project, "-d", "enviroments=[prod]")
    assert result.exit_code == 2 and "did you mean 'environments'" in result.output


def test_migrate_script_is_idempotent_and_version_bounded(tmp_path: Path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "hooks" / "migrate.py"
    project = tmp_path / "p"
    (project / "platform/kubevela").mkdir(parents=True)
    (project / ".copier-answers.yml").write_text("---\n# kept\ncontainer_registry: r.example/x  # ours\nclouds: [aliyun]\n")
    (project / MOVED[0]).write_text("edited\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "p")
    run = lambda a, b: subprocess.run([sys.executable, str(script), a, b], cwd=project, check=True,  # noqa: E731
                                      capture_output=True, text=True).stdout
    assert run("0.3.0", "0.4.0") == ""  # nothing declared after 0.3.0
    out = run("0.2.0", "0.3.0")
    assert "answer container_registry -> image_registry" in out and f"moved {MOVED[0]}" in out
    assert (project / ".copier-answers.yml").read_text() == "---\n# kept\nimage_registry: r.example/x  # ours\nclouds: [aliyun]\n"
    assert (project / MOVED[1]).read_text() == "edited\n" and not (project / MOVED[0]).exists()
    assert "moved" not in run("0.2.0", "0.3.0") and "answer" not in run("0.2.0", "0.3.0")  # idempotent
