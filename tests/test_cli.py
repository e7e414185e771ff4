"""The command line as users run it: `opc new`, and the README's first command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from click.testing import CliRunner

from conftest import ROOT
from opc.cli import main
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS


def test_new_with_defaults_and_data(template_repo: Path, tmp_path: Path, schemas: Path):
    dest = tmp_path / "acme"
    result = CliRunner().invoke(main, [
        "new", str(dest), "--defaults", "--template", str(template_repo), "--vcs-ref", "HEAD", "-q",
        "-d", "company_name=Yes", "-d", "clouds=[huawei, private]", "-d", "environments=[prod]",
    ])
    assert result.exit_code == 0, result.output
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["company_name"] == "Yes"  # a str question keeps YAML-looking text as text
    assert answers["company_slug"] == "yes-co"  # a derived slug never reads as a YAML boolean
    assert answers["clouds"] == ["huawei", "private"]
    assert answers["_src_path"] == str(template_repo)  # absolute, so later updates work
    assert sorted(p.name for p in (dest / "clusters").iterdir()) == ["huawei-prod", "hub", "private-prod"]
    report = validate_repo(dest, [schemas], wiring=ALL_CHECKS)
    assert report.ok, report.summary()


def test_new_refuses_bad_answers_and_existing_destination(template_repo: Path, tmp_path: Path):
    args = ["--defaults", "--template", str(template_repo), "--vcs-ref", "HEAD", "-q"]
    result = CliRunner().invoke(main, ["new", str(tmp_path / "a"), *args, "-d", "clouds=[aliyun, aws]"])
    assert result.exit_code == 2 and "clouds: 'aws' not one of" in result.output
    result = CliRunner().invoke(main, ["new", str(tmp_path / "a"), *args, "-d", "company_slug=Bad_Slug"])
    assert result.exit_code == 2 and "company_slug must be a DNS-1123 label" in result.output
    result = CliRunner().invoke(main, ["new", str(tmp_path / "a"), *args, "-d", "noequals"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["new", str(tmp_path / "b"), *args])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_readme_starts_with_the_two_commands_and_render_works(tmp_path: Path, schemas: Path):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands[0].startswith("make render") and commands[1] == "make test"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    dest = tmp_path / "from-readme"
    subprocess.run(["make", "-C", str(ROOT), "render", f"DEST={dest}"], check=True, capture_output=True)
    report = validate_repo(dest, [schemas], wiring=ALL_CHECKS)
    assert report.ok, report.summary()
