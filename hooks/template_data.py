"""Data the templates read that is derived from renders, not written by hand, as Jinja globals
(loaded by Copier through copier-template-extensions, like questionnaire.py).

- ``image_paths``: hooks/image-paths.yml, the values paths naming each release's images
  (scripts/image-paths writes it; the tests check it against a fresh render).
- ``footprint_rows``: the footprint table of a rendered README, from hooks/footprint.yml (what
  each namespace of each kind of cluster requests; scripts/footprint writes it, and the tests
  check the README's table against `opc footprint` of the same render).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment
from jinja2.ext import Extension


def _load(name: str) -> Any:
    return yaml.safe_load(Path(__file__).with_name(name).read_text(encoding="utf-8")) or {}


def footprint_rows(gitops: str, hub: dict[str, Any], workloads: list[dict[str, Any]],
                   services: int) -> list[list[str]]:
    """One row per cluster, by name: pods, CPU requests (cores), memory requests (GiB), CPU limits,
    memory limits, as `opc footprint --format markdown` prints them (DaemonSets on one node)."""
    if not Path(__file__).with_name("footprint.yml").is_file():
        return []  # only while scripts/footprint renders the template to derive the file
    data = _load("footprint.yml")[gitops]
    clusters = []
    for cluster in [hub, *workloads]:
        total = [0, 0, 0, 0, 0]
        parts = [data["hub"]] if cluster["role"] == "hub" else [data["workload"][cluster["env"]]]
        if cluster["cloud"] == "private":
            parts.append(data["private"]["prod" if cluster["role"] == "hub" else cluster["env"]])
        for part in parts:
            for amounts in part.values():
                total = [a + b for a, b in zip(total, amounts, strict=True)]
        if cluster["role"] != "hub":
            total = [a + services * b for a, b in zip(total, data["service"][cluster["env"]], strict=True)]
        pods, cpu_request, memory_request, cpu_limit, memory_limit = total
        clusters.append([f"`{cluster['name']}`", str(pods), f"{cpu_request / 1000:.2f}",
                         f"{memory_request / 2**30:.2f} GiB", f"{cpu_limit / 1000:.2f}",
                         f"{memory_limit / 2**30:.2f} GiB"])
    return sorted(clusters, key=lambda row: row[0])


def image_paths() -> dict[str, Any]:
    data = yaml.safe_load(Path(__file__).with_name("image-paths.yml").read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


class TemplateData(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals["image_paths"] = image_paths()
        environment.globals["footprint_rows"] = footprint_rows
