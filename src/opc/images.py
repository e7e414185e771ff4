"""Container images: which ones each cluster pulls, and the values that name them.

``image_references`` lists every image an object makes a node pull: the containers of every pod
it makes (pods.py), image references in the operator resources that name them (Open Cluster
Management's ``*ImagePullSpec``, Flux's distribution registry, an Instrumentation's agents), and
images that operators take from their arguments or environment (``--some-image=<image>``,
``SIDECAR_IMAGE=<image>``) to start pods of their own.

``check_mirrors``: on a cloud with a registry mirror (``registry_mirrors`` in the answers), every
image of every cluster there must be pulled through it.

``derive_image_paths``: for each release, the values paths whose value is the leading part of an
image it renders (a registry, a repository, a hub), found in the chart output of a render without
mirrors. The template keeps them in hooks/image-paths.yml (checked against a fresh render by the
tests) and points each path at the mirror on clouds that have one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .pods import pod_templates

IMAGE = re.compile(r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9._/-]+(?::[A-Za-z0-9._-]+)?(?:@sha256:[0-9a-f]{64})?$")
INJECTED = {"auto"}  # Istio's gateway chart asks the injector for the proxy image


def is_image(text: str) -> bool:
    """An image reference with a registry or namespace and a tag or digest."""
    return bool(IMAGE.match(text)) and "/" in text and (":" in text.rpartition("/")[2] or "@sha256:" in text)


def _argument_images(container: dict[str, Any]) -> Iterator[str]:
    for arg in [*(container.get("args") or []), *(container.get("command") or [])]:
        value = str(arg).partition("=")[2] if str(arg).startswith("-") else ""
        if is_image(value):
            yield value
    for env in container.get("env") or []:
        if str(env.get("name", "")).upper().endswith("IMAGE") and is_image(str(env.get("value", ""))):
            yield str(env["value"])


def image_references(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where in the object, image) for every image the object makes some node pull."""
    for pod in pod_templates(obj):
        for _, container in pod.containers():
            yield f"{pod.label} container {container.get('name')}", str(container.get("image", ""))
            for image in _argument_images(container):
                yield f"{pod.label} container {container.get('name')} (argument)", image
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    label = f"{kind} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")
    if kind in ("Klusterlet", "ClusterManager"):
        for key, value in sorted(spec.items()):
            if key.endswith("ImagePullSpec") and value:
                yield f"{label} spec.{key}", str(value)
    elif kind == "FluxInstance":
        registry = (spec.get("distribution") or {}).get("registry")
        if registry:
            yield f"{label} spec.distribution.registry", f"{registry}/"
    elif kind == "Instrumentation":
        for language, config in sorted(spec.items()):
            if isinstance(config, dict) and config.get("image"):
                yield f"{label} spec.{language}.image", str(config["image"])


def check_mirrors(report: Any) -> list[Any]:
    """Every image of every cluster on a cloud with a mirror is pulled through that mirror."""
    from .answers import read_answers_file
    from .validate import Finding

    answers = read_answers_file(report.root)
    mirrors: dict[str, str] = dict(answers.get("registry_mirrors") or {})
    if not mirrors:
        return []
    own = f"{answers.get('image_registry', '')}/"  # the company's own images: its registry, not a mirror's
    findings = []
    seen: set[tuple[str, str, str]] = set()
    for cluster, objects in sorted(report.cluster_objects().items()):
        cloud = str(answers.get("hub_cloud")) if cluster == "hub" else cluster.split("-", 1)[0]
        mirror = mirrors.get(cloud)
        if not mirror:
            continue
        for where, obj in objects:
            for field, image in image_references(obj):
                if image in INJECTED or image.startswith((f"{mirror}/", own)):
                    continue
                key = (cluster, field, image)
                if key not in seen:
                    seen.add(key)
                    findings.append(Finding("mirror", where, field,
                                            f"cluster {cluster} ({cloud}) pulls '{image}' past the mirror {mirror}"))
    return findings


