"""Security rules over what each cluster receives (the repository's objects, chart output and
KubeVela's expansion of the Applications).

Identity:
- no RoleBinding or ClusterRoleBinding names a ServiceAccount "default";
- no Role or ClusterRole bound to a ServiceAccount of a workload we render (the repository's
  objects and the Applications' expansion) grants Secrets with list or watch, or without
  resourceNames;
- every pod we render runs as a ServiceAccount of its own (never "default"), and mounts its token
  only where a binding gives that ServiceAccount something to do with it.

Traffic (the services' namespaces):
- every namespace we render denies all ingress and egress by default; no egress rule reaches
  addresses outside the cluster on every port;
- every meshed workload is covered by an allow-nothing AuthorizationPolicy (in its namespace or
  the mesh's root namespace);
- between services, exactly what services[].calls declares (the Applications' "calls") is allowed,
  by the network policies and by the mesh's authorization policies alike, and nothing else;
  from other namespaces only Prometheus reaches the services, on their metrics ports.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .pods import pod_templates
from .validate import Finding, Report, object_id

MODELLED_SOURCE = {"principals", "notPrincipals", "namespaces", "notNamespaces"}
MODELLED_OPERATION = {"ports", "notPorts"}
ROOT_NAMESPACE = "istio-system"  # istiod's meshConfig.rootNamespace (the default)
TRUST_DOMAIN = "cluster.local"  # istiod's meshConfig.trustDomain (the default)
DAPR_INTERNAL_PORT = 50002  # daprd's internal gRPC port: service invocation between sidecars
# What reaches the services from other namespaces: Prometheus scrapes the service (8081), its Dapr
# sidecar (9090) and Envoy (15090), past the proxy (grpc-service.yaml, monitors.yaml).
SCRAPES = {"monitoring": {8081, 9090, 15090}}
SECRET_VERBS = {"list", "watch", "*"}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("labels") or {}).items()}


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a set of labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(str(key)) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = [str(v) for v in expression.get("values") or []]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Workload:
    """A service's pods in one cluster: its labels, namespace, identity and ports."""

    name: str
    namespace: str
    labels: dict[str, str]
    service_account: str
    ports: dict[str, int]  # container port name -> number (all containers)
    meshed: bool
    where: str

    @property
    def principal(self) -> str:
        return f"{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"

    def port(self, port: Any) -> int | None:
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        return self.ports.get(str(port))


@dataclass
class Cluster:
    name: str
    objects: list[tuple[str, dict[str, Any]]]
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels


