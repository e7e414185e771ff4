#!/usr/bin/env python3
"""Every valid fixture against the real control plane: prints two tables.

1. `opc verify` per fixture (one fresh etcd + kube-apiserver 1.34 per fixture, its clusters in
   turn): objects accepted (created / server-side dry-run), pods admitted by Pod Security,
   rejections, warnings (and how many have no reason), seconds.
2. Flux convergence per cluster of every Flux fixture (tests/fluxrun.py: a fresh API server, the
   real source-, kustomize- and helm-controller, the repository served by a local Git server and
   the pinned charts by a local Helm repository and OCI registry): Kustomizations and
   HelmReleases Ready, seconds from bootstrap to converged, objects the readiness stand-in marked.

The test suite runs a subset of the convergences (tests/test_verify.py FLUX_RUNS); this runs all
of them, one after another (about two minutes per cluster here). Charts come from
$OPC_CHART_DIR or ../shared/charts, else they are pulled.
Usage: bench/control_plane.py [--fixture NAME ...] [--no-converge] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import fluxrun  # noqa: E402
from conftest import FIXTURES, _chart_options, load_fixture, render, schema_dirs, snapshot_template  # noqa: E402

from opc.controlplane import ControlPlane  # noqa: E402
from opc.validate import validate_repo  # noqa: E402
from opc.verify import verify_report  # noqa: E402


def fixtures(names: list[str]) -> list[tuple[str, dict]]:
    every = [("defaults", {})] + [(p.stem, load_fixture(p)) for p in sorted((FIXTURES / "valid").glob("*.yml"))]
    if not names:
        return every
    known = dict(every)
    return [(n, known[n]) for n in names]  # in the order given


def table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", action="append", default=[], help="only this fixture (repeatable)")
    parser.add_argument("--no-converge", action="store_true", help="opc verify only, no Flux runs")
    parser.add_argument("--keep", type=Path, help="work here and keep it (logs, control planes)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="opc-control-plane-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    schemas, charts = schema_dirs(), _chart_options()
    template = snapshot_template(work / "template")
    verified: list[list[object]] = []
    converged: list[list[object]] = []
    failed = False
    for name, answers in fixtures(args.fixture):
        print(f"{name}: rendering and validating", file=sys.stderr, flush=True)
        repo = render(template, work / name / "repo", answers)
        report = validate_repo(repo, schemas, lint=False, wiring=[], charts=charts)
        started = time.perf_counter()
        with ControlPlane(work / name / "verify") as plane:
            results = verify_report(report, plane, schema_dirs=schemas)
        engine = results[0].engine
        verified.append([name, engine, len(results), sum(r.created + r.dry_run for r in results),
                         sum(r.created for r in results), sum(r.pods for r in results),
                         sum(len(r.rejected) for r in results), sum(len(r.warnings) for r in results),
                         sum(len(r.unexplained) for r in results), f"{time.perf_counter() - started:.0f}"])
        failed |= not all(r.ok for r in results)
        print(f"{name}: verified: {verified[-1]}", file=sys.stderr, flush=True)
        if engine != "flux" or args.no_converge:
            continue
        for result in results:
            print(f"{name}: converging {result.cluster}", file=sys.stderr, flush=True)
            outcome = fluxrun.run(report, repo, result.cluster, work / name / f"flux-{result.cluster}", schemas)
            ks = sum(ok for ok, _ in outcome.kustomizations.values())
            hr = sum(ok for ok, _ in outcome.helmreleases.values())
            converged.append([name, result.cluster, f"{ks}/{len(outcome.kustomizations)}",
                              f"{hr}/{len(outcome.helmreleases)}", f"{outcome.seconds:.0f}", outcome.marked])
            failed |= not outcome.converged
            print(f"{name}: converged: {converged[-1]}", file=sys.stderr, flush=True)
            if not args.keep:
                shutil.rmtree(work / name / f"flux-{result.cluster}", ignore_errors=True)
    print(table(["fixture", "engine", "clusters", "objects", "created", "pods", "rejected", "warnings",
                 "unexplained", "seconds"], verified))
    if converged:
        print()
        print(table(["fixture", "cluster", "Kustomizations Ready", "HelmReleases Ready", "seconds to converge",
                     "made ready by the stand-in"], converged))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
