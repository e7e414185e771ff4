"""Checks of the services' runtime (Dapr) and of where telemetry is sent, over all built objects.

- every Component's metadata names only fields documented for its type (data/dapr-components.yaml,
  plus the fields the runtime reads for every component of its category), sets the required
  ones, keeps values within a field's allowed set, and takes credentials from a secretKeyRef;
- a Component's type is one whose fields are documented (a new type needs its fields first);
- Component, Resiliency and Subscription scopes name app ids of rendered services;
- a Subscription's pub/sub, a Resiliency target's component, and a Configuration's OTLP endpoint
  exist in the same cluster (the collector is an OpenTelemetryCollector listening on that port);
- the same holds for the Java agent's Instrumentation and for the mesh's tracing provider
  (a Telemetry resource names an extension provider of istiod's meshConfig).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from .fleet import Fleet, SourceIndex, _name, _ns
from .validate import Finding, Report, object_id

DAPR_GROUP = "dapr.io/"


@lru_cache(maxsize=1)
def documented_components() -> dict[str, Any]:
    """The documented fields per component type (see data/dapr-components.yaml)."""
    text = resources.files("opc").joinpath("data/dapr-components.yaml").read_text(encoding="utf-8")
    catalog: dict[str, Any] = yaml.safe_load(text)
    return catalog


def component_problems(component: dict[str, Any]) -> list[str]:
    """What is wrong with one Dapr Component's type and metadata (nothing if it is right)."""
    catalog = documented_components()
    spec = component.get("spec") or {}
    ctype, version = spec.get("type", ""), spec.get("version", "")
    doc = catalog["types"].get(ctype)
    if doc is None:
        return [f"component type '{ctype}' has no documented fields in opc's catalog "
                f"(documented: {', '.join(sorted(catalog['types']))})"]
    problems = []
    if version != doc["version"]:
        problems.append(f"{ctype} is version {doc['version']}, not '{version}'")
    fields = doc["fields"]
    common = set(catalog["common"].get(ctype.split(".", 1)[0]) or [])
    seen: dict[str, dict[str, Any]] = {}
    for entry in spec.get("metadata") or []:
        name = entry.get("name", "")
        if name in seen:
            problems.append(f"metadata '{name}' is set twice")
        seen[name] = entry
        if name not in fields and name not in common:
            problems.append(f"metadata '{name}' is not a documented field of {ctype}")
            continue
        field = fields.get(name) or {}
        has_value = "value" in entry
        if field.get("secret") and has_value:
            problems.append(f"metadata '{name}' is a credential: take it from a secretKeyRef, not a plain value")
        allowed = field.get("allowed")
        if allowed and has_value and str(entry["value"]) not in allowed:
            problems.append(f"metadata '{name}' is '{entry['value']}', not one of {', '.join(allowed)}")
        if not has_value and "secretKeyRef" not in entry and "envRef" not in entry:
            problems.append(f"metadata '{name}' has no value, secretKeyRef or envRef")
    for name, field in fields.items():
        if field.get("required") and name not in seen:
            problems.append(f"required metadata '{name}' of {ctype} is missing")
    one_of = doc.get("one_of") or []
    if one_of and not any(name in seen for name in one_of):
        problems.append(f"{ctype} needs one of {', '.join(one_of)}")
    return problems


def _collector_endpoints(objects: list[dict[str, Any]], protocol: str = "grpc") -> set[str]:
    """host:port of every OTLP receiver (gRPC or HTTP) the rendered OpenTelemetryCollectors expose."""
    default_port = {"grpc": "4317", "http": "4318"}[protocol]
    endpoints = set()
    for obj in objects:
        if obj.get("kind") != "OpenTelemetryCollector":
            continue
        receivers = ((obj.get("spec") or {}).get("config") or {}).get("receivers") or {}
        for name, receiver in receivers.items():
            if name.split("/")[0] != "otlp":
                continue
            protocols = (receiver or {}).get("protocols") or {}
            if protocol not in protocols:
                continue
            port = str((protocols[protocol] or {}).get("endpoint", f"0.0.0.0:{default_port}")).rsplit(":", 1)[-1]
            service = f"{_name(obj)}-collector.{_ns(obj)}"
            endpoints.update({f"{service}.svc.cluster.local:{port}", f"{service}.svc:{port}"})
    return endpoints


def _release_values(objects: list[dict[str, Any]], release: str) -> dict[str, Any] | None:
    """The values of a Helm release, delivered as a Flux HelmRelease or an Argo CD Application."""
    for obj in objects:
        if obj.get("kind") == "HelmRelease" and _name(obj) == release:
            return (obj.get("spec") or {}).get("values") or {}
        if obj.get("kind") == "Application" and (_name(obj) == release or _name(obj).endswith("-" + release)):
            sources = (obj.get("spec") or {}).get("sources") or []
            if sources and "chart" in sources[0]:
                return ((sources[0].get("helm") or {}).get("valuesObject")) or {}
    return None


