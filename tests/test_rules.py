"""Every rule of `opc validate` that no render breaks on its own, shown firing on a small object
that breaks it (and passing on the same object unbroken)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from opc.kustomize import Build
from opc.metadata import check_metadata
from opc.policy import check_policies
from opc.runtime import check_dapr, check_telemetry
from opc.validate import Finding, Report
from opc.wiring import check_wiring


def report_of(objects: list[dict[str, Any]], path: str = "clusters/c1/platform") -> Report:
    report = Report(Path("/nonexistent-repo"))
    report.builds.append(Build(Path("/nonexistent-repo") / path, True, copy.deepcopy(objects)))
    return report


def messages(check: Callable[[Report], list[Finding]], objects: list[dict[str, Any]]) -> list[str]:
    return [f"{f.subject}: {f.message}" for f in check(report_of(objects))]


def load(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def mutate(objects: list[dict[str, Any]], index: int, path: str, value: Any) -> list[dict[str, Any]]:
    """A copy of ``objects`` with ``objects[index]`` changed at a /-separated path (None deletes)."""
    out = copy.deepcopy(objects)
    target: Any = out[index]
    keys = [int(k) if k.isdigit() else k.replace("~1", "/") for k in path.split("/")]
    for key in keys[:-1]:
        target = target[key]
    if value is None:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return out


# --- policy ----------------------------------------------------------------------------------
WORKLOAD = load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/part-of: acme}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      initContainers:
        - name: setup
          image: ghcr.io/acme/setup:1.0.0
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
      containers:
        - name: web
          image: ghcr.io/acme/web:1.2.3
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
          readinessProbe: {grpc: {port: 9090}}
          livenessProbe: {grpc: {port: 9090}}
      volumes:
        - name: tmp
          emptyDir: {}
""")
DELIVERY = load("""
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: chart, namespace: flux-system}
spec: {url: oci://ghcr.io/acme/chart, ref: {tag: 1.2.3}}
---
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: apps, namespace: argocd}
spec:
  template:
    spec:
      project: platform
      source: {repoURL: https://git.example/r.git, path: apps}
""")

POLICY_CASES = [
    ("privileged container", WORKLOAD, 0, "spec/template/spec/containers/0/securityContext/privileged", True,
     'privileged (container "web" must not set securityContext.privileged=true)'),
    ("hostPath volume", WORKLOAD, 0, "spec/template/spec/volumes/0", {"name": "host", "hostPath": {"path": "/"}},
     'restricted volume types (volume "host" uses "hostPath")'),
    ("init container escalates", WORKLOAD, 0, "spec/template/spec/initContainers/0/securityContext/allowPrivilegeEscalation",
     True, 'allowPrivilegeEscalation != false (container "setup" must set securityContext.allowPrivilegeEscalation=false)'),
    ("unpinned image", WORKLOAD, 0, "spec/template/spec/containers/0/image", "ghcr.io/acme/web:latest",
     "container web: image 'ghcr.io/acme/web:latest' is not pinned to a version"),
    ("no memory limit", WORKLOAD, 0, "spec/template/spec/containers/0/resources/limits/memory", None,
     "container web: no memory limit"),
    ("writable root filesystem", WORKLOAD, 0, "spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem",
     None, "container web: readOnlyRootFilesystem is not true"),
    ("no readiness probe", WORKLOAD, 0, "spec/template/spec/containers/0/readinessProbe", None,
     "container web: no readinessProbe"),
    ("no part-of label", WORKLOAD, 0, "metadata/labels/app.kubernetes.io~1part-of", None,
     "label app.kubernetes.io/part-of missing"),
    ("init container without limits", WORKLOAD, 0, "spec/template/spec/initContainers/0/resources/limits", None,
     "init container setup: no cpu limit"),
    ("OCI artifact by branch", DELIVERY, 0, "spec/ref/tag", "latest", "OCI artifact is not pinned to a release tag"),
    ("OCI artifact without tag", DELIVERY, 0, "spec/ref", {"semver": ">=1.0.0"}, "OCI artifact is not pinned"),
    ("ApplicationSet in default project", DELIVERY, 1, "spec/template/spec/project", "default",
     "uses Argo CD's default project"),
    ("ApplicationSet without project", DELIVERY, 1, "spec/template/spec/project", None, "uses Argo CD's default project"),
]


@pytest.mark.parametrize("objects, index, path, value, expected", [c[1:] for c in POLICY_CASES],
                         ids=[c[0] for c in POLICY_CASES])
def test_policy_rule_fires(objects, index: int, path: str, value: Any, expected: str):
    assert messages(check_policies, objects) == []
    found = messages(check_policies, mutate(objects, index, path, value))
    assert any(expected in m for m in found), found


