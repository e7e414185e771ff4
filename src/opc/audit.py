"""An audit of everything the clusters receive by two independent scanners: kube-score (Go) and
checkov (Python), over the repository's own objects, the charts' output and what KubeVela and
Argo CD's path sources deliver.

Each object goes to the scanners as a file of its own (checkov reads nothing out of a large
multi-document file), once however many clusters receive it. Neither scanner knows OpenKruise's
workloads, so a CloneSet (the company's services run as CloneSets) is also shown to them as the
Deployment it stands for: the same pod template, so its pods are judged, and the Services and
NetworkPolicies that select them find them. CustomResourceDefinitions are left out: they are
schemas, neither scanner has a check for the kind (tests/test_audit.py asks each scanner), and
they are most of the bytes (all-clouds-flux: 11.4 of 13.5 MB; checkov 46 -> 13 CPU-s).

What a scanner reports is a finding unless an ``audit-skips.yaml`` entry (in the folder of the
component it concerns, or at the top for checks the whole platform declines) names the tool, the
check and the objects, with the reason; ``from: charts`` limits an entry to the charts' output,
so the same check still holds for what the repository renders itself.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .validate import Finding, Report, repository_entries

SKIPS = "audit-skips.yaml"
SCANNERS = ("kube-score", "checkov")
SOURCES = ("all", "charts", "repository")
CHECKOV_VERSION = "3.3.30"


class AuditError(RuntimeError):
    pass


@dataclass(frozen=True)
class Skip:
    tool: str
    checks: tuple[str, ...]  # globs over the check's id
    objects: str  # a glob over "<Kind> <namespace>/<name>" ("<Kind> <name>" when cluster-scoped)
    source: str  # all | charts (the charts' output) | repository (what the repository renders itself)
    reason: str
    where: str

    def covers(self, raw: Raw) -> bool:
        return (self.tool == raw.tool and any(fnmatch.fnmatchcase(raw.check, c) for c in self.checks)
                and fnmatch.fnmatchcase(raw.subject, self.objects) and self.source in ("all", raw.source))


@dataclass(frozen=True)
class Raw:
    """One failed check of one object, as a scanner reports it."""

    tool: str
    check: str
    subject: str
    message: str
    where: str
    source: str  # charts | repository


def load_skips(root: Path) -> tuple[list[Skip], list[Finding]]:
    skips = []
    entries, problems = repository_entries(root, SKIPS, "audit")
    for rel, index, entry in entries:
        if (not isinstance(entry, dict) or entry.get("tool") not in SCANNERS or not entry.get("check")
                or not str(entry.get("reason", "")).strip() or entry.get("from", "all") not in SOURCES):
            problems.append(Finding("audit", rel, f"entry {index}", f"a skip needs tool ({' | '.join(SCANNERS)}), "
                                    f"check (an id or a list) and reason (objects: a glob, default every object; from: "
                                    f"{' | '.join(SOURCES)}, default all)"))
            continue
        checks = entry["check"] if isinstance(entry["check"], list) else [entry["check"]]
        skips.append(Skip(str(entry["tool"]), tuple(map(str, checks)), str(entry.get("objects") or "*"),
                          str(entry.get("from", "all")), " ".join(str(entry["reason"]).split()), rel))
    return skips, problems


def subject_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def _as_deployment(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A CloneSet as the Deployment it stands for (the scanners know no OpenKruise kind)."""
    if obj.get("kind") != "CloneSet" or not str(obj.get("apiVersion", "")).startswith("apps.kruise.io/"):
        return None
    spec = obj.get("spec") or {}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": copy.deepcopy(obj.get("metadata") or {}),
            "spec": {key: copy.deepcopy(spec[key]) for key in ("replicas", "selector", "template") if key in spec}}


UNCHECKED_KINDS = {("apiextensions.k8s.io", "CustomResourceDefinition")}


def audited_objects(report: Report) -> list[tuple[str, dict[str, Any], str]]:
    """(where, object, source) for every distinct object any cluster receives but those of the
    kinds no scanner checks, CloneSets also as Deployments; source: charts or repository."""
    from .policy import _synced_objects

    synced = _synced_objects(report)
    from_charts = {id(o) for rendered in report.releases for o in rendered.objects}
    seen: set[str] = set()
    out = []
    for cluster, built in sorted(report.cluster_objects().items()):
        known = {id(o) for _, o in built}
        for where, obj in built + [(w, o) for w, o in synced.get(cluster, []) if id(o) not in known]:
            if (str(obj.get("apiVersion", "")).split("/")[0], obj.get("kind")) in UNCHECKED_KINDS:
                continue
            for shown in (obj, _as_deployment(obj)):
                if shown is None:
                    continue
                key = hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()
                if key not in seen:
                    seen.add(key)
                    out.append((where, shown, "charts" if id(obj) in from_charts else "repository"))
    return out