def _cluster_of(path: str) -> str | None:
    """clusters/<name> for a build under a cluster's folder (all its layers check together)."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 and parts[0] == "clusters" else None


class BuiltObjects:
    """Every built object, grouped by the cluster whose layers built it, and the findings about
    them, each reported once per source file (a file is built into several kustomizations)."""

    def __init__(self, report: Report) -> None:
        self.everything: list[dict[str, Any]] = []
        self.by_cluster: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._built_in: dict[int, str] = {}
        for path, obj in report.objects():
            self._built_in.setdefault(id(obj), path)
            self.everything.append(obj)
            cluster = _cluster_of(path)
            if cluster:
                self.by_cluster[cluster].append(obj)
        self._sources = SourceIndex.of(report)
        self._reported: set[tuple[str, str, str]] = set()
        self.findings: list[Finding] = []

    def fail(self, obj: dict[str, Any], message: str) -> None:
        where = self._sources.locate(obj, self._built_in.get(id(obj), "?"))
        key = (where, object_id(obj), message)
        if key not in self._reported:
            self._reported.add(key)
            self.findings.append(Finding("wiring", where, object_id(obj), message))


def check_dapr(report: Report) -> list[Finding]:
    built = BuiltObjects(report)
    everything, fail = built.everything, built.fail
    fleet = Fleet.from_objects(everything)
    app_ids = {c.get("name") for app in fleet.applications for c in (app.get("spec") or {}).get("components") or []}

    # Each object on its own: a component's fields, and the app ids every scope names.
    for obj in everything:
        if not str(obj.get("apiVersion", "")).startswith(DAPR_GROUP):
            continue
        if obj.get("kind") == "Component":
            for problem in component_problems(obj):
                fail(obj, problem)
        for scope in obj.get("scopes") or []:
            if scope not in app_ids:
                fail(obj, f"scope '{scope}' is not the app id of a rendered service "
                          f"({', '.join(sorted(app_ids)) or 'none rendered'})")

    # Within each cluster (all its layers): references between the objects it runs.
    for objects in built.by_cluster.values():
        dapr = [o for o in objects if str(o.get("apiVersion", "")).startswith(DAPR_GROUP)]
        if not dapr:
            continue
        components = {(_ns(o), _name(o)): o for o in dapr if o.get("kind") == "Component"}
        collectors = _collector_endpoints(objects)
        for obj in dapr:
            kind, spec = obj.get("kind"), obj.get("spec") or {}
            if kind == "Subscription":
                target = components.get((_ns(obj), str(spec.get("pubsubname", ""))))
                if target is None or not str((target.get("spec") or {}).get("type", "")).startswith("pubsub."):
                    fail(obj, f"pubsubname '{spec.get('pubsubname')}' is not a pub/sub Component in "
                              f"namespace '{_ns(obj)}'")
            elif kind == "Resiliency":
                policies = spec.get("policies") or {}
                targets = spec.get("targets") or {}
                for app_id, target in (targets.get("apps") or {}).items():
                    if app_id not in app_ids:
                        fail(obj, f"targets app '{app_id}', which is not a rendered service")
                    _check_policy_refs(fail, obj, policies, target or {})
                for name, target in (targets.get("components") or {}).items():
                    if (_ns(obj), name) not in components:
                        fail(obj, f"targets component '{name}', which is not rendered in namespace '{_ns(obj)}'")
                    for direction in ("inbound", "outbound"):
                        _check_policy_refs(fail, obj, policies, (target or {}).get(direction) or {})
            elif kind == "Configuration":
                otel = (spec.get("tracing") or {}).get("otel")
                if otel and otel.get("endpointAddress") not in collectors:
                    fail(obj, f"traces go to '{otel.get('endpointAddress')}', which is no OTLP gRPC receiver "
                              f"of a rendered OpenTelemetryCollector ({', '.join(sorted(collectors)) or 'none'})")
    return built.findings


def check_telemetry(report: Report) -> list[Finding]:
    """Within each cluster: the Java agent's Instrumentation and the mesh's tracing provider send
    to an OTLP receiver of a rendered OpenTelemetryCollector."""
    built = BuiltObjects(report)
    fail = built.fail
    for objects in built.by_cluster.values():
        grpc, http = _collector_endpoints(objects, "grpc"), _collector_endpoints(objects, "http")
        for obj in objects:
            if obj.get("kind") == "Instrumentation":
                endpoint = str(((obj.get("spec") or {}).get("exporter") or {}).get("endpoint", ""))
                address = endpoint.split("://", 1)[-1].rstrip("/")
                if address not in grpc | http:
                    fail(obj, f"the agents export to '{endpoint}', which is no OTLP receiver of a rendered "
                              f"OpenTelemetryCollector ({', '.join(sorted(grpc | http)) or 'none'})")
            if obj.get("kind") == "Telemetry":
                istiod = _release_values(objects, "istiod")
                mesh = (istiod or {}).get("meshConfig") or {}
                providers = {p.get("name"): p for p in mesh.get("extensionProviders") or []}
                for tracing in (obj.get("spec") or {}).get("tracing") or []:
                    for ref in tracing.get("providers") or []:
                        provider = providers.get(ref.get("name"))
                        if provider is None:
                            fail(obj, f"tracing provider '{ref.get('name')}' is not an extension provider of "
                                      "istiod's meshConfig")
                            continue
                        otel = provider.get("opentelemetry") or {}
                        if f"{otel.get('service')}:{otel.get('port')}" not in grpc:
                            fail(obj, f"tracing provider '{ref.get('name')}' sends to "
                                      f"'{otel.get('service')}:{otel.get('port')}', which is no OTLP gRPC receiver "
                                      f"of a rendered OpenTelemetryCollector ({', '.join(sorted(grpc)) or 'none'})")
    return built.findings


def _check_policy_refs(fail: Callable[[dict[str, Any], str], None], obj: dict[str, Any], policies: dict[str, Any],
                       target: dict[str, Any]) -> None:
    for field, group in (("timeout", "timeouts"), ("retry", "retries"), ("circuitBreaker", "circuitBreakers")):
        name = target.get(field)
        if name and name not in (policies.get(group) or {}):
            fail(obj, f"{field} policy '{name}' is not defined under spec.policies.{group}")
