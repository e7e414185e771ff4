"""The quality bar: every check of Pod Security admission (both profiles), the namespace rules and
the delivery rules, each shown firing on an object that breaks it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from opc.kustomize import Build
from opc.pods import PodTemplate, pod_templates, required_level, violations
from opc.policy import check_policies, container_gaps
from opc.validate import Report

RESTRICTED_POD = yaml.safe_load("""
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: demo}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  initContainers:
    - name: setup
      image: ghcr.io/acme/setup:1.0.0
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
  containers:
    - name: web
      image: ghcr.io/acme/web:1.2.3
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
      readinessProbe: {grpc: {port: 9090}}
      livenessProbe: {grpc: {port: 9090}}
  volumes:
    - {name: tmp, emptyDir: {}}
""")


def pod_with(changes: dict[str, Any]) -> PodTemplate:
    obj = copy.deepcopy(RESTRICTED_POD)
    for path, value in changes.items():
        target: Any = obj
        keys = [int(k) if k.isdigit() else k for k in path.split("/")]
        for key in keys[:-1]:
            target = target[key]
        if value is None:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return pod_templates(obj)[0]


C = "spec/containers/0/securityContext/"
# (check, change, the level the pod then needs)
PSA_CASES = [
    ("hostNamespaces", {"spec/hostNetwork": True}, "privileged"),
    ("hostNamespaces", {"spec/hostPID": True}, "privileged"),
    ("privileged", {C + "privileged": True}, "privileged"),
    ("capabilities_baseline", {C + "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}, "privileged"),
    ("hostPathVolumes", {"spec/volumes/0": {"name": "h", "hostPath": {"path": "/"}}}, "privileged"),
    ("hostPorts", {"spec/containers/0/ports": [{"containerPort": 80, "hostPort": 80}]}, "privileged"),
    ("hostProbesAndHostLifecycle", {"spec/containers/0/readinessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}},
     "privileged"),
    ("appArmorProfile", {"spec/securityContext/appArmorProfile": {"type": "Unconfined"}}, "privileged"),
    ("appArmorProfile", {"metadata/annotations": {"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}},
     "privileged"),
    ("seLinuxOptions", {C + "seLinuxOptions": {"type": "spc_t"}}, "privileged"),
    ("procMount", {C + "procMount": "Unmasked"}, "privileged"),
    ("seccompProfile_baseline", {"spec/securityContext/seccompProfile": {"type": "Unconfined"}}, "privileged"),
    ("sysctls", {"spec/securityContext/sysctls": [{"name": "kernel.msgmax", "value": "1"}]}, "privileged"),
    ("windowsHostProcess", {C + "windowsOptions": {"hostProcess": True}}, "privileged"),
    ("allowPrivilegeEscalation", {C + "allowPrivilegeEscalation": True}, "baseline"),
    ("capabilities_restricted", {C + "capabilities": {"drop": ["NET_RAW"]}}, "baseline"),
    ("capabilities_restricted", {C + "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}, "baseline"),
    ("restrictedVolumes", {"spec/volumes/0": {"name": "n", "nfs": {"server": "s", "path": "/"}}}, "baseline"),
    ("runAsNonRoot", {"spec/securityContext/runAsNonRoot": False}, "baseline"),
    ("runAsNonRoot", {C + "runAsNonRoot": False}, "baseline"),
    ("runAsUser", {C + "runAsUser": 0}, "baseline"),
    ("seccompProfile_restricted", {"spec/securityContext/seccompProfile": None}, "baseline"),
]


def test_restricted_pod_passes_restricted():
    pod = pod_templates(RESTRICTED_POD)[0]
    assert violations(pod, "restricted") == [] and required_level(pod) == ("restricted", [])


@pytest.mark.parametrize("check, change, level", PSA_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(PSA_CASES)])
def test_each_pod_security_check_fires(check: str, change: dict, level: str):
    pod = pod_with(change)
    needed, _ = required_level(pod)
    assert needed == level
    stricter = "baseline" if level == "privileged" else "restricted"
    assert check in [c for c, _ in violations(pod, stricter)] or (
        check.endswith("_baseline") and check.replace("_baseline", "_restricted") in [c for c, _ in violations(
            pod, "restricted")])


def test_what_restricted_leaves_to_the_pod_level():
    # a container may leave runAsNonRoot and seccomp to the pod; a safe sysctl is allowed everywhere
    pod = pod_with({"spec/securityContext/sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]})
    assert violations(pod, "restricted") == []
    # a hostPort of 0 is no host port; the Windows profile skips three restricted checks
    assert violations(pod_with({"spec/containers/0/ports": [{"containerPort": 80, "hostPort": 0}]}), "baseline") == []
    windows = pod_with({"spec/os": {"name": "windows"}, C + "allowPrivilegeEscalation": True})
    assert violations(windows, "restricted") == []


def test_our_containers_need_more_than_admission():
    pod = pod_with({C + "readOnlyRootFilesystem": False, "spec/containers/0/image": "ghcr.io/acme/web"})
    del pod.spec["containers"][0]["livenessProbe"]
    gaps = [message for _, _, message in container_gaps(pod, ours=True)]
    assert "container web: readOnlyRootFilesystem is not true" in gaps
    assert "container web: image 'ghcr.io/acme/web' is not pinned to a version" in gaps
    assert "container web: no livenessProbe" in gaps
    assert "init container setup: no cpu request, memory request, cpu limit, memory limit" in gaps
    third_party = [rule for _, rule, _ in container_gaps(pod, ours=False)]
    assert "readOnlyRootFilesystem" not in third_party and "probes" not in third_party


def report_of(*objects) -> Report:
    report = Report(Path("/nonexistent-repo"))
    report.builds.append(Build(Path("/nonexistent-repo/clusters/c1/platform"), True, list(objects)))
    return report


def test_namespace_needs_psa_and_default_deny():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    messages = [f.message for f in check_policies(report_of(ns))]
    assert any("pod-security" in m for m in messages) and any("default-deny" in m for m in messages)
    ns["metadata"]["labels"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", "namespace": "demo"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert check_policies(report_of(ns, deny)) == []


def test_pods_are_judged_at_their_namespace_level():
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "demo", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", "namespace": "demo"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    host = copy.deepcopy(RESTRICTED_POD)
    host["spec"]["volumes"][0] = {"name": "h", "hostPath": {"path": "/"}}
    messages = [f.message for f in check_policies(report_of(ns, deny, host))]
    assert any("refused by Pod Security 'baseline' of namespace demo in cluster c1: hostPath volumes" in m
               for m in messages), messages
    messages = [f.message for f in check_policies(report_of(ns, deny, RESTRICTED_POD))]
    assert "enforces Pod Security 'baseline', but its pods need only 'restricted': enforce 'restricted'" in messages


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
