"""Pods as the API server will see them, and the Pod Security Standards they must meet.

``pod_templates`` finds every pod an object makes: a bare Pod, the template of a workload
(Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, OpenKruise CloneSet, Advanced
StatefulSet and DaemonSet), and the pod templates inside the custom resources of the operators the
platform runs (ECK Elasticsearch and Kibana, grafana-operator Grafana, the OpenTelemetry
Collector, Prometheus and Alertmanager of prometheus-operator), built the way those operators
build their pods from the resource's fields.

``violations`` is the rule set of Kubernetes' Pod Security admission (k8s.io/pod-security-admission,
policy version "latest" of Kubernetes 1.34): the baseline checks, and for restricted the
restricted checks with the three baseline checks they replace. ``required_level`` is the least
permissive level a pod passes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LEVELS = ("restricted", "baseline", "privileged")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
KRUISE_KINDS = {"CloneSet", "StatefulSet", "DaemonSet"}  # apps.kruise.io


@dataclass
class PodTemplate:
    """One pod an object makes: where (the object, and the part of it), its spec and metadata."""

    owner: dict[str, Any]
    part: str  # "" for the object's own template, else e.g. "nodeSet default"
    spec: dict[str, Any]
    metadata: dict[str, Any]
    namespace: str
    replicas: int = 1
    per_node: bool = False  # a DaemonSet: one per node
    runs_to_completion: bool = False  # a Job: no probes expected
    # The operator that turns the template into a pod adds the probes and, where its version
    # supports it, the read-only root filesystem (ECK, grafana-operator, the OpenTelemetry operator).
    operator: str = ""

    @property
    def label(self) -> str:
        meta = self.owner.get("metadata") or {}
        base = f"{self.owner.get('kind')} {meta.get('namespace', self.namespace)}/{meta.get('name')}"
        return f"{base} ({self.part})" if self.part else base

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for role in ("initContainers", "containers", "ephemeralContainers"):
            for container in self.spec.get(role) or []:
                yield role, container


def _group(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _replicas(spec: dict[str, Any]) -> int:
    value = spec.get("replicas")
    return int(value) if isinstance(value, int) else 1


def _operator_container(name: str, spec: dict[str, Any], image: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": spec.get("image") or image}
    for key in ("resources", "securityContext", "env", "args", "volumeMounts", "ports", "livenessProbe",
                "readinessProbe"):
        if key in spec:
            container[key] = copy.deepcopy(spec[key])
    return container


def _with_image(template: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    """A pod template whose named container has the image the operator gives it (unless the
    template names one itself)."""
    template = copy.deepcopy(template)
    spec = template.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    main = next((c for c in containers if c.get("name") == container), None)
    if main is None:
        main = {"name": container}
        containers.insert(0, main)
    main.setdefault("image", image)
    return template


def pod_templates(obj: dict[str, Any], defaults: dict[str, str] | None = None) -> list[PodTemplate]:
    """Every pod ``obj`` makes. ``defaults`` names the images operators use when a resource sets
    none (``{"OpenTelemetryCollector": image, ...}``)."""
    kind, group, spec = obj.get("kind"), _group(obj), obj.get("spec") or {}
    namespace = _ns(obj)
    defaults = defaults or {}
    if kind == "Pod" and group == "":
        return [PodTemplate(obj, "", spec, obj.get("metadata") or {}, namespace)]
    if ((kind in WORKLOAD_KINDS and group in ("apps", "batch", ""))
            or (kind in KRUISE_KINDS and group == "apps.kruise.io")):
        template = spec.get("template") or {}
        return [PodTemplate(obj, "", template.get("spec") or {}, template.get("metadata") or {}, namespace,
                            replicas=_replicas(spec), per_node=kind == "DaemonSet", runs_to_completion=kind == "Job")]
    if kind == "CronJob" and group == "batch":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return [PodTemplate(obj, "", template.get("spec") or {}, template.get("metadata") or {}, namespace,
                            runs_to_completion=True)]
    if kind == "Elasticsearch" and group == "elasticsearch.k8s.elastic.co":
        out = []
        for node_set in spec.get("nodeSets") or []:
            image = spec.get("image") or f"docker.elastic.co/elasticsearch/elasticsearch:{spec.get('version')}"
            template = _with_image(node_set.get("podTemplate") or {}, "elasticsearch", image)
            out.append(PodTemplate(obj, f"nodeSet {node_set.get('name')}", template.get("spec") or {},
                                   template.get("metadata") or {}, namespace, replicas=int(node_set.get("count", 1)),
                                   operator="ECK"))
        return out
    if kind == "Kibana" and group == "kibana.k8s.elastic.co":
        template = _with_image(spec.get("podTemplate") or {}, "kibana",
                               spec.get("image") or f"docker.elastic.co/kibana/kibana:{spec.get('version')}")
        return [PodTemplate(obj, "", template.get("spec") or {}, template.get("metadata") or {}, namespace,
                            replicas=int(spec.get("count", 1)), operator="ECK")]
    if kind == "Grafana" and group == "grafana.integreatly.org":
        version = str(spec.get("version") or "")
        template = _with_image((((spec.get("deployment") or {}).get("spec") or {}).get("template")) or {}, "grafana",
                               version if "/" in version else f"docker.io/grafana/grafana:{version}")
        return [PodTemplate(obj, "deployment", template.get("spec") or {}, template.get("metadata") or {},
                            namespace, replicas=_replicas((spec.get("deployment") or {}).get("spec") or {}),
                            operator="grafana-operator")]
    if kind == "OpenTelemetryCollector" and group == "opentelemetry.io":
        pod: dict[str, Any] = {"containers": [_operator_container("otc-container", spec,
                                                                 defaults.get("OpenTelemetryCollector", ""))]}
        for key in ("podSecurityContext", "volumes", "initContainers", "hostNetwork", "serviceAccount"):
            if key in spec:
                pod["securityContext" if key == "podSecurityContext" else key] = copy.deepcopy(spec[key])
        mode = spec.get("mode", "deployment")
        return [PodTemplate(obj, f"mode {mode}", pod, {"annotations": spec.get("podAnnotations") or {}}, namespace,
                            replicas=_replicas(spec), per_node=mode == "daemonset", operator="opentelemetry-operator")]
    if kind in ("Prometheus", "Alertmanager") and group == "monitoring.coreos.com":
        # prometheus-operator gives its containers this security context (pkg/prometheus and
        # pkg/alertmanager of prometheus-operator); the resource's own fields come on top.
        main = _operator_container("prometheus" if kind == "Prometheus" else "alertmanager", spec,
                                   defaults.get(kind, ""))
        main["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                   "capabilities": {"drop": ["ALL"]}, **(main.get("securityContext") or {})}
        pod = {"securityContext": copy.deepcopy(spec.get("securityContext") or {}),
               "containers": [main, *copy.deepcopy(spec.get("containers") or [])],
               "initContainers": copy.deepcopy(spec.get("initContainers") or []),
               "volumes": copy.deepcopy(spec.get("volumes") or [])}
        return [PodTemplate(obj, "", pod, {}, namespace, replicas=_replicas(spec), operator="prometheus-operator")]
    return []


# ---------------------------------------------------------------------------------------------
# Pod Security Standards
# ---------------------------------------------------------------------------------------------
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                          "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                          "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
                          "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                                "persistentVolumeClaim", "projected", "secret"})
VOLUME_NAMES = frozenset({"hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi",
                          "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile",
                          "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO",
                          "storageos"}) | RESTRICTED_VOLUMES
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _name(container: dict[str, Any]) -> str:
    return str(container.get("name"))


def _uses(count: int) -> str:
    return "uses" if count == 1 else "use"


def _q(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _containers(names: list[str]) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_q(names)}"


def baseline_violations(pod: PodTemplate) -> list[tuple[str, str]]:
    """(check, message) for every baseline check the pod fails."""
    spec, out = pod.spec, []
    pod_sc = spec.get("securityContext") or {}
    containers = list(pod.containers())
    hosts = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if hosts:
        out.append(("hostNamespaces", f"host namespaces ({', '.join(hosts)})"))
    privileged = [_name(c) for _, c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        out.append(("privileged",
                    f"privileged ({_containers(privileged)} must not set securityContext.privileged=true)"))
    added = {_name(c): sorted(set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
                                   - BASELINE_CAPABILITIES) for _, c in containers}
    bad_caps = {n: caps for n, caps in added.items() if caps}
    if bad_caps:
        caps = sorted({c for caps in bad_caps.values() for c in caps})
        out.append(("capabilities_baseline", f"non-default capabilities ({_containers(list(bad_caps))} must not "
                                             f"include {_q(caps)} in securityContext.capabilities.add)"))
    host_paths = [v.get("name") for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_paths:
        out.append(("hostPathVolumes", f"hostPath volumes ({'volume' if len(host_paths) == 1 else 'volumes'} "
                                       f"{_q(host_paths)})"))
    ports = {_name(c): sorted({str(p.get("hostPort")) for p in c.get("ports") or [] if p.get("hostPort")})
             for _, c in containers}
    ports = {n: p for n, p in ports.items() if p}
    if ports:
        out.append(("hostPorts", f"hostPort ({_containers(list(ports))} {_uses(len(ports))} hostPort "
                                 f"{', '.join(sorted({p for ps in ports.values() for p in ps}))})"))
    hosts_used = set()
    host_users = []
    for _, c in containers:
        handlers = [c.get(p) or {} for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [((c.get("lifecycle") or {}).get(h) or {}) for h in ("postStart", "preStop")]
        found = {str((h.get(k) or {}).get("host")) for h in handlers for k in ("httpGet", "tcpSocket")
                 if (h.get(k) or {}).get("host")}
        if found:
            hosts_used |= found
            host_users.append(str(_name(c)))
    if hosts_used:
        out.append(("hostProbesAndHostLifecycle", f"probe or lifecycle host ({_containers(sorted(host_users))} "
                                                  f"{_uses(len(host_users))} {_q(sorted(hosts_used))})"))
    apparmor = []
    if (pod_sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        apparmor.append("pod")
    apparmor += [f'container "{_name(c)}"' for _, c in containers
                 if ((c.get("securityContext") or {}).get("appArmorProfile") or {}).get("type")
                 not in (None, "RuntimeDefault", "Localhost")]
    annotations = pod.metadata.get("annotations") or {}
    apparmor += [f"annotation {k}" for k, v in annotations.items() if k.startswith(APPARMOR_ANNOTATION)
                 and not (v in ("", "runtime/default") or str(v).startswith("localhost/"))]
    if apparmor:
        out.append(("appArmorProfile", f"forbidden AppArmor profile ({' and '.join(apparmor)})"))
    selinux = []
    for who, sc in [("pod", pod_sc)] + [(f'container "{_name(c)}"', c.get("securityContext") or {})
                                        for _, c in containers]:
        options = sc.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES or options.get("user") or options.get("role"):
            selinux.append(who)
    if selinux:
        out.append(("seLinuxOptions", f"seLinuxOptions ({' and '.join(selinux)} set forbidden "
                                      "securityContext.seLinuxOptions)"))
    proc = [_name(c) for _, c in containers if (c.get("securityContext") or {}).get("procMount")
            not in (None, "Default")]
    if proc:
        out.append(("procMount", f"procMount ({_containers(proc)} must not set securityContext.procMount)"))
    seccomp = []
    if (pod_sc.get("seccompProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        seccomp.append("pod")
    seccomp += [f'container "{_name(c)}"' for _, c in containers
                if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
                not in (None, "RuntimeDefault", "Localhost")]
    if seccomp:
        out.append(("seccompProfile_baseline", f"seccompProfile ({' and '.join(seccomp)} must not set "
                                               "securityContext.seccompProfile.type to Unconfined)"))
    sysctls = [s.get("name") for s in pod_sc.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if sysctls:
        out.append(("sysctls", f"forbidden sysctls ({', '.join(map(str, sysctls))})"))
    host_process = ["pod"] if (pod_sc.get("windowsOptions") or {}).get("hostProcess") else []
    host_process += [f'container "{_name(c)}"' for _, c in containers
                     if ((c.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess")]
    if host_process:
        out.append(("windowsHostProcess", f"hostProcess ({' and '.join(host_process)} must not set "
                                          "securityContext.windowsOptions.hostProcess=true)"))
    return out


def restricted_violations(pod: PodTemplate) -> list[tuple[str, str]]:
    """(check, message) for every restricted-only check the pod fails (baseline not included)."""
    spec, out = pod.spec, []
    pod_sc = spec.get("securityContext") or {}
    containers = [c for _, c in pod.containers()]
    windows = (spec.get("os") or {}).get("name") == "windows"
    if not windows:
        escalating = [_name(c) for c in containers
                      if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]
        if escalating:
            out.append(("allowPrivilegeEscalation", f"allowPrivilegeEscalation != false ({_containers(escalating)} "
                                                    "must set securityContext.allowPrivilegeEscalation=false)"))
        no_drop = [_name(c) for c in containers
                   if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])]
        adds = {_name(c): sorted(set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add")
                                          or []) - {"NET_BIND_SERVICE"}) for c in containers}
        adds = {n: a for n, a in adds.items() if a}
        parts = []
        if no_drop:
            parts.append(f'{_containers(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
        if adds:
            parts.append(f"{_containers(list(adds))} must not include "
                         f"{_q(sorted({a for v in adds.values() for a in v}))} in securityContext.capabilities.add")
        if parts:
            out.append(("capabilities_restricted", f"unrestricted capabilities ({'; '.join(parts)})"))
    bad_volumes = []
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k in VOLUME_NAMES]
        kind = kinds[0] if kinds else "unknown"
        if kind not in RESTRICTED_VOLUMES:
            bad_volumes.append((volume.get("name"), kind))
    if bad_volumes:
        out.append(("restrictedVolumes", f"restricted volume types ({'volume' if len(bad_volumes) == 1 else 'volumes'} "
                                         f"{_q([str(n) for n, _ in bad_volumes])} {_uses(len(bad_volumes))} "
                                         f"{_q(sorted({k for _, k in bad_volumes}))})"))
    explicit_false = (["pod"] if pod_sc.get("runAsNonRoot") is False else [])
    explicit_false += [f'container "{_name(c)}"' for c in containers
                       if (c.get("securityContext") or {}).get("runAsNonRoot") is False]
    if explicit_false:
        out.append(("runAsNonRoot", f"runAsNonRoot != true ({' and '.join(explicit_false)} must not set "
                                    "securityContext.runAsNonRoot=false)"))
    elif pod_sc.get("runAsNonRoot") is not True:
        unset = [_name(c) for c in containers if (c.get("securityContext") or {}).get("runAsNonRoot") is not True]
        if unset:
            out.append(("runAsNonRoot", f"runAsNonRoot != true (pod or {_containers(unset)} must set "
                                        "securityContext.runAsNonRoot=true)"))
    root = (["pod"] if pod_sc.get("runAsUser") == 0 else [])
    root += [f'container "{_name(c)}"' for c in containers if (c.get("securityContext") or {}).get("runAsUser") == 0]
    if root:
        out.append(("runAsUser", f"runAsUser=0 ({' and '.join(root)} must not set runAsUser=0)"))
    if not windows:
        valid = ("RuntimeDefault", "Localhost")
        pod_type = (pod_sc.get("seccompProfile") or {}).get("type")
        explicit = [f'container "{_name(c)}"' for c in containers
                    if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") not in (None, *valid)]
        if pod_type is not None and pod_type not in valid:
            explicit.insert(0, "pod")
        if explicit:
            out.append(("seccompProfile_restricted", f"seccompProfile ({' and '.join(explicit)} must not set "
                                                     "securityContext.seccompProfile.type to an unconfined profile)"))
        elif pod_type not in valid:
            unset = [_name(c) for c in containers
                     if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") not in valid]
            if unset:
                out.append(("seccompProfile_restricted", f"seccompProfile (pod or {_containers(unset)} must set "
                                                         'securityContext.seccompProfile.type to "RuntimeDefault" or '
                                                         '"Localhost")'))
    return out


REPLACED_BY_RESTRICTED = {"hostPathVolumes", "capabilities_baseline", "seccompProfile_baseline"}


def violations(pod: PodTemplate, level: str) -> list[tuple[str, str]]:
    """What Pod Security admission refuses of ``pod`` in a namespace enforcing ``level``."""
    if level == "privileged":
        return []
    baseline = baseline_violations(pod)
    if level == "baseline":
        return baseline
    return [v for v in baseline if v[0] not in REPLACED_BY_RESTRICTED] + restricted_violations(pod)


def required_level(pod: PodTemplate) -> tuple[str, list[tuple[str, str]]]:
    """The least permissive level the pod passes, and what keeps it from the next stricter one."""
    restricted = violations(pod, "restricted")
    if not restricted:
        return "restricted", []
    baseline = violations(pod, "baseline")
    if not baseline:
        return "baseline", restricted
    return "privileged", baseline