def _leaves(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(values, str) and values:
        yield path, values


def _registry_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def upstream(value: str) -> str:
    """A values string as a full upstream prefix: Docker Hub's host, and its "library/" for an
    official image, made explicit."""
    first = value.split("/", 1)[0]
    if _registry_host(first):
        return value
    return f"docker.io/{value}" if "/" in value else f"docker.io/library/{value}"


def paths_for(values: dict[str, Any], images: list[str]) -> tuple[dict[str, str], list[str]]:
    """Values paths (dotted) -> upstream prefix, for the leading part of each image; and the
    images no value names."""
    leaves = list(_leaves(values))
    chosen: dict[str, str] = {}
    orphans = []
    for image in images:
        candidates = [(path, value) for path, value in leaves
                      if image == value or image.startswith((f"{value}/", f"{value}:", f"{value}@"))]
        if not candidates:
            orphans.append(image)
            continue
        # a registry alone ("quay.io") is only the right key when its sibling names the rest
        exact = []
        for path, value in candidates:
            rest = image[len(value) + 1:].split(":")[0].split("@")[0]
            siblings = {v for p, v in leaves if p[:-1] == path[:-1] and p != path}
            if "/" in value or rest in siblings or not _registry_host(value):
                exact.append((path, value))
        # the most specific value; where several keys hold it (a subchart's copy), all of them
        pool = exact or candidates
        longest = max(len(value) for _, value in pool)
        for path, value in pool:
            if len(value) == longest:
                chosen[".".join(path)] = upstream(value)
    return chosen, orphans


def effective_values(chart: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The values a chart renders with: its defaults, its subcharts' defaults under their keys,
    the release's values on top."""
    from .charts import deep_merge

    def defaults(node: Any) -> dict[str, Any]:
        out = dict(node.defaults)
        for key, sub in node.subcharts.items():
            out[key] = deep_merge(defaults(sub), out.get(key) or {})
        return out

    return deep_merge(defaults(chart), values)


def derive_image_paths(report: Any) -> dict[str, Any]:
    """Per release: the values paths naming its images, and the images no value names."""
    from .values import chart_values

    found: dict[str, dict[str, Any]] = {}
    for rendered in report.releases:
        if not rendered.ok or rendered.chart_dir is None:  # a declared substitute has the same values
            continue
        release = rendered.release
        images = sorted({image for obj in rendered.objects for _, image in image_references(obj)
                         if image not in INJECTED})
        paths, orphans = paths_for(effective_values(chart_values(rendered.chart_dir), release.values), images)
        entry = found.setdefault(release.name, {"paths": {}, "unnamed": []})
        entry["paths"].update(paths)
        entry["unnamed"] = sorted(set(entry["unnamed"]) | set(orphans))
    return {name: found[name] for name in sorted(found)}


def derive_for_template(template: str, charts: Any, vcs_ref: str | None = "HEAD") -> dict[str, Any]:
    """The image paths of every release, from a render of the template with every cloud and both
    GitOps engines (reserved.PROBE_ANSWERS), without mirrors."""
    import tempfile
    from pathlib import Path

    import copier

    from .reserved import PROBE_ANSWERS
    from .validate import render_releases

    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="opc-images-") as tmp:
        for gitops in ("flux", "argocd"):
            dest = Path(tmp) / gitops
            copier.run_copy(template, dest, data={**PROBE_ANSWERS, "gitops": gitops}, defaults=True, unsafe=True,
                            vcs_ref=vcs_ref, quiet=True)
            for name, entry in derive_image_paths(render_releases(dest, charts)).items():
                merged = found.setdefault(name, {"paths": {}, "unnamed": []})
                merged["paths"].update(entry["paths"])
                merged["unnamed"] = sorted(set(merged["unnamed"]) | set(entry["unnamed"]))
    return {name: found[name] for name in sorted(found)}


HEADER = """\
# Per Helm release, the values paths that name the leading part of its images, and the upstream
# prefix each holds: on a cloud with a registry mirror, each is pointed at <mirror>/<prefix>.
# Found in the chart output of a render of every cloud and GitOps engine (src/opc/images.py).
# Generated by scripts/image-paths: do not edit.
"""


def dump(data: dict[str, Any]) -> str:
    import yaml

    return HEADER + "---\n" + yaml.safe_dump(data, sort_keys=True, width=200, default_flow_style=False)
