"""yamllint over a repository, with the repository's own configuration."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

CONFIG_FILES = (".yamllint", ".yamllint.yaml", ".yamllint.yml")
SKIP_DIRS = {".git", "node_modules", "target", ".venv"}


@dataclass(frozen=True)
class LintProblem:
    path: str
    line: int
    column: int
    level: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: [{self.level}] {self.message} ({self.rule})"


def load_config(root: Path) -> tuple[YamlLintConfig, str]:
    for name in CONFIG_FILES:
        if (root / name).is_file():
            return YamlLintConfig(file=str(root / name)), name
    return YamlLintConfig("extends: default"), "yamllint default"


def yaml_files(root: Path, conf: YamlLintConfig) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if conf.is_yaml_file(rel) and not conf.is_file_ignored(rel):
                files.append(rel)
    return files


def _reason(exc: Exception) -> str:
    """One line saying why a file cannot be read as YAML text."""
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else exc.character[0]
        return f"not readable as YAML: character #x{char:04x} at position {exc.position} is not allowed"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at position {exc.start}"
    return " ".join(str(exc).split())


# What yamllint said of a file, by (configuration, path, content): its answer depends on nothing
# else, so a process that lints many copies of one repository (the test suite) asks once per file.
_LINTED: dict[tuple[str, str, str], list[LintProblem]] = {}


def _lint_file(root: Path, rel: str, conf: YamlLintConfig, conf_key: str) -> list[LintProblem]:
    try:
        text = (root / rel).read_text(encoding="utf-8")
        key = (conf_key, rel, hashlib.sha256(text.encode()).hexdigest())
        if key not in _LINTED:
            _LINTED[key] = [LintProblem(rel, p.line, p.column, p.level, p.rule or "syntax", p.desc)
                            for p in linter.run(text, conf, rel)]
        return _LINTED[key]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [LintProblem(rel, 1, 1, "error", "unreadable", _reason(exc))]


def lint_tree(root: Path) -> tuple[int, list[LintProblem], str]:
    """Lint every YAML file under ``root``; returns (files linted, problems, config used)."""
    conf, source = load_config(root)
    conf_file = root / source
    conf_key = conf_file.read_text(encoding="utf-8", errors="replace") if conf_file.is_file() else source
    files = yaml_files(root, conf)
    problems = [p for rel in files for p in _lint_file(root, rel, conf, conf_key)]
    return len(files), problems, source
