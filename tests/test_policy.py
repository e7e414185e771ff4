"""The DESIGN §4 quality bar: each policy rule fires on an object that breaks it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from opc.policy import check_policies, workload_violations
from opc.validate import Report
from opc.kustomize import Build

RESTRICTED_DEPLOYMENT = yaml.safe_load("""
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
      containers:
        - name: web
          image: ghcr.io/acme/web:1.2.3
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 100m, memory: 64Mi}
          readinessProbe: {grpc: {port: 9090}}
          livenessProbe: {grpc: {port: 9090}}
""")


def report_of(*objects) -> Report:
    report = Report(Path("/repo"))
    report.builds.append(Build(Path("/repo/k"), True, list(objects)))
    return report


def test_restricted_workload_passes():
    assert list(workload_violations(RESTRICTED_DEPLOYMENT)) == []


def _set(obj, path, value):
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value


CONTAINER = ("spec", "template", "spec", "containers", 0)


@pytest.mark.parametrize("path, value, expected", [
    (("spec", "template", "spec", "securityContext", "runAsNonRoot"), False, "runAsNonRoot is not true"),
    (("spec", "template", "spec", "securityContext", "seccompProfile"), None, "seccompProfile"),
    (CONTAINER + ("securityContext", "allowPrivilegeEscalation"), True, "allowPrivilegeEscalation"),
    (CONTAINER + ("securityContext", "capabilities"), None, "drop ALL"),
    (CONTAINER + ("securityContext", "readOnlyRootFilesystem"), None, "readOnlyRootFilesystem"),
    (CONTAINER + ("resources", "limits"), None, "no cpu limit"),
    (CONTAINER + ("image",), "ghcr.io/acme/web", "not pinned"),
    (CONTAINER + ("image",), "ghcr.io/acme/web:latest", "not pinned"),
    (CONTAINER + ("readinessProbe",), None, "no readinessProbe"),
    (("metadata", "labels", "app.kubernetes.io/name"), None, "app.kubernetes.io/name"),
    (("spec", "template", "spec", "hostNetwork"), True, "host namespaces"),
])
def test_each_workload_rule_fires(path, value, expected):
    obj = copy.deepcopy(RESTRICTED_DEPLOYMENT)
    _set(obj, path, value)
    assert any(expected in v for v in workload_violations(obj)), list(workload_violations(obj))


def test_digest_pinned_image_passes():
    obj = copy.deepcopy(RESTRICTED_DEPLOYMENT)
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/web@sha256:" + "a" * 64
    assert list(workload_violations(obj)) == []


def test_namespace_needs_psa_and_default_deny():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    messages = [f.message for f in check_policies(report_of(ns))]
    assert any("pod-security" in m for m in messages) and any("default-deny" in m for m in messages)
    ns["metadata"]["labels"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", "namespace": "demo"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert check_policies(report_of(ns, deny)) == []


@pytest.mark.parametrize("obj, expected", [
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "x"}},
     "plaintext Secret"),
    ({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "r"},
      "spec": {"chart": {"spec": {"chart": "c", "version": ">=1.0.0"}}}}, "not pinned"),
    ({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
      "spec": {"project": "default", "source": {"repoURL": "r", "path": "p"}}}, "default project"),
    ({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
      "spec": {"project": "platform", "sources": [{"repoURL": "r", "chart": "c", "targetRevision": "1.x"}]}},
     "not pinned"),
])
def test_delivery_rules_fire(obj, expected):
    assert any(expected in f.message for f in check_policies(report_of(obj)))