# --- wiring (OCM and KubeVela) ----------------------------------------------------------------
FLEET = load("""
apiVersion: cluster.open-cluster-management.io/v1
kind: ManagedCluster
metadata:
  name: aliyun-prod
  labels: {cluster.open-cluster-management.io/clusterset: prod, acme.example/env: prod}
spec: {hubAcceptsClient: true}
---
apiVersion: cluster.open-cluster-management.io/v1beta2
kind: ManagedClusterSet
metadata: {name: prod}
spec: {clusterSelector: {selectorType: ExclusiveClusterSetLabel}}
---
apiVersion: cluster.open-cluster-management.io/v1beta2
kind: ManagedClusterSetBinding
metadata: {name: prod, namespace: acme}
spec: {clusterSet: prod}
---
apiVersion: cluster.open-cluster-management.io/v1beta1
kind: Placement
metadata: {name: prod, namespace: acme}
spec:
  clusterSets: [prod]
  predicates:
    - requiredClusterSelector: {labelSelector: {matchLabels: {acme.example/env: prod}}}
---
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: order, namespace: acme}
spec:
  components:
    - {name: order, type: webservice, properties: {image: "ghcr.io/acme/order:1.0.0"}}
  policies:
    - name: prod
      type: topology
      properties: {clusterLabelSelector: {acme.example/env: prod}}
""")

WIRING_CASES = [
    ("binding named unlike its set", 2, "metadata/name", "production",
     "binding name 'production' must equal spec.clusterSet 'prod'"),
    ("placement in a namespace without the binding", 3, "metadata/namespace", "elsewhere",
     "uses cluster set 'prod' but namespace 'elsewhere' has no ManagedClusterSetBinding for it"),
    ("unknown policy type", 4, "spec/policies/0/type", "topologee",
     "policy 'prod' has type 'topologee', which is neither built in nor rendered as a PolicyDefinition"),
]


@pytest.mark.parametrize("index, path, value, expected", [c[1:] for c in WIRING_CASES], ids=[c[0] for c in WIRING_CASES])
def test_wiring_rule_fires(index: int, path: str, value: Any, expected: str):
    assert messages(check_wiring, FLEET) == []
    found = messages(check_wiring, mutate(FLEET, index, path, value))
    assert any(expected in m for m in found), found


def test_placement_without_cluster_sets_and_binding_fires():
    broken = mutate(mutate(FLEET, 3, "spec/clusterSets", None), 3, "metadata/namespace", "elsewhere")
    assert any("has no ManagedClusterSetBinding at all" in m for m in messages(check_wiring, broken))


# --- runtime: Dapr and telemetry --------------------------------------------------------------
RUNTIME = load("""
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: order, namespace: acme}
spec:
  components:
    - {name: order, type: webservice, properties: {image: "ghcr.io/acme/order:1.0.0"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore, namespace: acme}
spec:
  type: state.redis
  version: v1
  metadata:
    - {name: redisHost, value: "redis.acme.example:6379"}
    - name: redisPassword
      secretKeyRef: {name: redis, key: password}
scopes: [order]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: platform, namespace: acme}
spec:
  policies:
    timeouts: {call: 5s}
    retries: {transient: {policy: constant, duration: 1s, maxRetries: 3}}
    circuitBreakers: {dependency: {maxRequests: 1, timeout: 30s, trip: consecutiveFailures >= 5}}
  targets:
    apps:
      order: {timeout: call, retry: transient, circuitBreaker: dependency}
    components:
      statestore:
        outbound: {timeout: call, retry: transient}
scopes: [order]
---
apiVersion: opentelemetry.io/v1beta1
kind: OpenTelemetryCollector
metadata: {name: cluster, namespace: observability}
spec:
  config:
    receivers:
      otlp:
        protocols: {grpc: {endpoint: "0.0.0.0:4317"}, http: {endpoint: "0.0.0.0:4318"}}
    exporters: {debug: {}}
    service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: appconfig, namespace: acme}
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: cluster-collector.observability.svc.cluster.local:4317
      isSecure: false
      protocol: grpc
---
apiVersion: opentelemetry.io/v1alpha1
kind: Instrumentation
metadata: {name: java, namespace: acme}
spec:
  exporter: {endpoint: "http://cluster-collector.observability.svc.cluster.local:4318"}
""")

