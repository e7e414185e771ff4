"""Every values key a release sets must be one its chart reads.

Helm ignores a values key that no template reads, so a misspelt or outdated key changes nothing
and says nothing. A key path is known when it exists in the chart's ``values.yaml`` (a
subchart's values under its name or alias, ``global`` shared by all; Istio's charts document
theirs under ``_internal_defaults_do_not_set``), when a template of the chart reads it or a
map above it (``.Values.a.b``, ``index .Values "a" "b"``), when the chart's
``values.schema.json`` defines it, or when it sits under a map the chart documents as
free-form: the short list below, each a Kubernetes field or a pass-through that charts render
as given (their content is then checked by the strict schema validation of the rendered
objects).
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .kustomize import parse_documents

# Values that charts pass through to the rendered objects as they are: Kubernetes pod and container
# fields, metadata maps, and extra-* lists. Keep this list explicit and small.
FREE_FORM = frozenset({
    "resources", "securityContext", "podSecurityContext", "containerSecurityContext", "affinity", "tolerations",
    "nodeSelector", "annotations", "labels", "podAnnotations", "podLabels", "extraEnv", "env", "extraArgs",
    "extraVolumes", "extraVolumeMounts", "topologySpreadConstraints", "livenessProbe", "readinessProbe",
    "startupProbe", "serviceAnnotations", "commonLabels",
})


@dataclass
class ChartValues:
    """The values a chart (and its subcharts) documents, and the paths its templates read."""

    defaults: dict[str, Any]
    schema: dict[str, Any] | None
    subcharts: dict[str, ChartValues] = field(default_factory=dict)
    read: frozenset[tuple[str, ...]] = frozenset()

    def reads(self, path: list[str]) -> bool:
        """A template reads ``path``, a map above it, or something under it."""
        wanted = tuple(path)
        return any(r[: len(wanted)] == wanted or wanted[: len(r)] == r for r in self.read)


DOT_PATH = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INDEX_PATH = re.compile(r"index\s+\$?\.Values((?:\s+\"[^\"]+\")+)")


def template_reads(texts: list[str]) -> frozenset[tuple[str, ...]]:
    """The values paths that templates name literally."""
    found: set[tuple[str, ...]] = set()
    for text in texts:
        found.update(tuple(m.group(1).strip(".").split(".")) for m in DOT_PATH.finditer(text))
        found.update(tuple(re.findall(r'"([^"]+)"', m.group(1))) for m in INDEX_PATH.finditer(text))
    return frozenset(found)


def _documented(values: dict[str, Any]) -> dict[str, Any]:
    internal = values.get("_internal_defaults_do_not_set")
    return {**internal, **values} if isinstance(internal, dict) else values


def _load_yaml(text: str) -> dict[str, Any]:
    documents = parse_documents(text)
    loaded = documents[0] if documents else {}
    return loaded if isinstance(loaded, dict) else {}


def _from_archive(path: Path) -> ChartValues:
    with tarfile.open(path) as archive:
        files = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if m.isfile() and "/" in m.name}

        def read(name: str) -> str | None:
            member = files.get(name)
            handle = archive.extractfile(member) if member else None
            return handle.read().decode() if handle else None

        values = _load_yaml(read("values.yaml") or "")
        schema_text = read("values.schema.json")
        chart = _load_yaml(read("Chart.yaml") or "")
        templates = [read(n) or "" for n in files if n.startswith("templates/")]
    return ChartValues(_documented(values), json.loads(schema_text) if schema_text else None, _aliases(chart, {}),
                       template_reads(templates))


def _aliases(chart: dict[str, Any], found: dict[str, ChartValues]) -> dict[str, ChartValues]:
    """Subcharts by the key their values live under: the dependency's alias, else its name."""
    out = {}
    for dependency in chart.get("dependencies") or []:
        name = dependency.get("name")
        if name in found:
            out[dependency.get("alias") or name] = found[name]
    return out


