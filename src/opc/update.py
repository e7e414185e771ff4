"""`opc update` and `opc add service`: `copier update` with its traps closed.

Plain `copier update` exits 0 with conflict markers left in files, silently deletes a file the
user edited when the new template version removed it, and ignores misspelt `--data` keys. Here:
- the working tree must be clean (so every change the update makes is reviewable in git);
- before updating, the old and new template versions are rendered with the project's answers,
  and every file the user edited that the new version deletes or renames is listed; the update
  stops unless forced;
- after updating, any conflict marker or .rej file fails the command, naming the files;
- the change is summarised (added, modified, removed, conflicted).
"""

from __future__ import annotations

import filecmp
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .answers import check_answers, load_questions

ANSWERS_FILE = ".copier-answers.yml"
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


class UpdateError(RuntimeError):
    """The update cannot start, or must not proceed without --force."""


@dataclass
class UpdateResult:
    from_version: str
    to_version: str
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    conflicted: list[str] = field(default_factory=list)
    endangered: list[str] = field(default_factory=list)  # user-edited files the new version drops

    @property
    def ok(self) -> bool:
        return not self.conflicted

    def report(self) -> str:
        lines = [f"updated {self.from_version} -> {self.to_version}: {len(self.added)} added, "
                 f"{len(self.modified)} modified, {len(self.removed)} removed, {len(self.conflicted)} conflicted"]
        for label, paths in (("added", self.added), ("modified", self.modified), ("removed", self.removed),
                             ("CONFLICT", self.conflicted)):
            lines.extend(f"  {label:9} {p}" for p in paths)
        for note in self.endangered:
            lines.append(f"  forced: {note}")
        return "\n".join(lines)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def ensure_clean(repo: Path) -> None:
    if not (repo / ".git").exists():
        try:
            git(repo, "rev-parse", "--show-toplevel")
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            raise UpdateError(f"{repo} is not a git repository; commit the rendered project first") from exc
    dirty = git(repo, "status", "--porcelain").splitlines()
    if dirty:
        shown = "\n  ".join(dirty[:20])
        raise UpdateError(f"the working tree has uncommitted changes; commit or stash them first:\n  {shown}")


def read_answers(repo: Path) -> dict[str, Any]:
    path = repo / ANSWERS_FILE
    if not path.is_file():
        raise UpdateError(f"{path} not found: not a project rendered by opc/Copier")
    return yaml.safe_load(path.read_text()) or {}


def user_answers(answers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answers.items() if not k.startswith("_")}


def _render(src: str, ref: str | None, data: dict[str, Any], dest: Path) -> Path:
    import copier

    copier.run_copy(src, dest, data=data, defaults=True, unsafe=True, vcs_ref=ref, quiet=True)
    return dest


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def newest_release(src: str) -> str | None:
    from packaging.version import InvalidVersion, Version

    out = subprocess.run(["git", "ls-remote", "--tags", src], capture_output=True, text=True, check=True).stdout
    versions = []
    for line in out.splitlines():
        tag = line.rpartition("refs/tags/")[2].removesuffix("^{}")
        try:
            versions.append((Version(tag), tag))
        except InvalidVersion:
            continue
    return max(versions)[1] if versions else None