RUNTIME_CASES = [
    ("component version", check_dapr, 1, "spec/version", "v2", "state.redis is version v1, not 'v2'"),
    ("field without value or secretKeyRef", check_dapr, 1, "spec/metadata/1/secretKeyRef", None,
     "metadata 'redisPassword' has no value, secretKeyRef or envRef"),
    ("credential as a plain value", check_dapr, 1, "spec/metadata/1", {"name": "redisPassword", "value": "hunter2"},
     "metadata 'redisPassword' is a credential"),
    ("resiliency targets an unknown app", check_dapr, 2, "spec/targets/apps",
     {"payment": {"timeout": "call"}}, "targets app 'payment', which is not a rendered service"),
    ("resiliency targets an unknown component", check_dapr, 2, "spec/targets/components",
     {"pubsub": {"outbound": {"timeout": "call"}}}, "targets component 'pubsub', which is not rendered"),
    ("resiliency names an undefined timeout", check_dapr, 2, "spec/targets/apps/order/timeout", "slow",
     "timeout policy 'slow' is not defined under spec.policies.timeouts"),
    ("resiliency names an undefined retry", check_dapr, 2, "spec/targets/components/statestore/outbound/retry",
     "forever", "retry policy 'forever' is not defined under spec.policies.retries"),
    ("resiliency names an undefined breaker", check_dapr, 2, "spec/targets/apps/order/circuitBreaker", "fuse",
     "circuitBreaker policy 'fuse' is not defined under spec.policies.circuitBreakers"),
    ("dapr traces to the wrong collector", check_dapr, 4, "spec/tracing/otel/endpointAddress",
     "otel-collector.monitoring.svc:4317", "traces go to 'otel-collector.monitoring.svc:4317', which is no OTLP gRPC"),
    ("java agent exports to the wrong collector", check_telemetry, 5, "spec/exporter/endpoint",
     "http://cluster-collector.observability.svc.cluster.local:9999", "the agents export to"),
]


@pytest.mark.parametrize("check, index, path, value, expected", [c[1:] for c in RUNTIME_CASES],
                         ids=[c[0] for c in RUNTIME_CASES])
def test_runtime_rule_fires(check, index: int, path: str, value: Any, expected: str):
    assert messages(check, RUNTIME) == []
    found = messages(check, mutate(RUNTIME, index, path, value))
    assert any(expected in m for m in found), found


def test_mesh_tracing_provider_must_reach_a_collector():
    istiod = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
              "metadata": {"name": "istiod", "namespace": "istio-system"},
              "spec": {"values": {"meshConfig": {"extensionProviders": [
                  {"name": "otel", "opentelemetry": {"service": "cluster-collector.observability.svc.cluster.local",
                                                     "port": 4317}}]}}}}
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "mesh-default", "namespace": "istio-system"},
                 "spec": {"tracing": [{"providers": [{"name": "otel"}]}]}}
    objects = [*RUNTIME, istiod, telemetry]
    assert messages(check_telemetry, objects) == []
    wrong = mutate(objects, len(RUNTIME), "spec/values/meshConfig/extensionProviders/0/opentelemetry/port", 4318)
    assert any("tracing provider 'otel' sends to" in m for m in messages(check_telemetry, wrong))
    unknown = mutate(objects, len(RUNTIME) + 1, "spec/tracing/0/providers/0/name", "zipkin")
    assert any("tracing provider 'zipkin' is not an extension provider" in m for m in messages(check_telemetry, unknown))


# --- metadata --------------------------------------------------------------------------------
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "demo"}}
METADATA_CASES = [
    ("namespace not a label", "metadata/namespace", "Demo_NS", "metadata/namespace: 'Demo_NS' must be a DNS-1123 label"),
    ("namespace too long", "metadata/namespace", "n" * 64, "must be a DNS-1123 label"),
    ("annotation key with a bad prefix", "metadata/annotations", {"-acme.example/owner": "me"},
     "prefix '-acme.example' must be a DNS-1123 subdomain"),
    ("annotation key with a bad name", "metadata/annotations", {"acme.example/own er": "me"},
     "name part 'own er' must be 1-63 characters"),
    ("annotations over 256 KiB", "metadata/annotations", {"acme.example/blob": "x" * (256 * 1024)},
     "more than the 256 KiB the API server accepts"),
    ("Service named like a subdomain", "kind", "Service", None),
]


@pytest.mark.parametrize("path, value, expected", [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_metadata_rule_fires(path: str, value: Any, expected: str | None):
    assert check_metadata(CONFIG_MAP) == []
    broken = mutate([CONFIG_MAP], 0, path, value)[0]
    if expected is None:  # a Service's name must be a DNS-1123 label, not a subdomain
        broken["metadata"]["name"] = "settings.v1"
        assert check_metadata({**CONFIG_MAP, "metadata": {**CONFIG_MAP["metadata"], "name": "settings.v1"}}) == []
        expected = "metadata/name: 'settings.v1' must be a DNS-1123 label"
    found = check_metadata(broken)
    assert any(expected in m for m in found), found
