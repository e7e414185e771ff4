"""The render matrix: every valid answer fixture renders and validates; every invalid one is refused."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest
from conftest import FIXTURES, fixture_header, load_fixture, render

from opc.answers import AnswerError
from opc.render import render_new, template_root
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS

VALID = sorted((FIXTURES / "valid").glob("*.yml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yml"))
TEMPLATE = Path(template_root()) / "template"
# A Jinja expression, statement or comment that survived rendering. Go templates ({{ .name }}, in
# Argo CD ApplicationSets) and GitHub Actions expressions (${{ github.ref }}) are not matched.
LEFTOVER_JINJA = re.compile(r"\{%|%\}|\{#|#\}|(?<!\$)\{\{\s*(?!\.)[A-Za-z_]")


def test_fixture_matrix_is_complete():
    answers = [load_fixture(p) for p in VALID]
    assert len(VALID) >= 8 and len(INVALID) >= 12
    for cloud in ("aliyun", "tencent", "huawei", "private"):
        assert any(a.get("clouds") == [cloud] for a in answers), f"no fixture with {cloud} alone"
    assert any(len(a.get("clouds", [])) == 4 for a in answers)
    assert {a.get("gitops", "flux") for a in answers} == {"flux", "argocd"}
    assert any(len(a.get("environments", [])) == 1 for a in answers)
    assert any(len(a.get("environments", [])) == 3 for a in answers)


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.stem)
def test_valid_fixture_renders_and_validates(fixture: Path, rendered, schemas: list[Path], charts):
    repo = rendered(f"valid/{fixture.name}")
    report = validate_repo(repo, schemas, wiring=ALL_CHECKS, charts=charts)
    problems = "\n".join(str(f) for f in report.findings[:40])
    assert report.ok, f"{report.summary()}\n{problems}"
    assert report.built == report.kustomizations > 0
    assert report.valid > 0 and report.invalid == 0 and report.missing == 0


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.stem)
def test_no_unrendered_jinja(fixture: Path, rendered):
    repo = rendered(f"valid/{fixture.name}")
    leftovers = []
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if ".git/" in rel:
            continue
        assert ".jinja" not in rel and "{" not in rel and "}" not in rel, f"unrendered path {rel}"
        if path.is_file() and not (TEMPLATE / rel).is_file():  # files copied verbatim keep their {{ }}
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                if LEFTOVER_JINJA.search(line):
                    leftovers.append(f"{rel}:{number}: {line.strip()}")
    assert not leftovers, "\n".join(leftovers[:20])


def test_same_answers_render_byte_identical(template_repo: Path, tmp_path: Path):
    answers = load_fixture(FIXTURES / "valid" / "all-clouds-argocd.yml")
    first = render(template_repo, tmp_path / "first", answers)
    second = render(template_repo, tmp_path / "second", answers)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(first, second, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files) > 50


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_is_refused(fixture: Path, template_repo: Path, tmp_path: Path):
    question = fixture_header(fixture, "expect")
    assert question, f"{fixture.name} has no '# expect: <question>' header"
    dest = tmp_path / "company"
    with pytest.raises((AnswerError, ValueError)) as caught:
        render_new(dest, load_fixture(fixture), template=str(template_repo), vcs_ref="HEAD", quiet=True)
    message = str(caught.value)
    assert question in message, message
    assert fixture_header(fixture, "message") in message, message
    for secret in filter(None, [fixture_header(fixture, "never")]):
        assert secret not in message, message
    assert not dest.exists()
    assert not list(tmp_path.iterdir()), "a staging directory was left behind"


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_plain_copier_on_invalid_fixture(fixture: Path, template_repo: Path, tmp_path: Path):
    """Copier's own validators refuse most fixtures; the rest show the traps opc closes."""
    import copier

    question = fixture_header(fixture, "expect")
    dest = tmp_path / "company"
    if fixture_header(fixture, "plain-copier"):
        copier.run_copy(str(template_repo), dest, data=load_fixture(fixture), defaults=True,
                        unsafe=True, vcs_ref="HEAD", quiet=True)
        assert (dest / ".copier-answers.yml").is_file()
        return
    with pytest.raises(ValueError) as caught:
        copier.run_copy(str(template_repo), dest, data=load_fixture(fixture), defaults=True,
                        unsafe=True, vcs_ref="HEAD", quiet=True)
    assert f"'{question}'" in str(caught.value), str(caught.value)
    assert not dest.exists()
