#!/usr/bin/env python3
"""Render, validation and footprint benchmark: prints tables of wall times and counts.

For the default answers and for the largest answer fixture it measures
  - `copier copy` of this template (from a clean git snapshot, as users render it), against a
    trivial template with the same number of files (Copier's own floor) and one with the same file
    paths (Copier's floor for this tree: it compiles every path segment, so deep trees cost more);
  - `opc validate` of the result as it is now (kustomize builds, every Helm release rendered,
    every KubeVela Application expanded, every pod judged), cold (empty render cache) and warm,
    against `opc validate --no-charts` (what it checked before charts were rendered) and the
    bare kustomize builds alone, run in parallel with the same number of jobs as opc;
  - the footprint of the default answers' clusters (`opc footprint`), and whether a workload
    cluster fits one 4 vCPU / 8 GiB node by requests.
Every time is the median of --repeat runs. Charts come from $OPC_CHART_DIR or ../shared/charts
(test data beside the checkout), else they are pulled. Usage: bench/render_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from conftest import FIXTURES, SUBSTITUTES, git, load_fixture, snapshot_template  # noqa: E402

from opc.kustomize import find_kustomizations, kustomize_command, parse_documents  # noqa: E402

BIN = Path(sys.executable).parent
COPIER = str(BIN / "copier")
OPC = str(BIN / "opc")
JOBS = max(2, (os.cpu_count() or 2) * 2)  # what opc validate uses


def timed(argv: list[str], repeat: int, before: Callable[[], object] | None = None,
          env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        subprocess.run(argv, check=False, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def files_in(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file() and ".git" not in p.parts)


def _template_repo(dest: Path) -> None:
    (dest / "template").mkdir(parents=True)
    (dest / "copier.yml").write_text("_subdirectory: template\nname:\n  type: str\n  default: acme\n")
    (dest / "template" / "{{ _copier_conf.answers_file }}.jinja").write_text("{{ _copier_answers | to_nice_yaml }}")


def _commit(dest: Path) -> Path:
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "bench")
    return dest


def trivial_template(dest: Path, files: int) -> Path:
    """A template of `files` small templated files in a few folders, in a git repository."""
    _template_repo(dest)
    for i in range(files - 1):
        folder = dest / "template" / f"dir{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{i}.yaml.jinja").write_text(f"---\nname: {{{{ name }}}}\nindex: {i}\n")
    return _commit(dest)


def same_tree_template(dest: Path, rendered: Path) -> Path:
    """A template with the rendered repository's file paths (plain names), each file trivial."""
    _template_repo(dest)
    for path in rendered.rglob("*"):
        rel = path.relative_to(rendered)
        if not path.is_file() or ".git" in rel.parts or rel.name == ".copier-answers.yml":
            continue
        target = dest / "template" / f"{rel}.jinja"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("---\nname: {{ name }}\n")
    return _commit(dest)


def bare_builds(repo: Path) -> tuple[float, int, int]:
    """Every kustomization built with kustomize, JOBS at a time (as opc does): seconds, builds, objects."""
    command = kustomize_command()
    paths = find_kustomizations(repo)

    def build(path: Path) -> int:
        out = subprocess.run([*command, str(path)], check=True, capture_output=True, text=True).stdout
        return len(parse_documents(out))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        objects = sum(pool.map(build, paths))
    return time.perf_counter() - started, len(paths), objects