_Dumper: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 10x


def _write(objects: list[tuple[str, dict[str, Any], str]], folder: Path) -> dict[str, tuple[str, str, str]]:
    """One file per object; file name -> (subject, where, source)."""
    names = {}
    for index, (where, obj, source) in enumerate(objects):
        name = f"{index:05d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', subject_of(obj))[:80]}.yaml"
        (folder / name).write_text("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False), encoding="utf-8")
        names[name] = (subject_of(obj), where, source)
    return names


def _program(name: str) -> str:
    """A scanner from the tools cache (`opc tools install kube-score checkov`), else from PATH."""
    from .tools import ToolMissing, find

    try:
        return find(name)
    except ToolMissing as exc:
        raise AuditError(str(exc)) from exc


def _kube_score(folder: Path, names: dict[str, tuple[str, str, str]]) -> Iterator[Raw]:
    from .tools import KUBERNETES

    minor = ".".join(KUBERNETES.split(".")[:2])  # the Kubernetes line the platform targets
    proc = subprocess.run([_program("kube-score"), "score", "--output-format", "json", "--kubernetes-version", minor,
                           *sorted(str(folder / n) for n in names)],
                          capture_output=True, text=True, check=False)
    try:
        scored = json.loads(proc.stdout or "null")
    except json.JSONDecodeError:
        scored = None
    if not isinstance(scored, list):
        raise AuditError(f"kube-score failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}")
    for result in scored:
        subject, where, source = names[Path(result["file_name"]).name]
        for check in result.get("checks") or []:
            if check.get("skipped") or check.get("grade", 10) >= 10:
                continue
            comments = "; ".join(" ".join(filter(None, (c.get("path"), c.get("summary"))))
                                 for c in check.get("comments") or []) or check["check"]["name"]
            yield Raw("kube-score", check["check"]["id"], subject, comments, where, source)


def _checkov(folder: Path, names: dict[str, tuple[str, str, str]]) -> Iterator[Raw]:
    proc = subprocess.run([_program("checkov"), "--directory", str(folder), "--framework", "kubernetes", "--output",
                           "json", "--quiet", "--compact", "--skip-download"],
                          capture_output=True, text=True, check=False)
    try:
        result = json.loads(proc.stdout or "null")
    except json.JSONDecodeError:
        result = None
    if isinstance(result, list):
        result = next((r for r in result if r.get("check_type") == "kubernetes"), None)
    if not isinstance(result, dict) or "results" not in result:
        raise AuditError(f"checkov failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1000:]}")
    if result["summary"].get("parsing_errors"):
        raise AuditError(f"checkov could not parse {result['summary']['parsing_errors']} of the objects")
    for failed in result["results"].get("failed_checks") or []:
        subject, where, source = names[Path(failed["file_path"]).name]
        yield Raw("checkov", failed["check_id"], subject, failed["check_name"], where, source)


def scan(report: Report) -> tuple[list[Raw], int]:
    """What both scanners report over every object the clusters receive, and how many objects."""
    objects = audited_objects(report)
    with tempfile.TemporaryDirectory(prefix="opc-audit-") as tmp:
        folder = Path(tmp)
        names = _write(objects, folder)
        raws = sorted(set(_kube_score(folder, names)) | set(_checkov(folder, names)),
                      key=lambda r: (r.tool, r.check, r.subject))
    return raws, len(objects)


def check_audit(report: Report, raws: list[Raw]) -> tuple[list[Finding], dict[Skip, int]]:
    """A finding per reported check no skip covers, and how many each skip covered."""
    skips, findings = load_skips(report.root)
    used = dict.fromkeys(skips, 0)
    for raw in raws:
        skip = next((s for s in skips if s.covers(raw)), None)
        if skip is None:
            findings.append(Finding("audit", raw.where, raw.subject, f"{raw.tool} {raw.check}: {raw.message}"))
        else:
            used[skip] += 1
    return findings, used


def install_checkov(out: Path) -> None:
    """checkov in a virtual environment of its own (its dependencies stay out of opc's)."""
    import venv

    venv.create(out / "venv", with_pip=True)
    pip = out / "venv" / "bin" / "pip"
    proc = subprocess.run([str(pip), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise AuditError(f"pip could not install checkov {CHECKOV_VERSION}: {proc.stderr.strip()[-1500:]}")
    # The venv's own scripts name the interpreter by the path it was made at; this one finds it
    # beside itself, so the folder can move into the cache.
    wrapper = out / "checkov"
    program = ("import sys, warnings; warnings.simplefilter('ignore', SyntaxWarning); "
               "from checkov.main import Checkov; sys.exit(Checkov().run())")
    here = '"$(dirname "$(readlink -f "$0")")"'
    wrapper.write_text(f'#!/bin/sh\nexec {here}/venv/bin/python -c "{program}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
