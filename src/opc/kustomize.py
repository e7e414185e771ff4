"""Finding and building the kustomizations of a repository with the real kustomize."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SKIP_DIRS = {".git", "node_modules", "target", ".venv", "__pycache__"}

# The C loader is several times faster on large builds (absent when PyYAML was built without it).
_Base: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """YAML as Kubernetes reads it: a bare '=' is the string "=", not YAML 1.1's value key."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


class KustomizeNotFound(RuntimeError):
    pass


def kustomize_command() -> list[str]:
    """A standalone ``kustomize`` if one is on PATH, else ``kubectl kustomize``."""
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    raise KustomizeNotFound("neither kustomize nor kubectl is on PATH; install one of them")


def find_kustomizations(root: Path) -> list[Path]:
    """Every directory under ``root`` that holds a kustomization file, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if any(name in filenames for name in KUSTOMIZATION_FILES):
            found.append(Path(dirpath))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass
class Build:
    path: Path
    ok: bool
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def included_by_others(paths: list[Path]) -> set[Path]:
    """The kustomizations among ``paths`` (resolved) that another kustomization includes as a
    resource or a component."""
    included: set[Path] = set()
    for directory in paths:
        for name in KUSTOMIZATION_FILES:
            file = directory / name
            if not file.is_file():
                continue
            try:
                spec = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                spec = {}
            for entry in (spec.get("resources") or []) + (spec.get("components") or []):
                target = (directory / str(entry)).resolve()
                if target.is_dir():
                    included.add(target)
            break
    return included


def parse_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]


def build_one(path: Path, command: list[str] | None = None) -> Build:
    command = command or kustomize_command()
    proc = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False, errors="replace")
    if proc.returncode != 0:
        return Build(path, False, error=(proc.stderr or proc.stdout).strip())
    try:
        objects = parse_documents(proc.stdout)
    except yaml.YAMLError as exc:
        return Build(path, False, error=f"kustomize output is not YAML: {' '.join(str(exc).split())}")
    return Build(path, True, objects)


def build_all(paths: list[Path], jobs: int | None = None) -> Iterator[Build]:
    """Build ``paths`` in parallel; yields builds in the order of ``paths``."""
    command = kustomize_command()
    jobs = jobs or max(2, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(build_one, p, command) for p in paths]
        for future in futures:
            yield future.result()