def chart_args() -> list[str]:
    shared = ROOT.parent / "shared" / "charts"
    args = ["--chart-dir", str(shared)] if shared.is_dir() else []
    for pinned, stand_in in SUBSTITUTES.items():
        if (shared / stand_in).is_dir():
            args += ["--chart-substitute", f"{pinned}={shared / stand_in}"]
    return args


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opc-bench-"))
    template = snapshot_template(work / "template")
    largest = max(sorted((FIXTURES / "valid").glob("*.yml")),
                  key=lambda p: (len(load_fixture(p).get("clouds", [])) * len(load_fixture(p).get("environments", [])),
                                 len(load_fixture(p).get("services", []))))
    charts = chart_args()
    cold_cache = work / "cache"
    cold_env = {**os.environ, "XDG_CACHE_HOME": str(cold_cache)}
    for tool in ("helm", "vela"):  # the tools stay where they are built; only renders start cold
        from opc.tools import TOOLS
        if TOOLS[tool].home.is_dir():
            target = cold_cache / "opc" / "tools" / TOOLS[tool].home.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(TOOLS[tool].home)

    render_rows, validate_rows = [], []
    for name, fixture in (("defaults", None), (largest.stem, largest)):
        out = work / f"out-{name}"
        argv = [COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(template), str(out)]
        if fixture:
            argv[2:2] = ["--data-file", str(fixture)]
        render = timed(argv, args.repeat, before=partial(shutil.rmtree, out, ignore_errors=True))
        subprocess.run(argv, check=True, capture_output=True)
        files = files_in(out)
        trivial = trivial_template(work / f"trivial-{name}", files)
        floor_out = work / f"floor-{name}"
        floor = timed([COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(trivial),
                       str(floor_out)], args.repeat, before=partial(shutil.rmtree, floor_out, ignore_errors=True))
        tree = same_tree_template(work / f"tree-{name}", out)
        tree_out = work / f"tree-out-{name}"
        tree_floor = timed([COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(tree),
                            str(tree_out)], args.repeat, before=partial(shutil.rmtree, tree_out, ignore_errors=True))
        render_rows.append(row(name, files, f"{render:.2f}s", f"{floor:.2f}s", f"{render / floor:.2f}x",
                               f"{tree_floor:.2f}s", f"{render / tree_floor:.2f}x"))

        validate = [OPC, "validate", str(out), "-q", *charts]
        cold = timed(validate, args.repeat, before=partial(shutil.rmtree, cold_cache / "opc" / "renders",
                                                           ignore_errors=True), env=cold_env)
        warm = timed(validate, args.repeat, env=cold_env)
        kustomize_only = timed([OPC, "validate", str(out), "-q", "--no-charts"], args.repeat)
        bare = [bare_builds(out) for _ in range(args.repeat)]
        bare_seconds = statistics.median(b[0] for b in bare)
        validate_rows.append(row(name, bare[0][1], bare[0][2], f"{bare_seconds:.2f}s", f"{kustomize_only:.2f}s",
                                 f"{cold:.2f}s", f"{warm:.2f}s", f"{cold / kustomize_only:.2f}x",
                                 f"{warm / kustomize_only:.2f}x"))

    print(f"Rendering (median of {args.repeat}):\n")
    print(row("answers", "files", "copier copy", "trivial floor", "ratio", "same-tree floor", "ratio"))
    print(row(*["---"] * 7))
    print("\n".join(render_rows))
    print(f"\nValidation (median of {args.repeat}; kustomize builds {JOBS} at a time, as opc runs them):\n")
    print(row("answers", "kustomizations", "objects built", "bare kustomize", "opc validate --no-charts",
              "opc validate (cold)", "opc validate (warm)", "cold / --no-charts", "warm / --no-charts"))
    print(row(*["---"] * 9))
    print("\n".join(validate_rows))

    defaults = work / "out-defaults"
    result = subprocess.run([OPC, "footprint", str(defaults), "--format", "json", "-q", *charts],
                            check=True, capture_output=True, text=True)
    import json

    data = json.loads(result.stdout)["clusters"]
    print("\nFootprint of the default answers (requests; one node per cluster):\n")
    print(row("cluster", "pods", "CPU requests", "memory requests", "fits 4 vCPU / 8 GiB"))
    print(row(*["---"] * 5))
    for cluster, entry in data.items():
        total = entry["total"]
        fits = total["cpu_request_m"] <= 4000 and total["memory_request_mib"] <= 8192
        print(row(cluster, total["pods"], f"{total['cpu_request_m'] / 1000:.2f}",
                  f"{total['memory_request_mib'] / 1024:.2f} GiB", "yes" if fits else "no"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
