"""The security rules of `opc validate` (opc.security), each shown firing on a small set of objects
that breaks it and passing on the same objects unbroken; then on real KubeVela output."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from test_rules import load, report_of

from opc.security import check_identity, check_traffic
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS


def service(name: str, port: int) -> list[dict[str, Any]]:
    return load(f"""
apiVersion: apps.kruise.io/v1alpha1
kind: CloneSet
metadata: {{name: {name}, namespace: shop, labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: shop}}}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/name: {name}}}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: shop}}
      annotations: {{sidecar.istio.io/inject: "true"}}
    spec:
      serviceAccountName: {name}
      automountServiceAccountToken: false
      containers:
        - name: {name}
          image: ghcr.io/shop/{name}:1.0.0
          ports: [{{name: grpc, containerPort: {port}}}, {{name: http-metrics, containerPort: 8081}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}, namespace: shop}}
automountServiceAccountToken: false
""")


# order-service calls payment-service; nothing else is declared.
BASE = load("""
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop, namespace: shop}
spec:
  components:
    - {name: order-service, type: grpc-service, properties: {calls: [payment-service]}}
    - {name: payment-service, type: grpc-service, properties: {callers: [order-service]}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-monitoring, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
      ports: [{protocol: TCP, port: 8081}, {protocol: TCP, port: 9090}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-egress-redis, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - ports: [{protocol: TCP, port: 6379}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payment-service-callers, namespace: shop}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: payment-service}}
  action: ALLOW
  rules:
    - from: [{source: {principals: [cluster.local/ns/shop/sa/order-service]}}]
      to: [{operation: {ports: ["50052", "50002"]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: payment-service-callers, namespace: shop}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: payment-service}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [order-service]}]}}]
      ports: [{protocol: TCP, port: 50052}, {protocol: TCP, port: 50002}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: order-service-calls, namespace: shop}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: order-service}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [payment-service]}]}}]
      ports: [{protocol: TCP, port: grpc}, {protocol: TCP, port: 50002}]
""") + service("order-service", 50051) + service("payment-service", 50052)


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def without(kind: str, name: str):
    def change(objects):
        objects.remove(named(objects, kind, name))
    return change


def adding(text: str):
    def change(objects):
        objects.extend(load(text))
    return change


def setting(kind: str, name: str, path: str, value: Any):
    def change(objects):
        target = named(objects, kind, name)
        keys = path.split("/")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return change


def findings(check, change=None) -> list[str]:
    objects = copy.deepcopy(BASE)
    if change:
        change(objects)
    return [f"{f.subject}: {f.message}" for f in check(report_of(objects))]


def test_declared_traffic_passes():
    assert findings(check_traffic) == []
    assert findings(check_identity) == []


BROKEN_TRAFFIC = [
    ("undeclared call (same-namespace network policy)",
     adding("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-same-namespace, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{from: [{podSelector: {}}]}], egress: [{to: [{podSelector: {}}]}]}
"""), "the network policies of cluster c1 let payment-service reach order-service (port 50051), which its calls do not declare"),
    ("undeclared call (callers names a service that does not declare it)",
     setting("AuthorizationPolicy", "payment-service-callers", "spec/rules/0/from/0/source/principals",
             ["cluster.local/ns/shop/sa/order-service", "cluster.local/ns/shop/sa/other"]), None),
    ("declared call refused by the network",
     without("NetworkPolicy", "order-service-calls"),
     "order-service calls payment-service (port 50052) but the network policies of cluster c1 refuse it"),
    ("declared call refused by the mesh",
     without("AuthorizationPolicy", "payment-service-callers"),
     "order-service calls payment-service (port 50052) but the authorization policies of cluster c1 refuse it"),
    ("missing allow-nothing AuthorizationPolicy",
     without("AuthorizationPolicy", "allow-nothing"),
     "Namespace shop: no allow-nothing AuthorizationPolicy covers it"),
    ("authorization policy open to any caller",
     setting("AuthorizationPolicy", "payment-service-callers", "spec/rules", [{"to": [{"operation": {"ports": ["50052"]}}]}]),
     "admits callers it does not name to payment-service"),
    ("egress hole",
     setting("NetworkPolicy", "allow-egress-redis", "spec/egress", [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]),
     "allows egress to addresses outside the cluster on every port"),
    ("no default-deny egress",
     setting("NetworkPolicy", "default-deny", "spec/policyTypes", ["Ingress"]),
     "Namespace shop: no default-deny egress NetworkPolicy"),
    ("foreign namespace admitted",
     adding("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-istio-ingress, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress], ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: istio-ingress}}}]}]}
"""), "admits namespace istio-ingress to order-service on every port"),
    ("service outside the mesh",
     setting("CloneSet", "payment-service", "spec/template/metadata/annotations", {"sidecar.istio.io/inject": "false"}),
     "are not in the mesh"),
]


@pytest.mark.parametrize("name, change, expected", BROKEN_TRAFFIC, ids=[b[0] for b in BROKEN_TRAFFIC])
def test_traffic_rule_fires(name: str, change, expected: str | None):
    found = findings(check_traffic, change)
    if expected is None:  # the principal of a service that does not exist matches nothing: still clean
        assert found == []
    else:
        assert any(expected in f for f in found), found


BROKEN_IDENTITY = [
    ("wide Secret grant (list)", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: order-service, namespace: shop}]
"""), "grants list on Secrets to ServiceAccount shop/order-service"),
    ("Secret grant without resourceNames", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: payment-service, namespace: shop}]
