"""`opc diff`: what a change does to the objects the clusters receive, not to the templates.

Both sides are built with the real kustomize. The unit of comparison is a deployable unit: a
kustomization that no other kustomization includes (a cluster's entry point or one of its
layers, or a folder an Argo CD Application points at). Units under clusters/<name>/ belong to
that cluster; other units are shared. Objects are keyed by unit scope, group, kind, namespace and
name, and every changed object gets a unified YAML diff.
"""

from __future__ import annotations

import difflib
import io
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import kustomize

Key = tuple[str, str, str, str, str]  # scope, group, kind, namespace, name


@dataclass
class Change:
    key: Key
    diff: str = ""

    def as_dict(self) -> dict[str, Any]:
        scope, group, kind, namespace, name = self.key
        out = {"scope": scope, "group": group, "kind": kind, "namespace": namespace, "name": name}
        if self.diff:
            out["diff"] = self.diff
        return out

    @property
    def label(self) -> str:
        _, group, kind, namespace, name = self.key
        return f"{kind}{'.' + group if group else ''} {namespace + '/' if namespace else ''}{name}"


@dataclass
class DiffResult:
    base: str
    head: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def by_scope(self) -> dict[str, list[tuple[str, Change]]]:
        scopes: dict[str, list[tuple[str, Change]]] = {}
        for mark, changes in (("+", self.added), ("-", self.removed), ("~", self.changed)):
            for change in changes:
                scopes.setdefault(change.key[0], []).append((mark, change))
        return {s: sorted(v, key=lambda i: i[1].key) for s, v in sorted(scopes.items())}

    def summary(self) -> str:
        return (f"{self.base} -> {self.head}: {len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed")


def deployable_units(root: Path) -> list[Path]:
    """Kustomizations that no other kustomization includes (resources or components)."""
    all_dirs = kustomize.find_kustomizations(root)
    included = kustomize.included_by_others(all_dirs)
    return [d for d in all_dirs if d.resolve() not in included]


def scope_of(root: Path, unit: Path) -> str:
    parts = unit.relative_to(root).parts
    if len(parts) >= 2 and parts[0] == "clusters":
        return parts[1]
    return "shared: " + unit.relative_to(root).as_posix()


def build_objects(root: Path, jobs: int | None = None) -> dict[Key, dict[str, Any]]:
    units = deployable_units(root)
    objects: dict[Key, dict[str, Any]] = {}
    for build in kustomize.build_all(units, jobs=jobs):
        if not build.ok:
            raise RuntimeError(f"kustomize failed on {build.path.relative_to(root)}: {build.error.splitlines()[-1]}")
        scope = scope_of(root, build.path)
        for obj in build.objects:
            meta = obj.get("metadata") or {}
            group = str(obj.get("apiVersion", "")).rpartition("/")[0]
            objects[(scope, group, str(obj.get("kind")), meta.get("namespace", ""), meta.get("name", ""))] = obj
    return objects


def _dump(obj: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=120).splitlines(keepends=True)


def compare(base: dict[Key, dict[str, Any]], head: dict[Key, dict[str, Any]], base_name: str,
            head_name: str) -> DiffResult:
    result = DiffResult(base_name, head_name)
    for key in sorted(head.keys() - base.keys()):
        result.added.append(Change(key))
    for key in sorted(base.keys() - head.keys()):
        result.removed.append(Change(key))
    for key in sorted(base.keys() & head.keys()):
        if base[key] != head[key]:
            text = "".join(difflib.unified_diff(_dump(base[key]), _dump(head[key]), fromfile=base_name,
                                                tofile=head_name, n=3))
            result.changed.append(Change(key, text))
    return result


class DiffError(RuntimeError):
    pass


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def check_revision(repo: Path, ref: str) -> None:
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise DiffError(f"'{ref}' is not a revision of {repo} (a branch, tag or commit)") from None


def materialize(repo: Path, ref: str, dest: Path) -> Path:
    """The tree of ``ref``, as files, in ``dest``."""
    check_revision(repo, ref)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=repo, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def default_base(repo: Path) -> str:
    for branch in ("main", "origin/main", "master", "origin/master"):
        try:
            return _git(repo, "merge-base", "HEAD", branch)
        except subprocess.CalledProcessError:
            continue
    return "HEAD"


def run(repo: Path, base: str | None = None, head: str | None = None) -> DiffResult:
    """Diff the objects of ``base`` (default: merge-base with main) and ``head`` (default: the
    working tree), two revisions of the git repository ``repo``; or of two directories, when
    ``base`` and ``head`` are both directories (two renders, say)."""
    if base and head and Path(base).is_dir() and Path(head).is_dir():
        return compare(build_objects(Path(base).resolve()), build_objects(Path(head).resolve()), base, head)
    for given in (base, head):
        if given and Path(given).is_dir():
            raise DiffError(f"'{given}' is a directory: opc diff compares two git revisions of one repository "
                            "(opc diff [BASE] [HEAD] --dir REPO), or two directories given as BASE and HEAD")
    repo = repo.resolve()
    try:
        _git(repo, "rev-parse", "--git-dir")
    except subprocess.CalledProcessError:
        raise DiffError(f"{repo} is not a git repository: opc diff compares two revisions of a rendered "
                        "repository (run it inside one, or pass --dir), or two directories given as BASE and HEAD"
                        ) from None
    base = base or default_base(repo)
    base_name = base if len(base) < 40 else base[:12]
    with tempfile.TemporaryDirectory(prefix="opc-diff-") as tmp:
        base_root = materialize(repo, base, Path(tmp) / "base")
        head_root = materialize(repo, head, Path(tmp) / "head") if head else repo
        return compare(build_objects(base_root), build_objects(head_root), base_name, head or "working tree")


def render_text(result: DiffResult) -> str:
    lines = [result.summary()]
    for scope, items in result.by_scope().items():
        lines.append("")
        lines.append(scope)
        for mark, change in items:
            lines.append(f"  {mark} {change.label}")
            if change.diff:
                lines.extend("      " + line for line in change.diff.rstrip("\n").splitlines())
    return "\n".join(lines)


def render_markdown(result: DiffResult) -> str:
    """A pull-request comment: a table per cluster, each change's YAML diff folded."""
    lines = [f"### Rendered objects: {result.summary()}", ""]
    if result.empty:
        lines.append("No object changes.")
        return "\n".join(lines)
    lines += ["| Scope | Change | Object |", "|---|---|---|"]
    words = {"+": "added", "-": "removed", "~": "changed"}
    for scope, items in result.by_scope().items():
        for mark, change in items:
            lines.append(f"| {scope} | {words[mark]} | `{change.label}` |")
    for scope, items in result.by_scope().items():
        for _, change in items:
            if change.diff:
                lines += ["", f"<details><summary>{scope}: {change.label}</summary>", "", "```diff",
                          change.diff.rstrip("\n"), "```", "", "</details>"]
    return "\n".join(lines)


def render_json(result: DiffResult) -> dict[str, Any]:
    return {"base": result.base, "head": result.head,
            "added": [c.as_dict() for c in result.added],
            "removed": [c.as_dict() for c in result.removed],
            "changed": [c.as_dict() for c in result.changed]}
