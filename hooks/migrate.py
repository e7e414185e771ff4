#!/usr/bin/env python3
"""Apply the migrations between two template versions to the project in the working directory.

Run by Copier before every update (see `_migrations` in copier.yml):
    migrate.py FROM_VERSION TO_VERSION
applies, in version order, each entry of hooks/migrations.yml after FROM_VERSION and up to
TO_VERSION (PEP 440). Renames answers in .copier-answers.yml (top-level keys, text kept as it is) and moves files
with `git mv`, as hooks/migrations.yml lists them. Idempotent: what is already migrated is left
alone. Uses only the standard library and PyYAML (a dependency of Copier).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.version import Version

ANSWERS = Path(".copier-answers.yml")


def steps_between(start: str, end: str) -> list[tuple[str, dict]]:
    """Migration steps of the versions in (start, end], oldest first."""
    table = yaml.safe_load((Path(__file__).parent / "migrations.yml").read_text()) or {}
    low, high = Version(start), Version(end)
    return sorted(((v, s or {}) for v, s in table.items() if low < Version(v) <= high), key=lambda i: Version(i[0]))


def rename_answers(renames: dict[str, str]) -> None:
    if not ANSWERS.is_file() or not renames:
        return
    text = ANSWERS.read_text()
    for old, new in renames.items():
        if re.search(rf"^{re.escape(new)}:", text, re.M):
            continue
        text, count = re.subn(rf"^{re.escape(old)}:", f"{new}:", text, flags=re.M)
        if count:
            print(f"migrate: answer {old} -> {new}")
    ANSWERS.write_text(text)


def move_files(moves: dict[str, str]) -> None:
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], capture_output=True, check=False)
    tracked = inside.returncode == 0
    for old, new in moves.items():
        source, target = Path(old), Path(new)
        if not source.exists() or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if tracked:
            subprocess.run(["git", "mv", str(source), str(target)], check=True)
        else:
            source.rename(target)
        print(f"migrate: moved {old} -> {new}")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: migrate.py FROM_VERSION TO_VERSION")
    for version, steps in steps_between(sys.argv[1], sys.argv[2]):
        print(f"migrate: to {version}")
        rename_answers(steps.get("answers") or {})
        move_files(steps.get("files") or {})


if __name__ == "__main__":
    main()
