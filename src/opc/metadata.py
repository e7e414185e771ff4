"""Object metadata rules that the API server enforces but no JSON schema expresses.

Names, namespaces, label keys and values, annotation keys: an overlong or malformed one passes
every schema and is only refused when applied. Rules follow k8s.io/apimachinery validation.
"""

from __future__ import annotations

import re
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS-1123 labels (they become DNS names or path segments); a Service's
# must also start with a letter (DNS-1035); RBAC objects only need a valid path segment.
LABEL_NAMED_KINDS = {"Namespace", "Service"}
DNS1035_KINDS = {"Service"}
PATH_SEGMENT_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
ANNOTATIONS_MAX_BYTES = 256 * 1024


def _qualified_name(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"prefix '{prefix}' must be a DNS-1123 subdomain of at most 253 characters"
    if not name or len(name) > 63 or not QUALIFIED_NAME.fullmatch(name):
        return f"name part '{name}' must be 1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends"
    return None


def check_metadata(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    errors = []
    kind = obj.get("kind", "")
    name = meta.get("name")
    if isinstance(name, str):
        if kind in PATH_SEGMENT_KINDS:
            if name in (".", "..") or "/" in name or "%" in name or not name:
                errors.append(f"metadata/name: '{name}' must be a path segment (no '/' or '%', not '.' or '..')")
        elif kind in DNS1035_KINDS and name[:1].isdigit():
            errors.append(f"metadata/name: '{name}' must start with a letter (a DNS-1035 label)")
        elif kind in LABEL_NAMED_KINDS:
            if len(name) > 63 or not DNS1123_LABEL.fullmatch(name):
                errors.append(f"metadata/name: '{name}' must be a DNS-1123 label (at most 63 characters)")
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
            errors.append(f"metadata/name: '{name}' must be a DNS-1123 subdomain (at most 253 characters)")
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and (len(namespace) > 63 or not DNS1123_LABEL.fullmatch(namespace)):
        errors.append(f"metadata/namespace: '{namespace}' must be a DNS-1123 label")
    for key, value in (meta.get("labels") or {}).items():
        if problem := _qualified_name(str(key)):
            errors.append(f"metadata/labels/{key}: {problem}")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            errors.append(f"metadata/labels/{key}: value '{value}' must be at most 63 characters of "
                          "[A-Za-z0-9-_.], alphanumeric at both ends")
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if problem := _qualified_name(str(key)):
            errors.append(f"metadata/annotations/{key}: {problem}")
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        errors.append(f"metadata/annotations: {size} bytes, more than the 256 KiB the API server accepts")
    return errors