"""), "grants Secrets without resourceNames to ServiceAccount shop/payment-service"),
    ("binding to default", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: default, namespace: shop}]
"""), "binds the ServiceAccount default of namespace shop"),
    ("pods as default", setting("CloneSet", "order-service", "spec/template/spec/serviceAccountName", "default"),
     "pods of shop/order-service: run as the ServiceAccount default"),
    ("token mounted for nothing", setting("CloneSet", "order-service", "spec/template/spec/automountServiceAccountToken", True),
     "mounts the token of ServiceAccount order-service, which no binding"),
]


@pytest.mark.parametrize("name, change, expected", BROKEN_IDENTITY, ids=[b[0] for b in BROKEN_IDENTITY])
def test_identity_rule_fires(name: str, change, expected: str):
    found = findings(check_identity, change)
    assert any(expected in f for f in found), found


def test_narrow_secret_grant_passes():
    grant = adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: order-service-secrets, namespace: shop}
rules: [{apiGroups: [""], resources: [secrets], resourceNames: [order-db], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: order-service-secrets, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: order-service-secrets}
subjects: [{kind: ServiceAccount, name: order-service, namespace: shop}]
""")

    def change(objects):
        grant(objects)
        setting("CloneSet", "order-service", "spec/template/spec/automountServiceAccountToken", True)(objects)
    assert findings(check_identity, change) == []


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.slow
def test_kubevela_renders_each_service_its_identity_and_its_callers(rendered_copy, schemas, charts):
    """The real grpc-service definition, expanded by vela: one ServiceAccount per service, a Role on
    the Secrets a service lists (get, by name), and exactly the declared calls allowed."""
    repo = rendered_copy("valid/three-services.yml")  # payment-service reads the Secret payment-provider
    report = validate_repo(repo, schemas, lint=False, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings][:20]
    objects = [o for g in report.generated if "vela dry-run" in g.source and g.cluster == "tencent-prod"
               for o in g.objects]
    accounts = by_kind(objects, "ServiceAccount")
    assert sorted(accounts) == ["inventory-item-service", "order-service", "payment-service"]
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    pods = {name: c["spec"]["template"]["spec"] for name, c in by_kind(objects, "CloneSet").items()}
    assert {n: p["serviceAccountName"] for n, p in pods.items()} == {n: n for n in pods}
    assert {n: p["automountServiceAccountToken"] for n, p in pods.items()} == {
        "inventory-item-service": False, "order-service": False, "payment-service": True}
    assert by_kind(objects, "Role")["payment-service-secrets"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["payment-provider"], "verbs": ["get"]}]
    annotations = {n: c["spec"]["template"]["metadata"]["annotations"] for n, c in by_kind(objects, "CloneSet").items()}
    assert all(a["dapr.io/disable-builtin-k8s-secret-store"] == "true" for a in annotations.values())
    store = yaml.safe_load((repo / "platform/dapr/base/secret-store.yaml").read_text())
    assert store["scopes"] == ["payment-service"]  # the only service that reads Secrets
    principals = {name: sorted(p["spec"]["rules"][0]["from"][0]["source"]["principals"])
                  for name, p in by_kind(objects, "AuthorizationPolicy").items()}
    assert principals == {
        "inventory-item-service-callers": ["cluster.local/ns/three-services-co/sa/order-service",
                                           "cluster.local/ns/three-services-co/sa/payment-service"],
        "payment-service-callers": ["cluster.local/ns/three-services-co/sa/order-service"]}

    # A call the answers no longer declare, while the callee still admits it: refused by the rule.
    order = repo / "apps/order-service/application.yaml"
    data = yaml.safe_load(order.read_text())
    data["spec"]["components"][0]["properties"]["calls"] = ["payment-service"]
    order.write_text(yaml.safe_dump(data, sort_keys=False))
    definition = repo / "platform/kubevela/definitions/grpc-service.yaml"
    definition.write_text(definition.read_text().replace('verbs: ["get"]', 'verbs: ["get", "list"]'))
    report = validate_repo(repo, schemas, lint=False, wiring=ALL_CHECKS, charts=charts)
    messages = sorted({f.message for f in report.findings if f.category == "security"})
    # The network refuses it now (order-service's egress lists payment-service only); the mesh
    # still admits it, which the rule reports, as it reports the wider grant.
    assert messages == sorted(
        ["grants list on Secrets to ServiceAccount three-services-co/payment-service (roleRef Role "
         "payment-service-secrets): name the Secrets, get only"]
        + [f"the authorization policies of cluster tencent-{env} let order-service reach inventory-item-service "
           f"(port {port}), which its calls do not declare" for env in ("prod", "staging") for port in (50002, 50053)]
    ), messages


# --- the hub's gateway: no unauthenticated write path ------------------------------------------
GATEWAY = load("""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: observability, namespace: istio-ingress}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 443, name: https, protocol: HTTPS}
      tls: {mode: SIMPLE, credentialName: observability-tls}
      hosts: [grafana.shop.example]
    - port: {number: 443, name: https-telemetry, protocol: HTTPS}
      tls: {mode: MUTUAL, credentialName: observability-tls}
      hosts: [prometheus.shop.example]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: prometheus, namespace: istio-ingress}
