"""The project's own code stays clean: ruff over everything Python, mypy --strict over src/opc."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "hooks", "bench",
                             "scripts/reserved-names", "scripts/image-paths"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


# The package registries the project reaches only through their own clients (pip, go, mvn,
# apt-get, npm, cargo): no file of the repository names their hosts.
REGISTRY_HOSTS = ("repo1.maven.org", "repo.maven.apache.org", "proxy.golang.org", "sum.golang.org", "pypi.org",
                  "files.pythonhosted.org", "registry.npmjs.org", "crates.io", "deb.debian.org")


def test_no_registry_host_is_named():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or name == "tests/test_code_health.py":
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {host}" for host in REGISTRY_HOSTS if host in text]
    assert found == []
