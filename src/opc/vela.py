"""KubeVela's own CLI expands an Application offline (`vela dry-run --offline`) with definitions
from files: what the controller would create for each component, per topology policy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .kustomize import parse_documents

# vela needs a kubeconfig even offline; nothing is ever sent to this address.
OFFLINE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
users: [{name: offline, user: {token: offline}}]
"""


class VelaError(RuntimeError):
    pass


def vela_command() -> str:
    from .tools import ToolMissing, find

    try:
        return find("vela")
    except ToolMissing as exc:
        raise VelaError(str(exc)) from None


def single_definitions(paths: list[Path]) -> list[Path]:
    """The files among ``paths`` that hold exactly one *Definition object (vela reads one per file)."""
    chosen = []
    for path in paths:
        if path.suffix == ".cue":
            chosen.append(path)
            continue
        docs = parse_documents(path.read_text(encoding="utf-8"))
        if len(docs) == 1 and str(docs[0].get("kind", "")).endswith("Definition"):
            chosen.append(path)
    return chosen


def dry_run(application: Path, definitions: list[Path], timeout: int = 300) -> list[dict[str, Any]]:
    """The objects KubeVela would create for ``application``, with ``definitions`` (YAML files of one
    definition each, or CUE files) as the only definitions it knows."""
    return [obj for _, obj in expand(application, definitions, timeout)]


TOPOLOGY = re.compile(r"^# Application\(.* with topology (?P<policy>[^)\s]+)\)", re.M)


def _only_referenced(application: dict[str, Any], definitions: list[Path]) -> list[Path]:
    """The definitions the Application names (component, trait, policy and workflow-step types);
    vela's fake API server refuses two definitions of one name, so no more than needed."""
    spec = application.get("spec") or {}
    wanted = {c.get("type") for c in spec.get("components") or []}
    wanted |= {t.get("type") for c in spec.get("components") or [] for t in c.get("traits") or []}
    wanted |= {p.get("type") for p in spec.get("policies") or []}
    wanted |= {s.get("type") for s in (spec.get("workflow") or {}).get("steps") or []}
    chosen = []
    for path in single_definitions(definitions):
        if path.suffix == ".cue":
            chosen.append(path)
            continue
        definition = parse_documents(path.read_text(encoding="utf-8"))[0]
        if (definition.get("metadata") or {}).get("name") in wanted:
            chosen.append(path)
    return chosen


EMBEDDED = re.compile(r"failed to add object &\{map\[apiVersion:\S+ kind:(?P<kind>\w+) "
                      r"metadata:map\[.*?name:(?P<name>\S+) ")


def expand(application: Path, definitions: list[Path], timeout: int = 300) -> list[tuple[str | None, dict[str, Any]]]:
    """Like ``dry_run``, with the topology policy each object is rendered for (vela prints one
    section per topology: ``# Application(<name> with topology <policy>) -- Component(...)``).

    Definitions vela already embeds (it panics on a second one) are left to vela's own copy."""
    app = parse_documents(application.read_text(encoding="utf-8"))[0]
    chosen = _only_referenced(app, definitions)
    for _ in range(len(chosen) + 1):
        proc = _dry_run(application, chosen, timeout)
        clash = EMBEDDED.search(proc.stderr) if proc.returncode != 0 else None
        if clash is None:
            break
        kind, name = clash.group("kind"), clash.group("name")
        chosen = [p for p in chosen if p.suffix == ".cue" or not _named(p, kind, name)]
    if proc.returncode != 0:
        raise VelaError(_reason(proc))
    out: list[tuple[str | None, dict[str, Any]]] = []
    policy: str | None = None
    for document in re.split(r"^---\s*$", proc.stdout, flags=re.M):
        heading = TOPOLOGY.search(document)
        if heading:
            policy = heading.group("policy")
        out.extend((policy, obj) for obj in parse_documents(document))
    return out


def _named(path: Path, kind: str, name: str) -> bool:
    definition = parse_documents(path.read_text(encoding="utf-8"))[0]
    return bool(definition.get("kind") == kind and (definition.get("metadata") or {}).get("name") == name)


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stderr or proc.stdout).strip()
    for line in text.splitlines():
        if line.startswith(("Error:", "panic:")):
            return " ".join(line.split())[:500]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"vela dry-run exited {proc.returncode}"


def _dry_run(application: Path, definitions: list[Path], timeout: int) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="opc-vela-") as tmp:
        work = Path(tmp)
        defs = work / "definitions"
        defs.mkdir()
        for index, path in enumerate(definitions):
            shutil.copy(path, defs / f"{index:03d}-{path.name}")
        (work / "kubeconfig").write_text(OFFLINE_KUBECONFIG)
        env = {"KUBECONFIG": str(work / "kubeconfig"), "HOME": str(work), "PATH": os.environ.get("PATH", "")}
        return subprocess.run([vela_command(), "dry-run", "--offline", "-d", str(defs), "-f", str(application)],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