spec:
  hosts: [prometheus.shop.example]
  gateways: [observability]
  http:
    - match: [{uri: {exact: /api/v1/write}}]
      route: [{destination: {host: prometheus.monitoring.svc.cluster.local, port: {number: 9090}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: grafana, namespace: istio-ingress}
spec:
  hosts: [grafana.shop.example]
  gateways: [observability]
  http:
    - route: [{destination: {host: grafana.grafana.svc.cluster.local, port: {number: 3000}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: observability-endpoints, namespace: istio-ingress}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules:
    - to: [{operation: {hosts: [grafana.shop.example, "grafana.shop.example:*"]}}]
    - from: [{source: {principals: [c1.telemetry.shop.example/telemetry]}}]
      to: [{operation: {hosts: [prometheus.shop.example, "prometheus.shop.example:*"]}}]
""")


def gateway_findings(change=None) -> list[str]:
    from opc.security import check_gateways

    objects = copy.deepcopy(GATEWAY)
    if change:
        change(objects)
    return [f"{f.subject}: {f.message}" for f in check_gateways(report_of(objects))]


BROKEN_GATEWAY = [
    ("write endpoint without client certificates",
     setting("Gateway", "observability", "spec/servers/1/tls", {"mode": "SIMPLE", "credentialName": "observability-tls"}),
     "prometheus.shop.example (Prometheus) is served without asking for a client certificate (tls.mode SIMPLE)"),
    ("write endpoint on the public server",
     setting("Gateway", "observability", "spec/servers/0/hosts", ["grafana.shop.example", "prometheus.shop.example"]),
     "prometheus.shop.example (Prometheus) is served without asking for a client certificate"),
    ("write endpoint without client certificates nor identities",
     lambda objects: (setting("Gateway", "observability", "spec/servers/1/tls", {"mode": "SIMPLE"})(objects),
                      setting("AuthorizationPolicy", "observability-endpoints", "spec/rules/1",
                              {"to": [{"operation": {"hosts": ["prometheus.shop.example"]}}]})(objects)),
     "prometheus.shop.example (Prometheus) takes writes without a client certificate"),
    ("write endpoint open to any identity",
     setting("AuthorizationPolicy", "observability-endpoints", "spec/rules/1/from", [{"source": {"principals": ["*"]}}]),
     "takes writes from any client certificate"),
    ("server host with a namespace",
     setting("Gateway", "observability", "spec/servers/1",
             {"port": {"number": 443, "name": "https-telemetry", "protocol": "HTTPS"},
              "tls": {"mode": "SIMPLE", "credentialName": "observability-tls"},
              "hosts": ["istio-ingress/prometheus.shop.example"]}),
     "is served without asking for a client certificate"),
    ("route without a port, open identities",
     lambda objects: (setting("VirtualService", "prometheus", "spec/http/0/route/0/destination",
                              {"host": "other.monitoring.svc.cluster.local"})(objects),
                      setting("AuthorizationPolicy", "observability-endpoints", "spec/rules/1/from",
                              [{"source": {"principals": ["*"]}}])(objects)),
     "takes writes from any client certificate"),
    ("no authorization policy at all",
     lambda objects: [objects.remove(named(objects, "AuthorizationPolicy", n)) for n in ("allow-nothing", "observability-endpoints")],
     "takes writes from any client certificate"),
]


def test_gateway_refuses_unauthenticated_writes():
    from opc.security import GatewayRequest, gateway_decision

    assert gateway_findings() == []
    gateway = GATEWAY[0]
    assert gateway_decision(GATEWAY, gateway, GatewayRequest("prometheus.shop.example", None)).startswith(
        "refused: TLS handshake")
    assert gateway_decision(GATEWAY, gateway, GatewayRequest("prometheus.shop.example", "c2.telemetry.shop.example/x")) \
        == "refused: no ALLOW rule admits it"
    assert gateway_decision(GATEWAY, gateway, GatewayRequest("prometheus.shop.example",
                                                             "c1.telemetry.shop.example/telemetry")) == "allowed"
    assert gateway_decision(GATEWAY, gateway, GatewayRequest("grafana.shop.example", None, "/", "GET")) == "allowed"


@pytest.mark.parametrize("name, change, expected", BROKEN_GATEWAY, ids=[b[0] for b in BROKEN_GATEWAY])
def test_gateway_rule_fires(name: str, change, expected: str):
    found = gateway_findings(change)
    assert any(expected in f for f in found), found


def test_rendered_hub_gateway_admits_only_the_clusters_identities(rendered):
    """The rendered hub's gateway and policies, judged as Istio evaluates them (Envoy cannot run
    here): no write without a client certificate, none from an identity it does not list."""
    from opc.kustomize import build_one
    from opc.security import GatewayRequest, gateway_decision

    repo = rendered("defaults")
    objects = [o for layer in ("configs",) for o in build_one(repo / "clusters/hub" / layer).objects]
    gateway = next(o for o in objects if o["kind"] == "Gateway")
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    domain = answers["base_domain"]
    clusters = sorted(p.name for p in (repo / "clusters").iterdir())
    for host in ("prometheus", "elasticsearch", "oap"):
        fqdn = f"{host}.{domain}"
        assert gateway_decision(objects, gateway, GatewayRequest(fqdn, None)).startswith("refused: TLS")
        assert gateway_decision(objects, gateway, GatewayRequest(fqdn, f"intruder.telemetry.{domain}/telemetry")) \
            .startswith("refused")
        for cluster in clusters:
            assert gateway_decision(objects, gateway, GatewayRequest(f"{fqdn}:443", f"{cluster}.telemetry.{domain}/telemetry")) \
                == "allowed", (host, cluster)
    for host in ("grafana", "kibana"):
        assert gateway_decision(objects, gateway, GatewayRequest(f"{host}.{domain}", None, "/", "GET")) == "allowed"
    assert gateway_decision(objects, gateway, GatewayRequest(f"unknown.{domain}", None)).startswith("refused")


MORE_BROKEN = [
    (check_identity, "group of every ServiceAccount", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: all-readers, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: Group, name: "system:serviceaccounts:shop", apiGroup: rbac.authorization.k8s.io}]
"""), "binds the group system:serviceaccounts:shop"),
    (check_identity, "built-in role that reads Secrets", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: editor, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: ServiceAccount, name: order-service, namespace: shop}]
