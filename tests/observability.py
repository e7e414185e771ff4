"""Helpers the observability checks share: the rendered alerts and dashboards, the PromQL in them
(interpolated as Grafana would), promtool, the selectors Prometheus' parser finds, and the metric
catalog of tests/data/known-metrics.yaml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
DASHBOARDS = "platform/observability/hub/dashboards"
# What Grafana substitutes before a query reaches Prometheus; user variables become a label value.
GRAFANA_MACROS = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "1h", "$__auto": "1m"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<query>.+),\s*)?(?P<label>\w+)\)\s*$")
# Labels every series carries beyond the exporter's own: the scrape's target labels and the
# external labels each cluster's Prometheus adds (clusters/<name>/controllers).
EXTERNAL_LABELS = {"cluster", "cloud", "region", "env", "role"}
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service", "node"}
# The services' own metrics (Micrometer), checked against a live scrape in test_services.
SERVICE_PREFIXES = ("grpc_server_", "jvm_", "process_cpu_usage", "process_uptime", "logback_")
PROMETHEUS_BUILTIN = {"up": [], "ALERTS": ["alertname", "alertstate", "severity"], "ALERTS_FOR_STATE": ["alertname"]}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: run scripts/install-tools (make tools)"
    return path


class _Manifests(yaml.SafeLoader):
    """A safe loader that reads a document with application-specific tags (the services'
    ShardingSphere rules: !READWRITE_SPLITTING) as plain data instead of failing."""


_Manifests.add_multi_constructor("!", lambda loader, _tag, node: (
    loader.construct_mapping(node) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_scalar(node)))


def documents(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.load_all(path.read_text(), Loader=_Manifests):
        if isinstance(doc, dict):
            yield doc


def prometheus_rules(repo: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every rendered PrometheusRule, with the file it is in."""
    found = []
    for path in sorted(repo.rglob("*.yaml")):
        if ".git" in path.parts:
            continue
        for doc in documents(path):
            if doc.get("kind") == "PrometheusRule":
                found.append((path, doc))
    return found