@cache
def chart_values(chart_dir: Path) -> ChartValues:
    values = _load_yaml((chart_dir / "values.yaml").read_text()) if (chart_dir / "values.yaml").is_file() else {}
    schema_file = chart_dir / "values.schema.json"
    schema = json.loads(schema_file.read_text()) if schema_file.is_file() else None
    found: dict[str, ChartValues] = {}
    charts = chart_dir / "charts"
    if charts.is_dir():
        for sub in sorted(charts.iterdir()):
            if (sub / "Chart.yaml").is_file():
                name = _load_yaml((sub / "Chart.yaml").read_text()).get("name", sub.name)
                found[str(name)] = chart_values(sub)
            elif sub.suffix == ".tgz":
                with tarfile.open(sub) as archive:
                    top = archive.getnames()[0].split("/")[0]
                found[top] = _from_archive(sub)
    chart = _load_yaml((chart_dir / "Chart.yaml").read_text()) if (chart_dir / "Chart.yaml").is_file() else {}
    subcharts = _aliases(chart, found)
    for name, sub_values in found.items():  # a subchart that no dependency names still reads its own name
        subcharts.setdefault(name, sub_values)
    templates = [p.read_text(errors="replace") for p in sorted((chart_dir / "templates").rglob("*"))
                 if p.is_file()] if (chart_dir / "templates").is_dir() else []
    return ChartValues(_documented(values), schema, subcharts, template_reads(templates))


def _schema_allows(schema: dict[str, Any] | None, path: list[str]) -> bool:
    """Whether a values.schema.json defines ``path`` (or leaves that level open)."""
    node = schema
    for key in path:
        if not isinstance(node, dict):
            return False
        properties = node.get("properties") or {}
        if key in properties:
            node = properties[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return False
    return True


def _globals(chart: ChartValues) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for sub in chart.subcharts.values():
        merged.update(_globals(sub))
    merged.update(chart.defaults.get("global") or {})
    return merged


def _known(default_maps: list[Any]) -> dict[str, Any]:
    """The keys documented at one level, by every source that documents that level."""
    known: dict[str, Any] = {}
    for found in default_maps:
        if isinstance(found, dict):
            for key, value in found.items():
                if isinstance(value, dict) and isinstance(known.get(key), dict):
                    known[key] = {**known[key], **value}
                else:
                    known.setdefault(key, value)
    return known


def unknown_keys(values: dict[str, Any], chart: ChartValues) -> list[str]:
    """Dotted paths of ``values`` that the chart does not read."""
    problems: list[str] = []

    def walk(given: dict[str, Any], defaults: dict[str, Any], schema: dict[str, Any] | None, at: list[str],
             node: ChartValues, prefix: list[str]) -> None:
        for key, value in given.items():
            path = [*at, str(key)]
            if not at and key in node.subcharts and isinstance(value, dict):
                sub = node.subcharts[key]
                walk(value, _known([sub.defaults, defaults.get(key)]), sub.schema, [], sub, [*prefix, str(key)])
            elif not at and key == "global":
                if isinstance(value, dict):
                    walk(value, _known([_globals(node), defaults.get("global")]), None, path, node, prefix)
            elif key in defaults:
                default = defaults[key]
                if key not in FREE_FORM and isinstance(value, dict) and isinstance(default, dict):
                    walk(value, default, schema, path, node, prefix)
            elif node.reads(path) or (not (at and at[0] == "global") and _schema_allows(schema, path)):
                continue
            else:
                problems.append(".".join([*prefix, *path]))

    walk(values, chart.defaults, chart.schema, [], chart, [])
    return problems


def check_values(report: Any) -> list[Any]:
    """A finding for every values key a rendered release sets that its chart does not read."""
    from .validate import Finding

    findings = []
    seen: set[tuple[str, str]] = set()
    for rendered in report.releases:
        release = rendered.release
        if rendered.chart_dir is None:
            continue
        for key in unknown_keys(release.values, chart_values(rendered.chart_dir)):
            if (release.subject, key) in seen:
                continue
            seen.add((release.subject, key))
            findings.append(Finding("values", release.unit, release.subject,
                                    f"values key '{key}' is not read by chart {release.chart.chart} "
                                    f"{release.chart.version}"))
    return findings