"""), "grants list, watch on Secrets to ServiceAccount shop/order-service (roleRef ClusterRole edit)"),
    (check_identity, "role nobody renders", adding("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: mystery, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: somebody-elses}
subjects: [{kind: ServiceAccount, name: order-service, namespace: shop}]
"""), "which no render has: what it grants is unknown"),
    (check_traffic, "wildcard principals", setting("AuthorizationPolicy", "payment-service-callers",
                                                   "spec/rules/0/from/0/source/principals", ["*"]),
     "admits callers it does not name to payment-service"),
    (check_traffic, "namespace selector no render shows", adding("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-labelled, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress], ingress: [{from: [{namespaceSelector: {matchLabels: {team: x}}}], ports: [{port: 8081}]}]}
"""), "admits namespaces by selector"),
    (check_traffic, "port entry without a port", setting("NetworkPolicy", "allow-egress-redis", "spec/egress",
                                                         [{"ports": [{"protocol": "TCP"}]}]),
     "allows egress to addresses outside the cluster on every port"),
    (check_traffic, "port range outside", setting("NetworkPolicy", "allow-egress-redis", "spec/egress",
                                                  [{"ports": [{"protocol": "TCP", "port": 1024, "endPort": 65535}]}]),
     "on a range of ports"),
    (check_traffic, "decoy DENY does not hide an open ALLOW", lambda objects: (
        setting("AuthorizationPolicy", "payment-service-callers", "spec/rules", [{}])(objects),
        objects.extend(load("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: decoy, namespace: shop}
spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [192.0.2.1/32]}}]}]}
"""))), "admits callers it does not name to payment-service"),
]


@pytest.mark.parametrize("check, name, change, expected", MORE_BROKEN, ids=[b[1] for b in MORE_BROKEN])
def test_bypass_is_caught(check, name: str, change, expected: str):
    found = findings(check, change)
    assert any(expected in f for f in found), found