def migrations(src: str, old_ref: str, new_ref: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Answer renames and file moves the template declares for versions after old_ref up to new_ref."""
    from packaging.version import InvalidVersion, Version

    ref = new_ref or newest_release(src) or "HEAD"
    if Path(src).is_dir() and ref == "HEAD":
        path = Path(src) / "hooks" / "migrations.yml"
        text = path.read_text() if path.is_file() else ""
    elif Path(src).is_dir():
        shown = subprocess.run(["git", "-C", src, "show", f"{ref}:hooks/migrations.yml"], capture_output=True,
                               text=True, check=False)
        text = shown.stdout if shown.returncode == 0 else ""
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", ref, src, tmp], check=True)
            path = Path(tmp) / "hooks" / "migrations.yml"
            text = path.read_text() if path.is_file() else ""
    table = yaml.safe_load(text) or {}
    try:
        low = Version(old_ref)
    except InvalidVersion:
        low = Version("0")
    try:
        high = Version(ref)
    except InvalidVersion:
        high = None  # a commit or branch: every declared step newer than the project applies
    answers: dict[str, str] = {}
    files: dict[str, str] = {}
    for version in sorted(table, key=Version):
        if low < Version(version) and (high is None or Version(version) <= high):
            answers.update((table[version] or {}).get("answers") or {})
            files.update((table[version] or {}).get("files") or {})
    return answers, files


def endangered_edits(repo: Path, old: Path, new: Path, moved: dict[str, str]) -> list[str]:
    """Files the user changed that the new version deletes (or renames), with what happens to them.

    ``old`` and ``new`` are renders of the two versions with the project's answers. Files a
    migration moves (``moved``: old path -> new path) are carried over, not endangered.
    """
    old_files, new_files = _files(old), _files(new)
    notes = []
    for rel in sorted(old_files - new_files):
        mine = repo / rel
        if not mine.is_file() or filecmp.cmp(mine, old / rel, shallow=False):
            continue  # untouched (or already gone): the update may remove it
        if moved.get(rel) in new_files:
            continue  # a migration moves it, edits included
        same = (n for n in sorted(new_files - old_files) if filecmp.cmp(old / rel, new / n, shallow=False))
        target = next(same, None)
        notes.append(f"{rel}: edited here, {'renamed to ' + target if target else 'deleted'} by the new version")
    return notes


def merge_moved_edits(repo: Path, old: Path, new: Path, moved: dict[str, str], carried: dict[str, str]) -> list[str]:
    """Re-merge moved files with the right base.

    Copier sees a moved file as added on both sides and conflicts wherever the new version
    changed it; the true three-way merge is: base = the old version's file at the old path,
    ours = the project's copy (``carried``, edited or not), theirs = the new version's file at the
    new path. Returns the files that still conflict.
    """
    conflicted = []
    for source, target in moved.items():
        if source not in carried or not (new / target).is_file():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            mine, base = Path(tmp) / "mine", Path(tmp) / "base"
            mine.write_text(carried[source])
            base.write_text((old / source).read_text())
            merged = subprocess.run(["git", "merge-file", "-p", "-L", "before updating", "-L", "base",
                                     "-L", "after updating", str(mine), str(base), str(new / target)],
                                    capture_output=True, text=True, check=False)
        (repo / target).write_text(merged.stdout)
        if merged.returncode == 0:
            git(repo, "add", "--", target)
        else:
            conflicted.append(target)
    return conflicted


def scan_conflicts(repo: Path, paths: list[str]) -> list[str]:
    found = []
    for rel in paths:
        path = repo / rel
        if rel.endswith(".rej"):
            found.append(rel)
            continue
        if not path.is_file():
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if any(line.startswith(CONFLICT_MARKERS) for line in text.splitlines()):
            found.append(rel)
    return found


def summarise(repo: Path, result: UpdateResult) -> UpdateResult:
    for line in git(repo, "status", "--porcelain", "--untracked-files=all").splitlines():
        status, rel = line[:2], line[3:].strip().strip('"')
        if " -> " in rel:
            rel = rel.split(" -> ", 1)[1]
        if status in ("UU", "AA", "DU", "UD"):
            result.modified.append(rel)
        elif status == "??" or "A" in status:
            result.added.append(rel)
        elif "D" in status:
            result.removed.append(rel)
        else:
            result.modified.append(rel)
    result.conflicted = scan_conflicts(repo, result.added + result.modified)
    return result


def run(repo: Path, *, data: dict[str, Any] | None = None, vcs_ref: str | None = None, force: bool = False,
        progress: Callable[[str], None] = lambda _m: None) -> UpdateResult:
    """Update ``repo`` to ``vcs_ref`` (default: the newest release) with extra answers ``data``."""
    import copier

    repo = repo.resolve()
    ensure_clean(repo)
    answers = read_answers(repo)
    src, old_ref = answers.get("_src_path"), answers.get("_commit")
    if not src or not old_ref:
        raise UpdateError(f"{ANSWERS_FILE} records no template source or version (_src_path, _commit)")
    data = dict(data or {})
    if Path(src).is_dir():
        check_answers(data, load_questions(Path(src), vcs_ref or newest_release(src)))
    current = user_answers(answers)
    progress(f"checking what {old_ref} -> {vcs_ref or 'the newest release'} would delete")
    renamed, moved = migrations(src, str(old_ref), vcs_ref)
    migrated = {renamed.get(k, k): v for k, v in current.items()}
    with tempfile.TemporaryDirectory(prefix="opc-update-") as tmp:
        old = _render(src, str(old_ref), current, Path(tmp) / "old")
        new = _render(src, vcs_ref, {**migrated, **data}, Path(tmp) / "new")
        endangered = endangered_edits(repo, old, new, moved)
        if endangered and not force:
            raise UpdateError("the new version deletes or renames files you edited (use --force to update anyway; "
                              "git keeps your version):\n  " + "\n  ".join(endangered))
        # every file a migration moves, as the project has it (edited or not): Copier would see each
        # as added on both sides and conflict whenever the new version changed it
        carried = {src_path: (repo / src_path).read_text() for src_path in moved
                   if (repo / src_path).is_file() and (old / src_path).is_file()}
        progress("running copier update")
        copier.run_update(repo, data=data, vcs_ref=vcs_ref, defaults=True, overwrite=True, unsafe=True,
                          quiet=True, conflict="inline", skip_answered=True)
        merge_moved_edits(repo, old, new, moved, carried)
    new_ref = read_answers(repo).get("_commit", "?")
    return summarise(repo, UpdateResult(str(old_ref), str(new_ref), endangered=endangered))


# -- opc add service ------------------------------------------------------------------------------

def add_service(repo: Path, service: dict[str, Any], progress: Callable[[str], None] = lambda _m: None) -> UpdateResult:
    """Append a service to the answers (comments and order kept) and render it, at the current version."""
    from ruamel.yaml import YAML

    repo = repo.resolve()
    ensure_clean(repo)
    answers_path = repo / ANSWERS_FILE
    rt = YAML()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=2, offset=0)
    rt.explicit_start = True
    document = rt.load(answers_path.read_text())
    services = list(document.get("services") or [])
    if any(s.get("name") == service["name"] for s in services):
        raise UpdateError(f"a service named '{service['name']}' already exists")
    new_list = [dict(s) for s in services] + [service]
    result = run(repo, data={"services": new_list}, vcs_ref=str(document.get("_commit")), progress=progress)
    # Copier rewrote the answers file; put the user's comments and order back, with the new entry.
    rendered = yaml.safe_load(answers_path.read_text())
    if "services" not in document:
        document["services"] = []
    document["services"].append(service)
    for key, value in rendered.items():
        if key not in document or (key != "services" and document[key] != value):
            document[key] = value
    with answers_path.open("w") as handle:
        rt.dump(document, handle)
    return result


__all__ = ["UpdateError", "UpdateResult", "add_service", "run"]
