"""Finding and building the kustomizations of a repository with the real kustomize."""

from __future__ import annotations

import hashlib
import os
import pickle
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
    return {target for directory in paths for target in _included(directory)}


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


def _included(directory: Path) -> list[Path]:
    """The directories the kustomization in ``directory`` names as resources or components."""
    for name in KUSTOMIZATION_FILES:
        file = directory / name
        if file.is_file():
            try:
                spec = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader) or {}  # noqa: S506 - a safe loader
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                return []
            if not isinstance(spec, dict):
                return []
            entries = [str(e) for key in ("resources", "components", "bases") for e in spec.get(key) or []]
            return [target for e in entries if (target := (directory / e).resolve()).is_dir()]
    return []


def fingerprint(path: Path, own: dict[Path, str]) -> str:
    """A digest of everything a build of ``path`` can read: the files under it and under every
    directory its kustomizations include (kustomize's load restrictor refuses any other file),
    named relative to ``path`` so that copies of one tree match. ``own`` keeps each directory's
    digest of its own files across calls."""
    root = path.resolve()
    seen: set[Path] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        if directory in seen or not directory.is_dir():
            continue
        seen.add(directory)
        if directory not in own:
            digest = hashlib.sha256()
            for entry in sorted(directory.iterdir()):
                digest.update(entry.name.encode() + b"\0")
                if entry.is_file():
                    digest.update(hashlib.sha256(entry.read_bytes()).digest())
            own[directory] = digest.hexdigest()
        stack += [d for d in directory.iterdir() if d.is_dir() and d.name not in SKIP_DIRS] + _included(directory)
    return hashlib.sha256("".join(f"{os.path.relpath(d, root)}\0{own[d]}\n" for d in sorted(seen)).encode()).hexdigest()


# What kustomize built, by command and fingerprint (pickled, so that no two builds share objects):
# a process that validates many copies of one repository (the test suite) builds each tree once.
_BUILT: dict[tuple[str, str], tuple[bool, bytes, str]] = {}


def build_all(paths: list[Path], jobs: int | None = None) -> Iterator[Build]:
    """Build ``paths`` in parallel; yields builds in the order of ``paths``. A tree this process
    has built before, unchanged, is not built again."""
    command = kustomize_command()
    jobs = jobs or max(2, (os.cpu_count() or 2) * 2)
    own: dict[Path, str] = {}
    keys = [(" ".join(command), fingerprint(p, own)) for p in paths]

    def build(path: Path, key: tuple[str, str]) -> Build:
        if key in _BUILT:
            ok, objects, error = _BUILT[key]
            return Build(path, ok, pickle.loads(objects), error)  # noqa: S301 - pickled by this process
        result = build_one(path, command)
        _BUILT[key] = (result.ok, pickle.dumps(result.objects), result.error)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(build, p, k) for p, k in zip(paths, keys, strict=True)]
        for future in futures:
            yield future.result()
