"""Observability, each part accepted by its own tool: promtool parses every alert, recording rule
and dashboard query; the dashboards hold together (ids, datasources, schema); every metric queried
is one something the platform runs exposes; the OpenTelemetry Collector accepts its configuration;
Dapr components use only documented metadata. Every check is also shown failing on a broken input."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from observability import (
    DASHBOARDS,
    Query,
    as_recording_rules,
    dashboard_queries,
    dashboards,
    documents,
    panels,
    prometheus_rules,
    promtool_check_rules,
    recorded_series,
    rule_queries,
    tool,
    unknown_selections,
    unscraped_selections,
)

from opc.runtime import check_dapr, check_telemetry, component_problems
from opc.validate import validate_repo

FIXTURES = ["valid/aliyun-prod-flux.yml", "valid/all-clouds-argocd.yml", "valid/three-services.yml"]
# The Grafana dashboard JSON model version the dashboards are written for (Grafana 11/12).
SCHEMA_VERSION = 39


# --- promtool ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES)
def test_promtool_accepts_every_prometheus_rule(fixture: str, rendered, tmp_path: Path):
    repo = rendered(fixture)
    found = prometheus_rules(repo)
    assert len(found) == 3  # per-service SLOs, runtime alerts (workload clusters), platform alerts
    total = 0
    for index, (path, rule_object) in enumerate(found):
        groups = rule_object["spec"]["groups"]
        result = promtool_check_rules(groups, tmp_path, f"rules-{index}.yaml")
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
        count = sum(len(g["rules"]) for g in groups)
        assert result.stdout.count(f"SUCCESS: {count} rules found") == 2  # both promtools
        total += count
    services = len(yaml.safe_load((repo / ".copier-answers.yml").read_text())["services"])
    # per service: 2 objectives x 5 windows recorded, 2 objectives x 2 severities alerted
    assert total == 6 + services * (10 + 4)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_promtool_parses_every_dashboard_query(fixture: str, rendered, tmp_path: Path):
    queries = dashboard_queries(rendered(fixture))
    assert len(queries) >= 45
    result = promtool_check_rules(as_recording_rules(queries), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(f"SUCCESS: {len(queries)} rules found") == 2


def test_promtool_rejects_broken_rules_and_queries(rendered, tmp_path: Path):
    repo = rendered("valid/aliyun-prod-flux.yml")
    rule_object = next(obj for _, obj in prometheus_rules(repo) if obj["metadata"]["name"] == "service-slos")
    groups = copy.deepcopy(rule_object["spec"]["groups"])
    groups[0]["rules"][0]["expr"] = groups[0]["rules"][0]["expr"].replace("[5m]))", "[5m])", 1)
    broken = promtool_check_rules(groups, tmp_path, "broken-rule.yaml")
    assert broken.returncode != 0 and "parse error" in (broken.stdout + broken.stderr)

    alert = copy.deepcopy(rule_object["spec"]["groups"])
    alert[0]["rules"][-1]["for"] = "ten minutes"
    assert promtool_check_rules(alert, tmp_path, "broken-for.yaml").returncode != 0

    queries = dashboard_queries(repo)
    queries[3] = Query(queries[3].where, queries[3].expr + " by (cluster")
    broken = promtool_check_rules(as_recording_rules(queries), tmp_path, "broken-query.yaml")
    assert broken.returncode != 0 and "dashboard:query_3:expr" in (broken.stdout + broken.stderr)


# --- dashboards ------------------------------------------------------------------------------------

def dashboard_problems(repo: Path) -> list[str]:
    """Structural problems of the rendered dashboards: ids, datasources, schema, provisioning."""
    problems = []
    datasources = set()
    provisioned = set()
    for path in (repo / "platform/observability/hub").rglob("*.yaml"):
        for doc in documents(path):
            if doc.get("kind") == "GrafanaDatasource":
                datasources.add(doc["spec"]["datasource"]["uid"])
            if doc.get("kind") == "GrafanaDashboard":
                provisioned.add(doc["spec"]["configMapRef"]["key"])
    uids = {}
    for name, dashboard in dashboards(repo).items():
        if dashboard.get("schemaVersion") != SCHEMA_VERSION:
            problems.append(f"{name}: schemaVersion {dashboard.get('schemaVersion')}, expected {SCHEMA_VERSION}")
        if not dashboard.get("uid") or dashboard["uid"] in uids:
            problems.append(f"{name}: uid '{dashboard.get('uid')}' missing or shared with {uids.get(dashboard.get('uid'))}")
        uids[dashboard.get("uid")] = name
        if not dashboard.get("title"):
            problems.append(f"{name}: no title")
        if name not in provisioned:
            problems.append(f"{name}: no GrafanaDashboard provisions it")
        seen_ids = set()
        for panel in panels(dashboard):
            pid = panel.get("id")
            if not isinstance(pid, int) or pid in seen_ids:
                problems.append(f"{name}: panel id {pid!r} missing or duplicated")
            seen_ids.add(pid)
            if panel.get("type") == "row":
                continue
            if not {"h", "w", "x", "y"} <= set(panel.get("gridPos") or {}):
                problems.append(f"{name}: panel {pid} has no complete gridPos")
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets") or []]
            for source in filter(None, sources):
                if source.get("uid") not in datasources:
                    problems.append(f"{name}: panel {pid} uses datasource uid '{source.get('uid')}', "
                                    f"which no GrafanaDatasource defines ({', '.join(sorted(datasources))})")
            refs = [t.get("refId") for t in panel.get("targets") or []]
            if not refs or len(set(refs)) != len(refs):
                problems.append(f"{name}: panel {pid} has no targets or repeats a refId ({refs})")
        for variable in (dashboard.get("templating") or {}).get("list") or []:
            source = variable.get("datasource")
            if variable.get("type") == "query" and (source or {}).get("uid") not in datasources:
                problems.append(f"{name}: variable {variable.get('name')} uses an undefined datasource")
    return problems


@pytest.mark.parametrize("fixture", FIXTURES)
def test_dashboards_hold_together(fixture: str, rendered):
    repo = rendered(fixture)
    found = dashboards(repo)
    assert set(found) == {"platform-overview.json", "service.json", "dapr.json", "istio-mesh.json", "cluster-health.json"}
    assert sum(1 for d in found.values() for p in panels(d) if p.get("type") != "row") >= 35
    assert dashboard_problems(repo) == []


def test_dashboard_checks_catch_broken_dashboards(rendered_copy):
    repo = rendered_copy("valid/aliyun-prod-flux.yml")
    path = repo / DASHBOARDS / "dapr.json"
    dashboard = json.loads(path.read_text())
    dashboard["schemaVersion"] = 16
    dashboard["panels"][1]["id"] = dashboard["panels"][0]["id"]
    dashboard["panels"][2]["datasource"] = {"type": "prometheus", "uid": "thanos"}
    dashboard["panels"][3]["targets"].append(dict(dashboard["panels"][3]["targets"][0]))
    path.write_text(json.dumps(dashboard))
    problems = dashboard_problems(repo)
    assert any("schemaVersion 16" in p for p in problems)
    assert any("duplicated" in p for p in problems)
    assert any("datasource uid 'thanos'" in p for p in problems)
    assert any("repeats a refId" in p for p in problems)


# --- metrics that exist -----------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_queried_metric_is_exposed(fixture: str, rendered):
    """Dapr, Istio, Kubernetes, fluentd and collector metrics against the catalog; the services'
    own metrics are checked against a live scrape in test_services."""
    repo = rendered(fixture)
    queries = dashboard_queries(repo) + rule_queries(repo)
    assert unknown_selections(queries, recorded_series(repo)) == []


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_queried_metric_is_scraped(fixture: str, rendered):
    """Exposed is not enough: a monitor (or the operator or chart that makes one) must scrape it."""
    repo = rendered(fixture)
    assert unscraped_selections(dashboard_queries(repo) + rule_queries(repo), repo) == []


def test_scrape_check_catches_an_unscraped_exporter(rendered_copy):
    repo = rendered_copy("valid/aliyun-prod-flux.yml")
    monitors = repo / "platform/observability/common/monitors.yaml"
    docs = [d for d in documents(monitors) if d["metadata"]["name"] != "fluentd"]
    monitors.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    problems = unscraped_selections(dashboard_queries(repo) + rule_queries(repo), repo)
    assert problems and all("fluentd_" in p and "comes from fluentd, which nothing scrapes" in p for p in problems)
    assert any("FluentdOutputErrors" in p for p in problems)


def test_metric_check_catches_what_nothing_exposes(rendered):
    repo = rendered("valid/aliyun-prod-flux.yml")
    queries = [
        Query("typo", 'sum(rate(dapr_component_pubsub_egres_count{app_id="a"}[5m]))'),
        Query("wrong label", 'sum by (destination_service) (rate(istio_requests_total{status_code="500"}[5m]))'),
        Query("fine", 'sum(rate(istio_requests_total{response_code="500", cluster="x"}[5m]))'),
        Query("unrecorded", "slo:grpc_availability_errors:ratio_rate2d"),
    ]
    problems = unknown_selections(queries, recorded_series(repo))
    assert problems == [
        "typo: metric dapr_component_pubsub_egres_count is exposed by nothing the platform runs",
        "wrong label: istio_requests_total has no label status_code",
        "unrecorded: metric slo:grpc_availability_errors:ratio_rate2d is exposed by nothing the platform runs",
    ]


# --- the OpenTelemetry Collector ----------------------------------------------------------------------

def collector_configs(repo: Path) -> list[tuple[str, dict]]:
    found = []
    for path in sorted(repo.rglob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") == "OpenTelemetryCollector":
                found.append((f"{path.relative_to(repo)} {doc['metadata']['name']}", doc["spec"]["config"]))
    return found


def otelcol_validate(config: dict, path: Path) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([tool("otelcol-opc"), "validate", f"--config=file:{path}"], capture_output=True, text=True)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_collector_accepts_its_configuration(fixture: str, rendered, tmp_path: Path):
    configs = collector_configs(rendered(fixture))
    assert len(configs) == 1
    for where, config in configs:
        result = otelcol_validate(config, tmp_path / "collector.yaml")
        assert result.returncode == 0, f"{where}: {result.stdout}{result.stderr}"
        assert set(config["service"]["pipelines"]) == {"traces", "metrics"}


def test_collector_rejects_a_broken_configuration(rendered, tmp_path: Path):
    (_, config), = collector_configs(rendered("valid/aliyun-prod-flux.yml"))
    undefined = copy.deepcopy(config)
    undefined["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
    result = otelcol_validate(undefined, tmp_path / "undefined.yaml")
    assert result.returncode != 0 and "otlp/nowhere" in result.stdout + result.stderr

    unknown = copy.deepcopy(config)
    unknown["processors"]["batch"]["send_batch_sizes"] = 10
    result = otelcol_validate(unknown, tmp_path / "unknown.yaml")
    assert result.returncode != 0 and "send_batch_sizes" in result.stdout + result.stderr


# --- Dapr ---------------------------------------------------------------------------------------------

def dapr_components(repo: Path) -> list[dict]:
    return [doc for path in sorted((repo / "platform/dapr").rglob("*.yaml")) for doc in documents(path)
            if doc.get("kind") == "Component"]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_dapr_components_use_documented_metadata(fixture: str, rendered):
    repo = rendered(fixture)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    components = dapr_components(repo)
    clouds = answers["clouds"]
    readers = [s["name"] for s in answers["services"] if s.get("secrets")]  # services[].secrets
    # the secret store where a service reads Secrets, and per cloud state + pub/sub
    assert len(components) == bool(readers) + 2 * len(clouds)
    types = {c["spec"]["type"] for c in components}
    assert types == {"state.redis", f"pubsub.{answers.get('pubsub', 'redis')}"} | (
        {"secretstores.kubernetes"} if readers else set())
    for component in components:
        assert component_problems(component) == [], component["metadata"]["name"]
        store = component["spec"]["type"].startswith("secretstores.")
        assert component["scopes"] == (readers if store else [s["name"] for s in answers["services"]])


def test_dapr_metadata_check_catches_mistakes(rendered):
    components = {c["metadata"]["name"]: c for c in dapr_components(rendered("valid/all-clouds-argocd.yml"))}
    state = copy.deepcopy(components["statestore"])
    state["spec"]["metadata"] = [m for m in state["spec"]["metadata"] if m["name"] != "redisHost"]
    state["spec"]["metadata"].append({"name": "redisPassword", "value": "hunter2"})
    state["spec"]["metadata"].append({"name": "enableTLS", "value": "yes"})
    state["spec"]["metadata"].append({"name": "redisHosts", "value": "a:6379"})
    problems = component_problems(state)
    assert "required metadata 'redisHost' of state.redis is missing" in problems
    assert "metadata 'redisPassword' is set twice" in problems
    assert any("'redisPassword' is a credential" in p for p in problems)
    assert "metadata 'enableTLS' is 'yes', not one of true, false" in problems
    assert "metadata 'redisHosts' is not a documented field of state.redis" in problems

    pubsub = copy.deepcopy(components["pubsub"])
    assert pubsub["spec"]["type"] == "pubsub.rocketmq"
    pubsub["spec"]["metadata"] = [m for m in pubsub["spec"]["metadata"] if m["name"] != "nameServer"]
    assert "pubsub.rocketmq needs one of nameServer, nameServerDomain" in component_problems(pubsub)

    kafka = copy.deepcopy(pubsub)
    kafka["spec"]["type"] = "pubsub.kafka"
    assert "has no documented fields" in component_problems(kafka)[0]


def test_dapr_wiring_is_checked_across_the_cluster(rendered_copy, schemas: list[Path], charts):
    """A subscription to a missing pub/sub, a scope naming no service, tracing to no collector."""
    repo = rendered_copy("valid/aliyun-prod-flux.yml")
    subscriptions = repo / "platform/dapr/base/subscriptions.yaml"
    subscriptions.write_text(subscriptions.read_text().replace("pubsubname: pubsub", "pubsubname: events")
                             .replace("  - order-service", "  - billing-service"))
    configuration = repo / "platform/dapr/base/configuration.yaml"
    configuration.write_text(configuration.read_text().replace("cluster-collector.", "traces-collector."))
    report = validate_repo(repo, schemas, lint=False, wiring=[check_dapr], charts=charts)
    messages = [f"{f.where}: {f.message}" for f in report.findings]
    assert any("subscriptions.yaml: pubsubname 'events' is not a pub/sub Component" in m for m in messages)
    assert any("subscriptions.yaml: scope 'billing-service' is not the app id of a rendered service" in m
               for m in messages)
    assert any("configuration.yaml: traces go to 'traces-collector." in m for m in messages)


def test_telemetry_wiring_is_checked(rendered_copy, schemas: list[Path], charts):
    """The Java agent and the mesh must send to a collector's OTLP receiver on their cluster."""
    repo = rendered_copy("valid/aliyun-prod-flux.yml")
    assert validate_repo(repo, schemas, lint=False, wiring=[check_telemetry], charts=charts).findings == []
    instrumentation = repo / "platform/observability/cluster/instrumentation.yaml"
    instrumentation.write_text(instrumentation.read_text().replace(":4318", ":4319"))
    telemetry = repo / "platform/observability/cluster/telemetry.yaml"
    telemetry.write_text(telemetry.read_text().replace("name: otel-tracing", "name: zipkin"))
    messages = [f.message for f in validate_repo(repo, schemas, lint=False, wiring=[check_telemetry], charts=charts).findings]
    assert any("the agents export to 'http://cluster-collector.opentelemetry-operator-system.svc.cluster.local:4319'"
               in m for m in messages)
    assert "tracing provider 'zipkin' is not an extension provider of istiod's meshConfig" in messages