def _by_kind(objects: list[tuple[str, dict[str, Any]]], kind: str, group: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for where, obj in objects:
        api = str(obj.get("apiVersion", ""))
        obj_group = api.rsplit("/", 1)[0] if "/" in api else ""
        if obj.get("kind") == kind and obj_group == group:
            out.append((where, obj))
    return out


def _peer_allows(peer: dict[str, Any], policy_ns: str, source: Workload | None, source_ns: str,
                 namespaces: dict[str, dict[str, str]]) -> bool:
    """Whether one NetworkPolicy peer admits the pods of ``source`` (or, with no workload, any pod of
    namespace ``source_ns``)."""
    if "ipBlock" in peer:
        return True  # pods' addresses may fall in the block: count it as admitting them
    pod_selector = peer.get("podSelector")
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is not None:
        if not selects(ns_selector, namespaces.get(source_ns, {"kubernetes.io/metadata.name": source_ns})):
            return False
    elif source_ns != policy_ns:
        return False
    if pod_selector is None:
        return True
    return source is not None and selects(pod_selector, source.labels)


def policy_types(policy: dict[str, Any]) -> list[str]:
    """A NetworkPolicy's directions; without policyTypes, Ingress, and Egress when it has egress rules."""
    spec = policy.get("spec") or {}
    return list(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def _port_allows(ports: list[dict[str, Any]] | None, target: Workload, port: int) -> bool:
    if not ports:
        return True
    for entry in ports:
        if str(entry.get("protocol", "TCP")) != "TCP":
            continue
        if "port" not in entry:
            return True
        number = target.port(entry["port"])
        end = entry.get("endPort")
        if number == port or (number is not None and end is not None and number <= port <= int(end)):
            return True
    return False


class NetworkLayer:
    """NetworkPolicy semantics for connections between workloads of one cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.policies = [o for _, o in _by_kind(cluster.objects, "NetworkPolicy", "networking.k8s.io")]
        self.namespaces = cluster.namespaces

    def _applying(self, workload: Workload, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.policies if _meta(p).get("namespace") == workload.namespace
                and selects((p.get("spec") or {}).get("podSelector") or {}, workload.labels)
                and direction in policy_types(p)]

    def allows(self, source: Workload, target: Workload, port: int) -> bool:
        egress = self._applying(source, "Egress")
        if egress and not any(
                _port_allows(rule.get("ports"), target, port)
                and (not rule.get("to") or any(_peer_allows(peer, source.namespace, target, target.namespace,
                                                            self.namespaces) for peer in rule["to"]))
                for p in egress for rule in (p.get("spec") or {}).get("egress") or []):
            return False
        ingress = self._applying(target, "Ingress")
        return not ingress or any(
            _port_allows(rule.get("ports"), target, port)
            and (not rule.get("from") or any(_peer_allows(peer, target.namespace, source, source.namespace,
                                                          self.namespaces) for peer in rule["from"]))
            for p in ingress for rule in (p.get("spec") or {}).get("ingress") or [])

    def foreign_ingress(self, target: Workload) -> list[tuple[dict[str, Any], str, set[int] | None]]:
        """Ingress rules admitting peers of other namespaces (or anywhere): (policy, peer, ports)."""
        out = []
        for policy in self._applying(target, "Ingress"):
            for rule in (policy.get("spec") or {}).get("ingress") or []:
                ports: set[int] | None = set()
                for entry in rule.get("ports") or []:
                    number = target.port(entry.get("port")) if "port" in entry else None
                    if number is None or ports is None:
                        ports = None  # every port, or a name the pod does not have
                        continue
                    ports |= set(range(number, int(entry.get("endPort", number)) + 1))
                if not rule.get("ports"):
                    ports = None
                for peer in rule.get("from") or [{}]:
                    if not peer:
                        out.append((policy, "any source", ports))
                    elif "ipBlock" in peer:
                        out.append((policy, f"addresses {peer['ipBlock'].get('cidr')}", ports))
                    elif peer.get("namespaceSelector") is not None:
                        selector = peer["namespaceSelector"]
                        named = (selector.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
                        if named and len(selector) == 1 and len(selector["matchLabels"]) == 1:
                            if named != target.namespace:
                                out.append((policy, f"namespace {named}", ports))
                        else:  # any other selector may match namespaces no render shows
                            out.append((policy, "namespaces by selector " + json.dumps(selector, sort_keys=True),
                                        ports))
        return out


def _match(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


class MeshLayer:
    """Istio AuthorizationPolicy semantics (ALLOW and DENY; request attributes taken as matching)."""

    def __init__(self, cluster: Cluster) -> None:
        self.policies = [o for _, o in _by_kind(cluster.objects, "AuthorizationPolicy", "security.istio.io")]

    def applying(self, target: Workload) -> list[dict[str, Any]]:
        out = []
        for policy in self.policies:
            namespace, spec = _meta(policy).get("namespace"), policy.get("spec") or {}
            if namespace in (ROOT_NAMESPACE, target.namespace):
                selector = spec.get("selector")
                if selector is None or selects(selector, target.labels):
                    out.append(policy)
        return out

    @staticmethod
    def _rule_matches(rule: dict[str, Any], source: Workload | None, port: int, deny: bool = False) -> bool:
        """Whether a rule matches a call; conditions on what this cannot see (addresses, request
        principals, paths...) are taken to match for ALLOW and not to match for DENY, so that
        neither hides a call."""
        froms, tos = rule.get("from"), rule.get("to")
        if froms:
            if source is None:
                return False
            if not any(MeshLayer._source_matches(f.get("source") or {}, source)
                       and not (deny and set(f.get("source") or {}) - MODELLED_SOURCE) for f in froms):
                return False
        return not (tos and not any(MeshLayer._operation_matches(t.get("operation") or {}, port)
                                    and not (deny and set(t.get("operation") or {}) - MODELLED_OPERATION)
                                    for t in tos)) and not (deny and set(rule) - {"from", "to"})

    @staticmethod
    def _source_matches(src: dict[str, Any], source: Workload) -> bool:
        if "principals" in src and not _match(src["principals"], source.principal):
            return False
        if "notPrincipals" in src and _match(src["notPrincipals"], source.principal):
            return False
        if "namespaces" in src and not _match(src["namespaces"], source.namespace):
            return False
        return not ("notNamespaces" in src and _match(src["notNamespaces"], source.namespace))

    @staticmethod
    def _operation_matches(op: dict[str, Any], port: int) -> bool:
        if "ports" in op and str(port) not in [str(p) for p in op["ports"]]:
            return False
        return not ("notPorts" in op and str(port) in [str(p) for p in op["notPorts"]])

    def allows(self, source: Workload, target: Workload, port: int) -> bool:
        if not target.meshed:
            return True
        policies = self.applying(target)
        rules = [(p.get("spec") or {}).get("action", "ALLOW") for p in policies]
        for policy, action in zip(policies, rules, strict=True):
            if action == "DENY" and any(self._rule_matches(r, source, port, deny=True)
                                        for r in (policy.get("spec") or {}).get("rules") or []):
                return False
        allows = [p for p, a in zip(policies, rules, strict=True) if a == "ALLOW"]
        return not allows or any(self._rule_matches(r, source, port)
                                 for p in allows for r in (p.get("spec") or {}).get("rules") or [])

    def open_rules(self, target: Workload) -> list[dict[str, Any]]:
        """ALLOW policies applying to ``target`` with a rule that admits a caller nobody declared (a
        made-up workload of a namespace no render has)."""
        probe = Workload("probe", "opc-probe", {}, "probe", {}, True, "")
        return [p for p in self.applying(target) if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"
                and any(self._rule_matches(r, probe, port)
                        for r in (p.get("spec") or {}).get("rules") or []
                        for port in {target.ports.get("grpc") or 0, DAPR_INTERNAL_PORT})]

    def allow_nothing(self, namespace: str) -> bool:
        return any(_meta(p).get("namespace") in (ROOT_NAMESPACE, namespace)
                   and (p.get("spec") or {}).get("selector") is None
                   and (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"
                   and not (p.get("spec") or {}).get("rules") for p in self.policies)


def _clusters(report: Report) -> list[Cluster]:
    from .policy import _synced_objects

    synced = _synced_objects(report)
    clusters = []
    for name, built in sorted(report.cluster_objects().items()):
        known = {id(o) for _, o in built}
        objects = built + [(w, o) for w, o in synced.get(name, []) if id(o) not in known]
        cluster = Cluster(name, objects)
        for _, obj in _by_kind(objects, "Namespace", ""):
            labels = _labels(obj)
            labels.setdefault("kubernetes.io/metadata.name", str(_meta(obj).get("name")))
            cluster.namespaces[str(_meta(obj).get("name"))] = labels
        clusters.append(cluster)
    return clusters


def _ours(report: Report) -> set[int]:
    ours = {id(o) for _, o in report.objects()}
    return ours | {id(o) for g in report.generated if "vela dry-run" in g.source for o in g.objects}


def _workloads(cluster: Cluster, ours: set[int]) -> list[Workload]:
    out = []
    for where, obj in cluster.objects:
        if id(obj) not in ours:
            continue
        for pod in pod_templates(obj):
            if pod.operator or pod.part:
                continue
            labels = {str(k): str(v) for k, v in (pod.metadata.get("labels") or {}).items()}
            ports = {str(p.get("name")): int(p["containerPort"]) for _, c in pod.containers()
                     for p in c.get("ports") or [] if p.get("name") and "containerPort" in p}
            annotations = pod.metadata.get("annotations") or {}
            ns_labels = cluster.namespaces.get(pod.namespace, {})
            meshed = (str(annotations.get("sidecar.istio.io/inject", "")) == "true"
                      or (ns_labels.get("istio-injection") == "enabled"
                          and str(annotations.get("sidecar.istio.io/inject", "")) != "false"))
            out.append(Workload(str(_meta(obj).get("name")), pod.namespace, labels,
                                str(pod.spec.get("serviceAccountName") or "default"), ports, meshed, where))
    return out


def declared_calls(report: Report) -> dict[str, set[str]]:
    """The calls of every grpc-service component of the Applications: component -> callees."""
    calls: dict[str, set[str]] = {}
    for _, obj in report.objects():
        if obj.get("kind") != "Application" or not str(obj.get("apiVersion", "")).startswith("core.oam.dev/"):
            continue
        for component in (obj.get("spec") or {}).get("components") or []:
            if component.get("type") == "grpc-service":
                properties = component.get("properties") or {}
                calls[str(component.get("name"))] = {str(c) for c in properties.get("calls") or []}
    return calls


# The ClusterRoles every cluster has (Kubernetes' user-facing roles): what they grant on Secrets.
BUILTIN_ROLES = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    "admin": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update"]}],
    "edit": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update"]}],
    "view": [],
}


def _bound_rules(cluster: Cluster, binding: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rules a binding grants; None when its role is neither rendered nor built in."""
    ref = binding.get("roleRef") or {}
    kind, name = ref.get("kind"), ref.get("name")
    namespace = _meta(binding).get("namespace")
    for _, role in _by_kind(cluster.objects, str(kind), "rbac.authorization.k8s.io"):
        if _meta(role).get("name") == name and (kind == "ClusterRole" or _meta(role).get("namespace") == namespace):
            return list(role.get("rules") or [])
    if kind == "ClusterRole" and name in BUILTIN_ROLES:
        return BUILTIN_ROLES[str(name)]
    return None


def _secret_grant(rule: dict[str, Any]) -> str:
    groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
    if not ({"", "*"} & set(groups)) or not ({"secrets", "*"} & set(resources)):
        return ""
    verbs = set(rule.get("verbs") or [])
    if wide := sorted(verbs & SECRET_VERBS):
        return f"grants {', '.join(wide)} on Secrets"
    if not rule.get("resourceNames"):
        return "grants Secrets without resourceNames"
    return ""


def _collector() -> tuple[list[Finding], Callable[[str, str, str], None]]:
    """Security findings, and the function that adds one (each only once)."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()

    def add(where: str, subject: str, message: str) -> None:
        if (where, subject, message) not in seen:
            seen.add((where, subject, message))
            findings.append(Finding("security", where, subject, message))
    return findings, add


def check_identity(report: Report) -> list[Finding]:
    findings, add = _collector()
    ours = _ours(report)

    for cluster in _clusters(report):
        workloads = _workloads(cluster, ours)
        our_accounts = {(w.namespace, w.service_account) for w in workloads}
        bound: set[tuple[str, str]] = set()
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            for where, binding in _by_kind(cluster.objects, kind, "rbac.authorization.k8s.io"):
                role = f"{(binding.get('roleRef') or {}).get('kind')} {(binding.get('roleRef') or {}).get('name')}"
                for subject in binding.get("subjects") or []:
                    if subject.get("kind") == "Group" and str(subject.get("name", "")).startswith(
                            "system:serviceaccounts"):
                        # every ServiceAccount (of a namespace): the default ones and ours among them
                        scope = str(subject["name"]).removeprefix("system:serviceaccounts").lstrip(":")
                        accounts = {a for a in our_accounts if not scope or a[0] == scope}
                        granted = _bound_rules(cluster, binding)
                        if id(binding) in ours or granted is None or any(_secret_grant(r) for r in granted):
                            add(where, object_id(binding), f"binds the group {subject['name']} (every "
                                                           f"ServiceAccount{' of ' + scope if scope else ''}, default "
                                                           f"included) to {role} in cluster {cluster.name}: bind the "
                                                           "workload's own")
                    elif subject.get("kind") == "ServiceAccount":
                        namespace = subject.get("namespace") or _meta(binding).get("namespace")
                        accounts = {(str(namespace), str(subject.get("name")))}
                    else:
                        continue
                    bound |= accounts
                    for account in accounts:
                        if account[1] == "default":
                            add(where, object_id(binding), f"binds the ServiceAccount default of namespace "
                                                           f"{account[0]} in cluster {cluster.name}: give the "
                                                           "workload its own")
                        if id(binding) not in ours and account not in our_accounts:
                            continue
                        rules = _bound_rules(cluster, binding)
                        if rules is None:
                            add(where, object_id(binding), f"binds ServiceAccount {account[0]}/{account[1]} to "
                                                           f"{role}, which no render has: what it grants is unknown")
                        for rule in rules or []:
                            if grant := _secret_grant(rule):
                                add(where, object_id(binding),
                                    f"{grant} to ServiceAccount {account[0]}/{account[1]} (roleRef {role}): "
                                    "name the Secrets, get only")
        for workload in workloads:
            subject = f"pods of {workload.namespace}/{workload.name}"
            if workload.service_account == "default":
                add(workload.where, subject, f"run as the ServiceAccount default in cluster {cluster.name}: "
                                             "give them one of their own")
        for where, obj in cluster.objects:
            if id(obj) not in ours:
                continue
            for pod in pod_templates(obj):
                if pod.operator or pod.part:
                    continue
                account = (pod.namespace, str(pod.spec.get("serviceAccountName") or "default"))
                if pod.spec.get("automountServiceAccountToken") is not False and account not in bound:
                    add(where, pod.label, f"mounts the token of ServiceAccount {account[1]}, which no binding "
                                          f"in cluster {cluster.name} gives anything: set "
                                          "automountServiceAccountToken: false")
    return findings


def check_traffic(report: Report) -> list[Finding]:
    findings, add = _collector()
    ours = _ours(report)
    declared = declared_calls(report)

    for cluster in _clusters(report):
        network, mesh = NetworkLayer(cluster), MeshLayer(cluster)
        our_namespaces = sorted({str(_meta(o).get("name")) for w, o in cluster.objects
                                 if id(o) in ours and o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"})
        policies = [(w, o) for w, o in _by_kind(cluster.objects, "NetworkPolicy", "networking.k8s.io")]
        for namespace in our_namespaces:
            denied = {direction for _, p in policies if _meta(p).get("namespace") == namespace
                      for direction in (p.get("spec") or {}).get("policyTypes") or []
                      if (p.get("spec") or {}).get("podSelector") == {}
                      and not (p.get("spec") or {}).get(direction.lower())}
            for direction in ("Ingress", "Egress"):
                if direction not in denied:
                    add(f"clusters/{cluster.name}", f"Namespace {namespace}",
                        f"no default-deny {direction.lower()} NetworkPolicy")
            if not mesh.allow_nothing(namespace):
                add(f"clusters/{cluster.name}", f"Namespace {namespace}",
                    f"no allow-nothing AuthorizationPolicy covers it (in {namespace} or the mesh's root "
                    f"namespace {ROOT_NAMESPACE})")
        for where, policy in policies:
            if id(policy) not in ours:
                continue
            for rule in (policy.get("spec") or {}).get("egress") or []:
                outside = not rule.get("to") or any("ipBlock" in peer for peer in rule["to"])
                entries = rule.get("ports") or []
                if outside and (not entries or any("port" not in e for e in entries)):
                    add(where, object_id(policy), "allows egress to addresses outside the cluster on every port: "
                                                  "name the ports")
                elif outside and any("endPort" in e for e in entries):
                    add(where, object_id(policy), "allows egress to addresses outside the cluster on a range of "
                                                  "ports: name each port")
        services = [w for w in _workloads(cluster, ours) if w.name in declared]
        for target in services:
            for policy, peer, ports in network.foreign_ingress(target):
                namespace = peer.removeprefix("namespace ")
                allowed = SCRAPES.get(namespace) if peer.startswith("namespace ") else None
                if allowed is None or ports is None or not ports <= allowed:
                    shown = "every port" if ports is None else f"ports {', '.join(map(str, sorted(ports)))}"
                    add(target.where, object_id(policy),
                        f"admits {peer} to {target.name} on {shown} in cluster {cluster.name}; only Prometheus "
                        f"(monitoring) may reach the services, on their metrics ports")
            for policy in mesh.open_rules(target):
                add(target.where, object_id(policy), f"admits callers it does not name to {target.name} in cluster "
                                                     f"{cluster.name}: name the callers' principals")
            for source in services:
                if source is target:
                    continue
                calls = target.name in declared.get(source.name, set())
                for port in sorted({p for p in (target.ports.get("grpc"), DAPR_INTERNAL_PORT) if p}):
                    layers = {"network policies": network.allows(source, target, port),
                              "authorization policies": mesh.allows(source, target, port)}
                    if calls:
                        for layer, ok in layers.items():
                            if not ok:
                                add(target.where, f"{source.name} -> {target.name}",
                                    f"{source.name} calls {target.name} (port {port}) but the {layer} of cluster "
                                    f"{cluster.name} refuse it")
                    else:
                        for layer, ok in layers.items():
                            if ok:
                                add(target.where, f"{source.name} -> {target.name}",
                                    f"the {layer} of cluster {cluster.name} let {source.name} reach {target.name} "
                                    f"(port {port}), which its calls do not declare")
            if not target.meshed:
                add(target.where, f"pods of {target.namespace}/{target.name}",
                    f"are not in the mesh in cluster {cluster.name}: no authorization policy can apply to them")
    return findings



# -- the hub's gateway: no unauthenticated write path ---------------------------------------------

# Ports of the telemetry receivers a gateway route may lead to: a route to one of them is a
# write path (Prometheus remote write, Elasticsearch bulk, SkyWalking OAP gRPC).
WRITE_PORTS = {9090: "Prometheus", 9200: "Elasticsearch", 11800: "SkyWalking OAP"}


@dataclass
class GatewayRequest:
    host: str
    principal: str | None  # the client certificate's URI without spiffe://; None: no certificate
    path: str = "/"
    method: str = "POST"


def _host_match(patterns: list[str], host: str) -> bool:
    """Gateway server hosts may carry a namespace ("ns/host", "*/host")."""
    return any(fnmatch.fnmatchcase(host.lower(), str(p).lower().split("/", 1)[-1]) for p in patterns)


def gateway_decision(objects: list[dict[str, Any]], gateway: dict[str, Any], request: GatewayRequest) -> str:
    """What the Istio gateway workload of ``gateway`` does with ``request`` on port 443: "allowed",
    or why it refuses it (TLS, then authorization: DENY policies first, then ALLOW)."""
    sni = request.host.rsplit(":", 1)[0]  # TLS picks the server by name, without the port
    servers = [s for s in (gateway.get("spec") or {}).get("servers") or []
               if (s.get("port") or {}).get("number") == 443 and _host_match(s.get("hosts") or [], sni)]
    if not servers:
        return "refused: no server for the host"
    mode = ((servers[0].get("tls") or {}).get("mode") or "SIMPLE")
    if mode == "MUTUAL" and request.principal is None:
        return "refused: TLS handshake (a client certificate is required)"
    labels = {str(k): str(v) for k, v in ((gateway.get("spec") or {}).get("selector") or {}).items()}
    namespace = str(_meta(gateway).get("namespace"))
    policies = [p for p in objects if p.get("kind") == "AuthorizationPolicy"
                and str(p.get("apiVersion", "")).startswith("security.istio.io/")
                and _meta(p).get("namespace") in (ROOT_NAMESPACE, namespace)
                and ((p.get("spec") or {}).get("selector") is None
                     or selects((p.get("spec") or {}).get("selector"), labels))]

    def matches(rule: dict[str, Any]) -> bool:
        for source in [f.get("source") or {} for f in rule.get("from") or []] or [None]:
            if source is None:
                break
            if "principals" in source and (request.principal is None
                                           or not _match(source["principals"], request.principal)):
                continue
            if "notPrincipals" in source and request.principal is not None \
                    and _match(source["notPrincipals"], request.principal):
                continue
            break
        else:
            return False
        operations = [t.get("operation") or {} for t in rule.get("to") or []]
        return not operations or any(
            (not op.get("hosts") or _host_match(op["hosts"], request.host))
            and (not op.get("paths") or any(fnmatch.fnmatchcase(request.path, p) for p in op["paths"]))
            and (not op.get("methods") or request.method in op["methods"]) for op in operations)

    actions = [((p.get("spec") or {}).get("action") or "ALLOW", p) for p in policies]
    if any(action == "DENY" and any(matches(r) for r in (p.get("spec") or {}).get("rules") or [])
           for action, p in actions):
        return "refused: a DENY policy"
    allows = [p for action, p in actions if action == "ALLOW"]
    if not allows or any(matches(r) for p in allows for r in (p.get("spec") or {}).get("rules") or []):
        return "allowed"
    return "refused: no ALLOW rule admits it"


def write_hosts(objects: list[dict[str, Any]], gateway: dict[str, Any]) -> dict[str, str]:
    """Hosts whose routes through ``gateway`` lead to a telemetry receiver: host -> receiver."""
    name, namespace = _meta(gateway).get("name"), _meta(gateway).get("namespace")
    out: dict[str, str] = {}
    for vs in objects:
        if vs.get("kind") != "VirtualService" or not str(vs.get("apiVersion", "")).startswith("networking.istio.io/"):
            continue
        spec = vs.get("spec") or {}
        bound = {str(g) if "/" in str(g) else f"{_meta(vs).get('namespace')}/{g}" for g in spec.get("gateways") or []}
        if f"{namespace}/{name}" not in bound:
            continue
        for kind in ("http", "tcp", "tls"):
            for entry in spec.get(kind) or []:
                for route in entry.get("route") or []:
                    destination = route.get("destination") or {}
                    port = (destination.get("port") or {}).get("number")
                    ports = [port] if port else _service_ports(objects, str(destination.get("host", "")),
                                                               str(_meta(vs).get("namespace")))
                    for number in ports:
                        if number in WRITE_PORTS:
                            for host in spec.get("hosts") or []:
                                out[str(host)] = WRITE_PORTS[number]
    return out


def _service_ports(objects: list[dict[str, Any]], host: str, namespace: str) -> list[int]:
    """The ports of the Service a route names by host (every write port when it is not rendered:
    a route without a port to an unknown Service may reach any of them)."""
    parts = host.removesuffix(".svc.cluster.local").removesuffix(".svc").split(".")
    name, ns = parts[0], parts[1] if len(parts) > 1 else namespace
    for obj in objects:
        if obj.get("kind") == "Service" and _meta(obj).get("name") == name and _meta(obj).get("namespace") == ns:
            return [int(p["port"]) for p in (obj.get("spec") or {}).get("ports") or [] if "port" in p]
    return list(WRITE_PORTS)


def check_gateways(report: Report) -> list[Finding]:
    """No telemetry write path through an ingress gateway without a client certificate whose
    identity an ALLOW policy names."""
    findings: list[Finding] = []
    for cluster in _clusters(report):
        objects = [o for _, o in cluster.objects]
        for where, gateway in _by_kind(cluster.objects, "Gateway", "networking.istio.io"):
            for host, receiver in sorted(write_hosts(objects, gateway).items()):
                modes = {(srv.get("tls") or {}).get("mode") or "SIMPLE"
                         for srv in (gateway.get("spec") or {}).get("servers") or []
                         if _host_match(srv.get("hosts") or [], host)}
                if modes - {"MUTUAL"}:
                    findings.append(Finding("security", where, object_id(gateway),
                                            f"{host} ({receiver}) is served without asking for a client "
                                            f"certificate (tls.mode {', '.join(sorted(modes - {'MUTUAL'}))}) in "
                                            f"cluster {cluster.name}: serve it with tls.mode MUTUAL"))
                anonymous = gateway_decision(objects, gateway, GatewayRequest(host, None))
                stranger = gateway_decision(objects, gateway, GatewayRequest(host, "unknown.invalid/anyone"))
                if anonymous == "allowed":
                    findings.append(Finding("security", where, object_id(gateway),
                                            f"{host} ({receiver}) takes writes without a client certificate in "
                                            f"cluster {cluster.name}: serve it with tls.mode MUTUAL"))
                if stranger == "allowed":
                    findings.append(Finding("security", where, object_id(gateway),
                                            f"{host} ({receiver}) takes writes from any client certificate in "
                                            f"cluster {cluster.name}: an ALLOW policy must name the clusters' "
                                            "identities (principals)"))
    return findings
