"""`opc validate`: build every kustomization, validate every object strictly, lint every YAML file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import kustomize
from .lint import LintProblem, lint_tree
from .schemas import DEFAULT_KUBERNETES_VERSION, Outcome, SchemaStore


def object_id(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


@dataclass
class Finding:
    category: str  # build | invalid | missing | lint | policy | wiring
    where: str  # a path relative to the repository root
    subject: str  # the object, or "" for a whole file
    message: str

    def __str__(self) -> str:
        subject = f" {self.subject}:" if self.subject else ""
        return f"{self.category.upper():8} {self.where}:{subject} {self.message}"


@dataclass
class Report:
    root: Path
    kustomizations: int = 0
    built: int = 0
    valid: int = 0
    invalid: int = 0
    missing: int = 0
    lint_files: int = 0
    lint_config: str = ""
    findings: list[Finding] = field(default_factory=list)
    builds: list[kustomize.Build] = field(default_factory=list)

    @property
    def lint_problems(self) -> int:
        return sum(1 for f in self.findings if f.category == "lint")

    @property
    def wiring_errors(self) -> int:
        return sum(1 for f in self.findings if f.category == "wiring")

    @property
    def policy_violations(self) -> int:
        return sum(1 for f in self.findings if f.category == "policy")

    @property
    def failed_builds(self) -> int:
        return self.kustomizations - self.built

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        return (
            f"{self.built} kustomizations built, {self.valid} objects valid, {self.invalid} invalid, "
            f"{self.missing} missing; {self.failed_builds} failed builds; "
            f"yamllint: {self.lint_files} files, {self.lint_problems} problems; "
            f"policy: {self.policy_violations} violations; wiring: {self.wiring_errors} errors"
        )

    def objects(self) -> list[tuple[str, dict[str, Any]]]:
        """(kustomization path, object) for every object of every successful build."""
        return [(self.rel(b.path), o) for b in self.builds if b.ok for o in b.objects]

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)


Progress = Callable[[str], None]
WiringCheck = Callable[[Report], list[Finding]]


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def validate_repo(
    root: Path,
    schema_dirs: list[Path],
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
    jobs: int | None = None,
    progress: Progress | None = None,
    lint: bool = True,
    wiring: list[WiringCheck] | None = None,
    schema_locations: list[str] | None = None,
) -> Report:
    root = root.resolve()
    report = Report(root)
    store = SchemaStore(schema_dirs, kubernetes_version, schema_locations or [])
    paths = kustomize.find_kustomizations(root)
    report.kustomizations = len(paths)
    say = progress or (lambda _msg: None)
    say(f"building {len(paths)} kustomizations under {root}")

    cache: dict[str, Outcome] = {}
    width = len(str(len(paths)))
    for index, build in enumerate(kustomize.build_all(paths, jobs=jobs), start=1):
        report.builds.append(build)
        where = report.rel(build.path)
        if not build.ok:
            report.findings.append(Finding("build", where, "", build.error.splitlines()[-1] if build.error else "failed"))
            say(f"[{index:>{width}}/{len(paths)}] {where}: BUILD FAILED")
            continue
        report.built += 1
        bad = 0
        for obj in build.objects:
            key = _digest(obj)
            outcome = cache.get(key)
            if outcome is None:
                outcome = cache[key] = store.validate(obj)
            if outcome.status == "valid":
                report.valid += 1
                continue
            bad += 1
            if outcome.status == "missing":
                report.missing += 1
            else:
                report.invalid += 1
            for message in outcome.errors:
                report.findings.append(Finding(outcome.status, where, object_id(obj), message))
        status = f"{len(build.objects)} objects" + (f", {bad} with errors" if bad else "")
        say(f"[{index:>{width}}/{len(paths)}] {where}: {status}")

    if lint:
        files, problems, source = lint_tree(root)
        report.lint_files, report.lint_config = files, source
        report.findings.extend(Finding("lint", p.path, "", f"{p.line}:{p.column} {p.message} ({p.rule})") for p in problems)
        say(f"yamllint ({source}): {files} files, {len(problems)} problems")

    for check in wiring or []:
        report.findings.extend(check(report))
    return report


__all__ = ["Finding", "LintProblem", "Report", "validate_repo", "object_id"]
