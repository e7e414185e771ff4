"""The command line as users run it: `opc new`, and the README's first command."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT

from opc.cli import main
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS


def test_new_with_defaults_and_data(template_repo: Path, tmp_path: Path, schemas: list[Path], charts):
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
    report = validate_repo(dest, schemas, wiring=ALL_CHECKS, charts=charts)
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


def test_readme_starts_with_the_two_commands_and_render_works(tmp_path: Path, schemas: list[Path], charts):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands[0].startswith("make render") and commands[1] == "make test"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    dest = tmp_path / "from-readme"
    subprocess.run(["make", "-C", str(ROOT), "render", f"DEST={dest}"], check=True, capture_output=True)
    report = validate_repo(dest, schemas, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, report.summary()


# --- failures: one line, a non-zero exit, nothing left behind --------------------------------
def opc(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The real executable (python -m opc runs the same entry point as `opc`)."""
    return subprocess.run([sys.executable, "-m", "opc", *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "No git tags" not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_data_file_without_terminal_says_what_is_missing(template_repo: Path, tmp_path: Path):
    answers = tmp_path / "answers.yml"
    answers.write_text("clouds: [aliyun]\nenvironments: [prod]\n")
    dest = tmp_path / "acme"
    args = ["new", str(dest), "--data-file", str(answers), "--template", str(template_repo), "--vcs-ref", "HEAD"]
    line = one_line_error(opc(*args, stdin=subprocess.DEVNULL), 2)
    assert line.startswith("error: no terminal to ask") and "company_name" in line and "aliyun_region" in line
    assert "tencent_region" not in line and "clouds" not in line.split("(", 1)[1]  # answered, or not asked
    assert not dest.exists()
    everything = {"company_name": "Acme", "company_slug": "acme", "base_domain": "acme.example",
                  "repository_url": "https://git.acme.example/platform.git", "repository_branch": "main",
                  "gitops": "flux", "clouds": ["aliyun"], "environments": ["prod"], "hub_cloud": "aliyun",
                  "aliyun_region": "cn-shanghai", "services": [{"name": "order-service", "package": "com.acme.order",
                                                                 "grpc_service": "OrderService", "port": 50051}],
                  "pubsub": "redis", "redis_addresses": {"aliyun": "redis.acme.example:6379"},
                  "hub_telemetry_sources": [], "java_tracing": "opentelemetry",
                  "image_registry": "ghcr.io/acme", "registry_mirrors": {}}
    answers.write_text(yaml.safe_dump(everything))
    result = opc(*args, "-q", stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((dest / ".copier-answers.yml").read_text())["aliyun_region"] == "cn-shanghai"


def test_unwritable_destination_is_one_line(template_repo: Path):
    result = opc("new", "/proc/opc-cannot-exist/acme", "--defaults", "--template", str(template_repo),
                 "--vcs-ref", "HEAD", "-q")
    line = one_line_error(result, 1)
    assert line.startswith("error: cannot render into /proc/opc-cannot-exist/acme:"), line


def _start_render(template_repo: Path, dest: Path) -> subprocess.Popen:
    # A job started in the background of a non-interactive shell (as a test runner may be) has
    # SIGINT ignored, and a child inherits that; a handled signal is reset to the default at exec,
    # as in a user's terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, "-m", "opc", "new", str(dest), "--defaults", "--template",
                                 str(template_repo), "--vcs-ref", "HEAD", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_at_once_is_one_line(template_repo: Path, tmp_path: Path):
    process = _start_render(template_repo, tmp_path / "acme")
    time.sleep(0.3)  # still importing
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert one_line_error(result, 130) == "interrupted"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_during_render_leaves_nothing(template_repo: Path, tmp_path: Path, sig, code: int, word: str):
    process = _start_render(template_repo, tmp_path / "acme")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".acme.opc-*/*")):  # the staging directory has files in it
        assert process.poll() is None and time.monotonic() < deadline, "the render never started"
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert one_line_error(result, code) == word
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_credentials_are_masked_in_errors(template_repo: Path, tmp_path: Path):
    url = "https://deploy:ghp_0123456789abcdefSECRET@git.acme.example/platform.git?x=1"
    result = opc("new", str(tmp_path / "acme"), "--defaults", "--template", str(template_repo), "--vcs-ref", "HEAD",
                 "-d", f"repository_url={url}")
    line = one_line_error(result, 2)
    assert "repository_url" in line and "***@git.acme.example" in line and "SECRET" not in line


def test_diff_outside_git_and_of_two_directories(rendered, tmp_path: Path):
    line = one_line_error(opc("diff", "--dir", str(tmp_path)), 2)
    assert "is not a git repository" in line and "two directories" in line
    repo = rendered("valid/tencent-dev-argocd.yml")
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    (other / "infrastructure/configs/istio/peer-authentication.yaml").write_text(
        (repo / "infrastructure/configs/istio/peer-authentication.yaml").read_text().replace("STRICT", "PERMISSIVE"))
    result = opc("diff", str(repo), str(other))
    assert result.returncode == 0, result.stderr
    assert "PeerAuthentication.security.istio.io istio-system/default" in result.stdout
    assert "-    mode: STRICT" in result.stdout and "+    mode: PERMISSIVE" in result.stdout
    line = one_line_error(opc("diff", str(repo), "HEAD", "--dir", str(repo)), 2)
    assert "is a directory" in line