def dashboards(repo: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((repo / DASHBOARDS).glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def interpolate(expr: str) -> str:
    """The query as Grafana sends it: macros expanded, template variables given a value."""
    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    return VARIABLE.sub("x", expr)


@dataclass
class Query:
    where: str  # dashboard file and panel, or rule file and rule
    expr: str  # interpolated PromQL


def dashboard_queries(repo: Path) -> list[Query]:
    """Every panel target and every query variable of the rendered dashboards, as PromQL."""
    queries = []
    for name, dashboard in dashboards(repo).items():
        for panel in panels(dashboard):
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    queries.append(Query(f"{name} panel {panel.get('id')} ({panel.get('title')}) "
                                         f"target {target.get('refId')}", interpolate(target["expr"])))
        for variable in (dashboard.get("templating") or {}).get("list") or []:
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = LABEL_VALUES.match(query or "")
            if match and match.group("query"):  # label_values(<series selector>, label): the label must exist
                series, label = match.group("query").strip(), match.group("label")
                series = series.replace("{", f'{{{label}!="", ', 1) if "{" in series else f'{series}{{{label}!=""}}'
                queries.append(Query(f"{name} variable {variable.get('name')}", interpolate(series)))
            elif not match and query:
                queries.append(Query(f"{name} variable {variable.get('name')}", interpolate(query)))
    return queries


def rule_queries(repo: Path) -> list[Query]:
    queries = []
    for path, rule_object in prometheus_rules(repo):
        for group in (rule_object.get("spec") or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                name = rule.get("alert") or rule.get("record")
                queries.append(Query(f"{path.relative_to(repo)} {group['name']}/{name}", rule["expr"]))
    return queries


def recorded_series(repo: Path) -> set[str]:
    return {rule["record"] for _, obj in prometheus_rules(repo)
            for group in (obj.get("spec") or {}).get("groups") or [] for rule in group.get("rules") or []
            if "record" in rule}


# Debian's promtool (Prometheus 2.42) and promtool 3.9.1, the line the clusters run
# (kube-prometheus-stack 82): a rule must satisfy both.
PROMTOOLS = ("promtool", "promtool3")


def promtool_check_rules(groups: list[dict[str, Any]], workdir: Path, name: str = "rules.yaml") -> subprocess.CompletedProcess:
    """`promtool check rules` on a rule file holding these groups, with each promtool; the result
    fails if either fails, and its output is both outputs, each under its promtool's name."""
    path = workdir / name
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    runs = [subprocess.run([tool(exe), "check", "rules", str(path)], capture_output=True, text=True) for exe in PROMTOOLS]
    return subprocess.CompletedProcess(
        runs[0].args, max(r.returncode for r in runs),
        "".join(f"[{exe}]\n{r.stdout}" for exe, r in zip(PROMTOOLS, runs, strict=True)),
        "".join(f"[{exe}]\n{r.stderr}" for exe, r in zip(PROMTOOLS, runs, strict=True)))


def as_recording_rules(queries: list[Query]) -> list[dict[str, Any]]:
    """Dashboard queries wrapped as recording rules, so that promtool parses each of them."""
    return [{"name": "dashboard-queries",
             "rules": [{"record": f"dashboard:query_{index}:expr", "expr": q.expr} for index, q in enumerate(queries)]}]


@dataclass
class Selector:
    metric: str
    labels: dict[str, str]


def selectors(exprs: list[str]) -> list[list[Selector] | str]:
    """For each expression, the selectors Prometheus' parser finds in it, or its parse error."""
    if not exprs:
        return []
    out = subprocess.run([tool("promql-selectors")], input="".join(json.dumps(e) + "\n" for e in exprs),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    results: list[list[Selector] | str] = []
    for line in out:
        parsed = json.loads(line)
        if parsed.get("error"):
            results.append(parsed["error"])
        else:
            results.append([Selector(s["metric"], s["labels"]) for s in parsed["selectors"]])
    return results


@lru_cache(maxsize=1)
def known_metrics() -> dict[str, set[str]]:
    """metric name -> label names it may carry (its own, the scrape's and the cluster's)."""
    catalog = yaml.safe_load((DATA / "known-metrics.yaml").read_text())
    known: dict[str, set[str]] = {}
    for exporter in catalog.values():
        extra = set(exporter.get("target_labels") or []) | EXTERNAL_LABELS
        for metric, labels in exporter["metrics"].items():
            known.setdefault(metric, set()).update(set(labels or []) | extra)
    for metric, labels in PROMETHEUS_BUILTIN.items():
        known[metric] = set(labels) | SCRAPE_LABELS | EXTERNAL_LABELS
    return known


def unknown_selections(queries: list[Query], recorded: set[str]) -> list[str]:
    """Metrics or labels the queries select that nothing exposes (service metrics excepted)."""
    problems = []
    known = known_metrics()
    for query, found in zip(queries, selectors([q.expr for q in queries]), strict=True):
        if isinstance(found, str):
            problems.append(f"{query.where}: does not parse: {found}")
            continue
        for selector in found:
            if selector.metric.startswith(SERVICE_PREFIXES) or selector.metric in recorded:
                continue
            if selector.metric not in known:
                problems.append(f"{query.where}: metric {selector.metric} is exposed by nothing the platform runs")
                continue
            for label in selector.labels:
                if label not in known[selector.metric]:
                    problems.append(f"{query.where}: {selector.metric} has no label {label}")
    return problems


def service_selections(queries: list[Query]) -> list[Selector]:
    """The selectors of the services' own metrics (checked against a live scrape)."""
    picked = []
    for found in selectors([q.expr for q in queries]):
        if isinstance(found, list):
            picked.extend(s for s in found if s.metric.startswith(SERVICE_PREFIXES))
    return picked


@lru_cache(maxsize=1)
def exporter_of() -> dict[str, str]:
    """metric name -> the exporter (entry of known-metrics.yaml) that exposes it."""
    catalog = yaml.safe_load((DATA / "known-metrics.yaml").read_text())
    return {metric: exporter for exporter, entry in catalog.items() for metric in entry["metrics"]}


def scrapers(repo: Path) -> dict[str, bool]:
    """Which exporters the rendered repository has Prometheus scrape (monitors, or the release or
    operator setting that creates them)."""
    objects = [doc for path in sorted(repo.rglob("*.yaml")) if ".git" not in path.parts for doc in documents(path)]
    monitors = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
                if o.get("kind") in ("ServiceMonitor", "PodMonitor")}
    company = yaml.safe_load((repo / ".copier-answers.yml").read_text())["company_slug"]
    collectors = [o for o in objects if o.get("kind") == "OpenTelemetryCollector"]
    return {
        "dapr": {("PodMonitor", company, "dapr-sidecars"), ("PodMonitor", "dapr-system", "dapr-control-plane")} <= monitors,
        "istio": {("PodMonitor", company, "envoy-stats"), ("ServiceMonitor", "istio-system", "istiod")} <= monitors,
        "fluentd": ("PodMonitor", "logging", "fluentd") in monitors,
        # kube-prometheus-stack's own monitors: kubelet/cAdvisor, kube-state-metrics, node-exporter
        "kubernetes": (repo / "infrastructure/controllers/kube-prometheus-stack/release.yaml").is_file(),
        "otelcol": bool(collectors) and all(
            ((c["spec"].get("observability") or {}).get("metrics") or {}).get("enableMetrics") for c in collectors),
    }


def unscraped_selections(queries: list[Query], repo: Path) -> list[str]:
    """Metrics the queries select whose exporter nothing in the repository scrapes."""
    scraped, owner = scrapers(repo), exporter_of()
    problems = []
    for query, found in zip(queries, selectors([q.expr for q in queries]), strict=True):
        for selector in found if isinstance(found, list) else []:
            exporter = owner.get(selector.metric)
            if exporter and not scraped.get(exporter):
                problems.append(f"{query.where}: {selector.metric} comes from {exporter}, which nothing scrapes")
    return problems
