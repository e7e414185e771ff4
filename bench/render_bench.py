#!/usr/bin/env python3
"""Render and validation benchmark: prints wall times side by side, with file and object counts.

For the default answers and for the largest answer fixture it measures
  - `copier copy` of this template (from a clean git snapshot, as users render it),
  - `copier copy` of a trivial template with the same number of files (Copier's own floor),
  - `copier copy` of a trivial template with the same file paths (Copier's floor for this tree:
    Copier compiles every path segment, and the answers-file path once per segment, so deep
    trees such as the Java services' Maven layout cost more per file than flat ones),
  - `opc validate` of the result, and the bare `kustomize` builds it runs, one after another.
Each time is the median of --repeat runs. Usage: bench/render_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from conftest import FIXTURES, git, load_fixture, snapshot_template, schema_dir  # noqa: E402
from opc.kustomize import find_kustomizations, kustomize_command, parse_documents  # noqa: E402

BIN = Path(sys.executable).parent
COPIER = str(BIN / "copier")
OPC = str(BIN / "opc")


def timed(argv: list[str], repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def files_in(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file() and ".git" not in p.parts)


def trivial_template(dest: Path, files: int) -> Path:
    """A template of `files` small templated files in a few folders, in a git repository."""
    (dest / "template").mkdir(parents=True)
    (dest / "copier.yml").write_text("_subdirectory: template\nname:\n  type: str\n  default: acme\n")
    (dest / "template" / "{{ _copier_conf.answers_file }}.jinja").write_text("{{ _copier_answers | to_nice_yaml }}")
    for i in range(files - 1):
        folder = dest / "template" / f"dir{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{i}.yaml.jinja").write_text(f"---\nname: {{{{ name }}}}\nindex: {i}\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "trivial")
    return dest


def same_tree_template(dest: Path, rendered: Path) -> Path:
    """A template with the rendered repository's file paths (plain names), each file trivial."""
    (dest / "template").mkdir(parents=True)
    (dest / "copier.yml").write_text("_subdirectory: template\nname:\n  type: str\n  default: acme\n")
    (dest / "template" / "{{ _copier_conf.answers_file }}.jinja").write_text("{{ _copier_answers | to_nice_yaml }}")
    for path in rendered.rglob("*"):
        rel = path.relative_to(rendered)
        if not path.is_file() or ".git" in rel.parts or rel.name == ".copier-answers.yml":
            continue
        target = dest / "template" / f"{rel}.jinja"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("---\nname: {{ name }}\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "same tree")
    return dest


def bare_builds(repo: Path) -> tuple[float, int, int]:
    """Sequential kustomize builds of every kustomization: seconds, builds, objects."""
    command = kustomize_command()
    paths = find_kustomizations(repo)
    objects = 0
    started = time.perf_counter()
    for path in paths:
        out = subprocess.run([*command, str(path)], check=True, capture_output=True, text=True).stdout
        objects += len(parse_documents(out))
    return time.perf_counter() - started, len(paths), objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    schemas = schema_dir()
    work = Path(tempfile.mkdtemp(prefix="opc-bench-"))
    template = snapshot_template(work / "template")
    largest = max(sorted((FIXTURES / "valid").glob("*.yml")),
                  key=lambda p: (len(load_fixture(p).get("clouds", [])) * len(load_fixture(p).get("environments", [])),
                                 len(load_fixture(p).get("services", []))))
    cases = [("defaults", None), (largest.stem, largest)]
    rows = []
    for name, fixture in cases:
        out = work / f"out-{name}"
        argv = [COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(template), str(out)]
        if fixture:
            argv[2:2] = ["--data-file", str(fixture)]
        clean = lambda: subprocess.run(["rm", "-rf", str(out)], check=True)  # noqa: E731
        render = timed(argv, args.repeat, before=clean)
        files = files_in(out)
        trivial = trivial_template(work / f"trivial-{name}", files)
        floor_out = work / f"floor-{name}"
        floor = timed([COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(trivial),
                       str(floor_out)], args.repeat,
                      before=lambda: subprocess.run(["rm", "-rf", str(floor_out)], check=True))
        tree = same_tree_template(work / f"tree-{name}", out)
        tree_out = work / f"tree-out-{name}"
        tree_floor = timed([COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", str(tree),
                            str(tree_out)], args.repeat,
                           before=lambda: subprocess.run(["rm", "-rf", str(tree_out)], check=True))
        validate = timed([OPC, "validate", str(out), "--schema-dir", str(schemas), "-q"], args.repeat)
        bare, builds, objects = min((bare_builds(out) for _ in range(args.repeat)), key=lambda r: r[0])
        rows.append((name, files, render, floor, tree_floor, validate, bare, builds, objects))

    print(f"machine: {os.cpu_count()} cores; {' '.join(kustomize_command())}; median of {args.repeat} runs\n")
    header = ("answers", "files", "copier copy", "trivial floor", "ratio", "same-tree floor", "ratio", "objects",
              "builds", "opc validate", "bare kustomize", "ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, files, render, floor, tree_floor, validate, bare, builds, objects in rows:
        print(f"| {name} | {files} | {render:.2f}s | {floor:.2f}s | {render / floor:.2f}x | {tree_floor:.2f}s | "
              f"{render / tree_floor:.2f}x | {objects} | {builds} | {validate:.2f}s | {bare:.2f}s | "
              f"{validate / bare:.2f}x |")
    print("\ntargets: copier copy <= 1.3x the trivial floor; opc validate <= 2x the bare kustomize builds")


if __name__ == "__main__":
    main()
