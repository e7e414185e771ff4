"""The questionnaire's rules (hooks/questionnaire.py) beyond the answer fixtures: the reserved
names are what a render really produces, and the collision rule fires on any id, not only on
namespaces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import ROOT

from opc.reserved import derive, dump


def questionnaire():
    spec = importlib.util.spec_from_file_location("questionnaire", ROOT / "hooks" / "questionnaire.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reserved_names_are_those_of_a_fresh_render(template_repo: Path, charts):
    fresh = dump(derive(str(template_repo), charts))
    committed = (ROOT / "hooks" / "reserved-names.yml").read_text()
    assert fresh == committed, "hooks/reserved-names.yml is stale: run scripts/reserved-names"


def test_collisions_are_found_by_id(monkeypatch):
    rules = questionnaire()
    monkeypatch.setattr(rules, "reserved_names", lambda: {
        "fixed": ["Namespace monitoring", "Service acme/gateway", "ConfigMap acme/order-settings"],
        "slug": ["Namespace {slug}", "Role {slug}/reader"],
        "service": ["Service {slug}/{service}", "ConfigMap {slug}/{service}-settings"],
    })
    assert rules.slug_collisions("monitoring") == ["Namespace monitoring"]
    assert rules.slug_collisions("acme") == []
    assert rules.service_collisions("acme", ["gateway"]) == {"gateway": ["Service acme/gateway"]}
    assert rules.service_collisions("acme", ["order"]) == {"order": ["ConfigMap acme/order-settings"]}
    assert rules.service_collisions("other", ["order", "gateway"]) == {}
    assert rules.service_collisions("acme", ["monitoring"]) == {"monitoring": ["name for namespace monitoring"]}


@pytest.mark.parametrize("host, ok", [
    ("redis.acme.example", True), ("10.0.0.1", True), ("localhost", True), ("0x1f", True),
    ("192.168.10.300", False), ("1.5", False), ("10.0.0.01", False), ("-a.example", False), ("a_b.example", False),
    ("a..example", False), ("UPPER.example", False), ("x" * 64 + ".example", False), ("", False),
])
def test_hosts(host: str, ok: bool):
    assert (questionnaire().host_problem(host) == "") is ok


def test_every_sidecar_port_is_refused():
    rules = questionnaire()
    svc = {"name": "order-service", "package": "com.acme.order", "grpc_service": "OrderService"}
    for port, what in rules.SIDECAR_PORTS.items():
        assert what in rules.check_services([{**svc, "port": port}], "acme")
    assert rules.check_services([{**svc, "port": 50051}], "acme") == ""


def test_derived_slug_is_always_valid():
    rules = questionnaire()
    for name in ["Monitoring", "Kube System", "Yes", "123 Go", "Default", "Ünïcode GmbH", "Argo CD", "x" * 100]:
        slug = rules.derive_slug(name)
        assert rules.check_company_slug(slug) == "", (name, slug)


def test_services_help_lists_exactly_the_refused_ports():
    import re

    import yaml

    help_text = yaml.safe_load((ROOT / "copier.yml").read_text())["services"]["help"]
    listed: set[int] = set()
    for first, last in re.findall(r"(\d{4,5})(?:-(\d{4,5}))?", help_text.split("bind in its pod:", 1)[1]):
        listed.update(range(int(first), int(last or first) + 1))
    assert listed == set(questionnaire().SIDECAR_PORTS)
