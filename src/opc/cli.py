"""The `opc` command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import version
from .schemas import DEFAULT_KUBERNETES_VERSION

if TYPE_CHECKING:
    from .controlplane import ControlPlane


def _err(message: str) -> None:
    from .text import mask_credentials

    click.echo(mask_credentials(message), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), prog_name="opc")
def main() -> None:
    """Scaffold, validate and upgrade a one-person company's multi-cloud GitOps repository."""


def _collect_data(pairs: tuple[str, ...], data_file: Path | None, template: str,
                  ref: str | None = None) -> dict[str, Any]:
    from .answers import load_data_file, parse_value
    from .render import questions_for

    data = load_data_file(data_file) if data_file else {}
    questions = questions_for(template, ref) or {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got '{pair}'", param_hint="--data")
        data[key] = parse_value(questions.get(key), raw)
    return data


def chart_options(command: Any) -> Any:
    """The options that say how charts are had and rendered (validate, footprint)."""
    for option in reversed([
        click.option("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION, show_default=True,
                     help="Kubernetes version the clusters run: built-in kinds are checked against its schemas "
                     "and charts are rendered for it."),
        click.option("--chart-dir", "chart_dirs", multiple=True,
                     type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Directory of charts laid out as <chart>-<version>/ (or .tgz), tried before the cache "
                     "and helm pull (repeatable; also $OPC_CHART_DIR, colon-separated)."),
        click.option("--chart-substitute", "substitutes", multiple=True, metavar="CHART-VERSION=DIR",
                     help="Render DIR in place of a pinned chart that cannot be had (said in the summary; for "
                     "checks of structure only)."),
        click.option("--offline", is_flag=True,
                     help="Never helm pull: every chart must be in a chart directory or the cache."),
        click.option("--no-charts", is_flag=True, help="Do not render Helm releases or expand KubeVela Applications."),
    ]):
        command = option(command)
    return command


def _charts(kubernetes_version: str, chart_dirs: tuple[Path, ...], substitutes: tuple[str, ...],
            offline: bool) -> Any:
    from .validate import ChartOptions

    replaced: dict[str, Path] = {}
    for item in substitutes:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            raise click.BadParameter(f"expected CHART-VERSION=DIR with an existing DIR, got '{item}'",
                                     param_hint="--chart-substitute")
        replaced[name] = Path(path).resolve()
    return ChartOptions(list(chart_dirs), pull=not offline, kube_version=f"{kubernetes_version}.0",
                        substitutes=replaced)


@main.command()
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--data", "-d", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An answer (repeatable); lists and mappings in YAML, e.g. -d 'clouds=[aliyun, private]'.")
@click.option("--data-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A YAML file of answers.")
@click.option("--defaults", is_flag=True, help="Do not ask: use the default of every question not answered.")
@click.option("--template", "template", metavar="PATH|URL",
              help="Template to render (default: $OPC_TEMPLATE, else the checkout opc runs from).")
@click.option("--vcs-ref", metavar="REF", help="Template version (git tag or commit); default: the newest release.")
@click.option("--quiet", "-q", is_flag=True, help="Do not list the files written.")
def new(destination: Path, pairs: tuple[str, ...], data_file: Path | None, defaults: bool,
        template: str | None, vcs_ref: str | None, quiet: bool) -> None:
    """Render a new company repository into DESTINATION (which must not exist or be empty).

    Answers are checked before anything is written: an unknown question, a computed value or
    a choice that does not exist is an error (plain Copier ignores them). Nothing is left
    behind when rendering fails.
    """
    from .answers import AnswerError
    from .entry import os_error
    from .render import TemplateNotFound, render_new, template_root, unanswered

    try:
        source = template_root(template)
        data = _collect_data(pairs, data_file, source, vcs_ref)
        if not defaults and not sys.stdin.isatty():
            missing = unanswered(source, data, vcs_ref)
            if missing:
                _err(f"error: no terminal to ask {len(missing)} unanswered question(s) ({', '.join(missing)}): "
                     "answer them with -d KEY=VALUE or --data-file, or pass --defaults to take their defaults")
                sys.exit(2)
            defaults = True  # everything is answered: nothing to ask
        started = time.perf_counter()
        dest = render_new(destination, data, template=source, defaults=defaults, vcs_ref=vcs_ref, quiet=quiet)
    except (AnswerError, TemplateNotFound, FileExistsError, ValueError) as exc:  # ValueError: Copier's validators
        _err(f"error: {exc}")
        sys.exit(2)
    except OSError as exc:
        _err(f"error: cannot render into {destination}: {os_error(exc)}")
        sys.exit(1)
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    _err(f"rendered {files} files into {dest} in {time.perf_counter() - started:.1f}s")
    me = sys.argv[0] if "/" in sys.argv[0] and not sys.argv[0].endswith(".py") else "opc"
    _err(f"next: {me} validate {dest}   (then {dest}/README.md > Bootstrap)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--schema-dir",
    "schema_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="OPC_SCHEMA_DIR",
    help="Directory of custom-resource JSON schemas laid out as {group}/{kind}_{version}.json "
    "(repeatable; also $OPC_SCHEMA_DIR, colon-separated).",
)
@click.option(
    "--schema-location",
    "schema_locations",
    multiple=True,
    metavar="TEMPLATE",
    help="A kubeconform-style schema location: a path or http(s) URL with {{.Group}}, {{.ResourceKind}} "
    "and {{.ResourceAPIVersion}} (repeatable; downloads are cached in ~/.cache/opc/schemas).",
)
@chart_options
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Parallel kustomize builds.")
@click.option("--no-lint", is_flag=True, help="Skip yamllint.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and the summary.")
def validate(directory: Path, schema_dirs: tuple[Path, ...], schema_locations: tuple[str, ...],
             kubernetes_version: str, chart_dirs: tuple[Path, ...], substitutes: tuple[str, ...], offline: bool,
             no_charts: bool, jobs: int | None, no_lint: bool, quiet: bool) -> None:
    """Build every kustomization under DIRECTORY and validate every object strictly.

    Built-in kinds are checked against the Kubernetes schema, custom resources against the
    schemas of --schema-dir; an object without a schema is an error. Every YAML file is
    linted with the repository's yamllint configuration. Exits non-zero on any problem.
    """
    from .validate import validate_repo
    from .wiring import ALL_CHECKS

    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="DIRECTORY")
    dirs = [Path(p) for d in schema_dirs for p in str(d).split(":") if p]
    started = time.perf_counter()
    report = validate_repo(
        directory, dirs, kubernetes_version=kubernetes_version, jobs=jobs,
        progress=None if quiet else _err, lint=not no_lint, wiring=ALL_CHECKS,
        schema_locations=list(schema_locations),
        charts=None if no_charts else _charts(kubernetes_version, chart_dirs, substitutes, offline),
    )
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(report.summary() + f" ({time.perf_counter() - started:.1f}s)")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@chart_options
@click.option("--quiet", "-q", is_flag=True, help="Print only the findings and the result.")
def audit(directory: Path, kubernetes_version: str, chart_dirs: tuple[Path, ...], substitutes: tuple[str, ...],
          offline: bool, no_charts: bool, quiet: bool) -> None:
    """Scan every object the clusters receive (charts' output and KubeVela's included) with
    kube-score and checkov; exit 1 on a reported check no audit-skips.yaml entry explains.

    The scanners are built once (`opc tools install kube-score checkov`)."""
    from .audit import AuditError, check_audit, scan
    from .validate import validate_repo

    if no_charts:
        raise click.BadParameter("an audit covers the charts' output", param_hint="--no-charts")
    started = time.perf_counter()
    report = validate_repo(directory, [], kubernetes_version=kubernetes_version, lint=False, wiring=[],
                           progress=None if quiet else _err,
                           charts=_charts(kubernetes_version, chart_dirs, substitutes, offline))
    problems = [f for f in report.findings if f.category in ("build", "chart", "vela")]
    for finding in problems:
        click.echo(str(finding))
    if not quiet:
        _err("scanning with kube-score and checkov")
    try:
        raws, count = scan(report)
    except AuditError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    findings, used = check_audit(report, raws)
    for finding in findings:
        click.echo(str(finding))
    click.echo(f"{count} objects scanned: {len(raws)} checks failed, {sum(used.values())} of them skipped by "
               f"{sum(1 for n in used.values() if n)} reasons, {len(findings)} findings "
               f"({time.perf_counter() - started:.1f}s)")
    sys.exit(1 if findings or problems else 0)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--nodes", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Nodes per cluster: a DaemonSet's pod counts once per node.")
@chart_options
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
def footprint(directory: Path, fmt: str, nodes: int, kubernetes_version: str, chart_dirs: tuple[Path, ...],
              substitutes: tuple[str, ...], offline: bool, no_charts: bool, quiet: bool) -> None:
    """CPU and memory requests and limits per cluster and namespace, from the real rendered pods.

    Every pod the clusters of the repository in DIRECTORY run for good (charts rendered, services
    expanded by KubeVela, operators' pods, injected sidecars), replicas and autoscaler minimums
    applied, DaemonSets counted per node.
    """
    from . import footprint as fp
    from .validate import validate_repo

    if no_charts:
        raise click.BadParameter("a footprint needs the charts' pods", param_hint="--no-charts")
    report = validate_repo(directory, [], kubernetes_version=kubernetes_version, lint=False, wiring=[],
                           progress=None if quiet else _err,
                           charts=_charts(kubernetes_version, chart_dirs, substitutes, offline))
    problems = [f for f in report.findings if f.category in ("build", "chart", "vela")]
    for finding in problems:
        _err(str(finding))
    footprints = fp.compute(report, nodes)
    render = {"text": fp.render_text, "markdown": fp.render_markdown, "json": fp.render_json}[fmt]
    click.echo(render(footprints, nodes))
    sys.exit(1 if problems else 0)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def placements(directory: Path, fmt: str) -> None:
    """Show where every Placement and KubeVela topology policy lands, per environment.

    Computed offline from the rendered ManagedCluster labels, so that a reviewer sees where an
    application will run before merging. Exits 1 if anything selects no cluster.
    """
    import json

    from .placements import compute, load_fleet, render_json, render_text

    try:
        fleet = load_fleet(directory.resolve())
    except RuntimeError as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    groups = compute(fleet)
    if fmt == "json":
        click.echo(json.dumps(render_json(fleet, groups), indent=2))
    else:
        click.echo(render_text(fleet, groups))
    sys.exit(1 if any(not row.clusters for rows in groups.values() for row in rows) else 0)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--vcs-ref", metavar="REF", help="Template version to update to (default: the newest release).")
@click.option("--data", "-d", "pairs", multiple=True, metavar="KEY=VALUE", help="Change an answer (repeatable).")
@click.option("--force", is_flag=True, help="Update even if the new version deletes or renames files you edited.")
def update(directory: Path, vcs_ref: str | None, pairs: tuple[str, ...], force: bool) -> None:
    """Pull a newer template version (or changed answers) into the project in DIRECTORY.

    Refuses a dirty tree; stops before updating if the new version would delete or rename a
    file you edited (unless --force); fails if any conflict marker or .rej file remains;
    prints what changed.
    """
    from .answers import AnswerError
    from .update import UpdateError, read_answers, run

    try:
        src = str(read_answers(directory.resolve()).get("_src_path", ""))
        data = _collect_data(pairs, None, src, vcs_ref) if pairs else {}
        result = run(directory, data=data, vcs_ref=vcs_ref, force=force, progress=_err)
    except (UpdateError, AnswerError, ValueError) as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    click.echo(result.report())
    if not result.ok:
        _err("error: conflicts remain in the files marked CONFLICT: resolve them, then commit")
        sys.exit(1)


@main.command()
@click.argument("base", required=False)
@click.argument("head", required=False)
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered project (a git repository).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--exit-code", is_flag=True, help="Exit 1 when objects differ.")
def diff(base: str | None, head: str | None, directory: Path, fmt: str, exit_code: bool) -> None:
    """Object-level diff of the rendered manifests between BASE and HEAD.

    BASE defaults to the merge-base with main, HEAD to the working tree. Every deployable
    kustomization is built at both with the real kustomize; objects are compared by cluster,
    kind, namespace and name, with a YAML diff of each change.
    """
    import json

    from .diff import render_json, render_markdown, render_text, run

    try:
        result = run(directory, base, head)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
        _err(f"error: {detail}")
        sys.exit(2)
    if fmt == "json":
        click.echo(json.dumps(render_json(result), indent=2))
    elif fmt == "markdown":
        click.echo(render_markdown(result))
    else:
        click.echo(render_text(result))
    sys.exit(1 if exit_code and not result.empty else 0)


def _started_plane(home: Path) -> ControlPlane:
    """etcd and kube-apiserver started in ``home``; a failure is one line and exit 1."""
    from .controlplane import ControlPlane, ControlPlaneError
    from .tools import ToolMissing

    plane = ControlPlane(home)
    try:
        return plane.start()
    except (ControlPlaneError, ToolMissing) as exc:
        _err(f"error: {exc}")
        sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--cluster", "clusters", multiple=True, metavar="NAME",
              help="Verify only this cluster (repeatable; default: every cluster).")
@click.option("--schema-dir", "schema_dirs", multiple=True, envvar="OPC_SCHEMA_DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="JSON schemas ({group}/{kind}_{version}.json) to make a stand-in CRD from where the source of a "
              "CRD in crd-sources.yaml cannot be reached (said in the output).")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run the control plane in this directory and leave it there (logs, certificates, kubeconfig).")
@chart_options
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and the per-cluster results.")
def verify(directory: Path, clusters: tuple[str, ...], schema_dirs: tuple[Path, ...], keep: Path | None,
           kubernetes_version: str, chart_dirs: tuple[Path, ...], substitutes: tuple[str, ...], offline: bool,
           no_charts: bool, quiet: bool) -> None:
    """Apply every cluster of the repository in DIRECTORY to a real kube-apiserver.

    A local etcd and kube-apiserver (`opc tools install control-plane` builds them once) receive
    each cluster's objects in the order its GitOps engine applies them, chart output and KubeVela's
    expansion included: CRDs and namespaces for real, everything else server-side applied with
    dryRun=All and strict field validation, every pod template also as a bare Pod so that Pod
    Security admission enforces. Exits non-zero on any rejected object or unexplained warning.
    """
    import tempfile

    from .validate import validate_repo
    from .verify import verify_report

    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="DIRECTORY")
    if no_charts:
        raise click.BadParameter("what a cluster receives includes its charts", param_hint="--no-charts")
    say = (lambda _m: None) if quiet else _err
    started = time.perf_counter()
    report = validate_repo(directory, [], kubernetes_version=kubernetes_version, lint=False, wiring=[],
                           progress=say, charts=_charts(kubernetes_version, chart_dirs, substitutes, offline))
    broken = [f for f in report.findings if f.category in ("build", "chart", "vela")]
    for finding in broken:
        click.echo(str(finding))
    if broken:
        _err(f"error: {len(broken)} builds or charts failed; `opc validate {directory}` tells more")
        sys.exit(1)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="opc-verify-") as tmp:
        say("starting etcd and kube-apiserver on 127.0.0.1")
        plane = _started_plane(keep.resolve() if keep else Path(tmp))
        say(f"kube-apiserver ready at {plane.url} in {plane.started_seconds:.1f}s")
        try:
            results = verify_report(report, plane, clusters, progress=say,
                                    schema_dirs=[Path(p) for d in schema_dirs for p in str(d).split(":") if p],
                                    notes=notes)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--cluster") from None
        finally:
            plane.stop()
    for note in notes:
        click.echo(f"note: {note}")
    for result in results:
        for problem in result.rejected:
            click.echo(f"rejected: {result.cluster}: {problem}")
        for warned in result.warnings:
            why = f" (explained: {warned.explanation})" if warned.explanation else ""
            click.echo(f"warning: {result.cluster}: {warned.step}: {warned.subject}: {warned.message}{why}")
    for result in results:
        click.echo(result.summary())
    failed = [r.cluster for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} of {len(results)} clusters accepted "
               f"({time.perf_counter() - started:.1f}s)")
    sys.exit(1 if failed else 0)


@main.group()
def infra() -> None:
    """Day 0: the OpenTofu roots and Sealer Clusterfiles of infra/."""


@infra.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--only", type=click.Choice(["aliyun", "tencent", "huawei", "private"]), default=None,
              help="Check one cloud's root and module (with the formatting), or the private Clusterfiles.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and the result.")
def infra_check(directory: Path, only: str | None, quiet: bool) -> None:
    """tofu fmt, init (offline, from the pinned providers), validate and test (mock providers) of
    every cloud's root, tflint of every module, and Sealer's strict decoding of every Clusterfile;
    exit 1 on any problem. The tools are built once: `opc tools install tofu tflint
    clusterfile-check terraform-provider-alicloud terraform-provider-tencentcloud
    terraform-provider-huaweicloud`."""
    from .infra import InfraError, check
    from .tools import ToolMissing

    started = time.perf_counter()
    try:
        result = check(directory, progress=(lambda _m: None) if quiet else _err, only=only)
    except (InfraError, ToolMissing) as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    for problem in result.problems:
        click.echo(problem)
    click.echo(f"{result.checks} checks, {len(result.problems)} problems ({time.perf_counter() - started:.1f}s)")
    sys.exit(1 if result.problems else 0)


@main.group(invoke_without_command=True)
@click.pass_context
def tools(ctx: click.Context) -> None:
    """The programs opc runs (helm and vela for validate; the control-plane and flux sets for
    verify and the tests): pinned versions, built once per machine and cached."""
    from .tools import TOOLS, describe

    if ctx.invoked_subcommand is None:
        for name in TOOLS:
            click.echo(describe(name))


@tools.command("install")
@click.argument("names", nargs=-1)
def tools_install(names: tuple[str, ...]) -> None:
    """Build the pinned tools that are not cached yet from the Go module proxy: NAMES (tools, or
    the sets control-plane and flux), else helm and vela."""
    from .tools import TOOLS, ToolMissing, expand, install

    try:
        wanted = expand(names)
    except ToolMissing as exc:
        raise click.BadParameter(str(exc), param_hint="NAMES") from None
    for name in wanted:
        try:
            path, seconds = install(name, progress=_err)
        except ToolMissing as exc:
            _err(f"error: {exc}")
            sys.exit(1)
        how = f"built in {seconds:.0f}s" if seconds is not None else "cached"
        _err(f"{name} {TOOLS[name].version}: {path} ({how})")


@tools.command("control-plane")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def tools_control_plane(directory: Path) -> None:
    """Run the local etcd and kube-apiserver that `opc verify` and the tests use, in DIRECTORY
    (certificates, data, logs, kubeconfig), until interrupted: for trying objects by hand."""
    if directory.exists() and any(directory.iterdir()):
        raise click.BadParameter(f"{directory} is not empty (each run starts on a fresh data directory)",
                                 param_hint="DIRECTORY")
    plane = _started_plane(directory.resolve())
    _err(f"kube-apiserver ready at {plane.url} in {plane.started_seconds:.1f}s; Ctrl-C stops it")
    click.echo(f"export KUBECONFIG={plane.kubeconfig}")
    try:  # Ctrl-C stops both (exit 130)
        while plane.alive():
            time.sleep(1)
        _err(f"error: the control plane stopped; see the logs in {directory}")
        sys.exit(1)
    finally:
        plane.stop()


@main.group()
def secrets() -> None:
    """Secrets in Git, encrypted to each cluster alone (Flux: SOPS with one age key per cluster plus
    the company's; Argo CD: SealedSecrets with one sealing key per cluster), and what every
    cluster needs."""


def _keys_option(command: Any) -> Any:
    return click.option("--keys", "keys", type=click.Path(file_okay=False, path_type=Path), envvar="OPC_KEYS_DIR",
                        help="Where the private keys are (never inside the repository; default "
                        "~/.config/opc/keys/<company_slug>, or $OPC_KEYS_DIR).")(command)


def _secrets_call(call: Any) -> Any:
    from .secrets import SecretsError

    try:
        return call()
    except SecretsError as exc:
        _err(f"error: {exc}")
        sys.exit(1)


@secrets.command("init")
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered repository.")
@_keys_option
def secrets_init(directory: Path, keys: Path | None) -> None:
    """Make the keys that are missing (Flux: an age key per cluster and the company's, their public
    halves in .sops.yaml; Argo CD: a sealing key per cluster, its certificate in
    clusters/<cluster>/sealing.crt) and each cluster's telemetry CA, encrypted to it. Then give
    each cluster its key (printed)."""
    from .secrets import clusters_of, init, is_flux

    keys_dir, created = _secrets_call(lambda: init(directory.resolve(), keys))
    flux = _secrets_call(lambda: is_flux(directory.resolve()))
    _err(f"keys in {keys_dir}: {', '.join(created) + ' created' if created else 'all there already'}; "
         f"{directory / '.sops.yaml' if flux else directory / 'clusters/*/sealing.crt'} written")
    click.echo("The telemetry CAs are encrypted into each cluster's secrets/ folders. Give each cluster its key, "
               "once, out of band, before it syncs:")
    for cluster in _secrets_call(lambda: clusters_of(directory.resolve())):
        for command in _key_commands(directory.resolve(), keys_dir, cluster, flux):
            click.echo(f"  {command}")
    if flux:
        click.echo(f"Keep {keys_dir / 'company.agekey'} safe: it opens every cluster's Secrets (opc secrets rotate).")


def _key_commands(root: Path, keys_dir: Path, cluster: str, flux: bool, name: str = "") -> list[str]:
    """The kubectl commands that give ``cluster`` its key (Flux: the age key it decrypts with;
    Argo CD: the Sealed Secrets controller's key pair, labelled active)."""
    from .secrets import KEY_SECRET, SEALING_LABEL, SEALING_NAMESPACE, SEALING_SECRET, sealing_key

    context = f"kubectl --context {cluster}"
    if flux:
        return [f"{context} -n flux-system create secret generic {KEY_SECRET} "
                f"--from-file=age.agekey={keys_dir / (cluster + '.agekey')} --dry-run=client -o yaml | "
                f"{context} apply -f -"]
    key = sealing_key(keys_dir, cluster)
    secret = name or SEALING_SECRET
    return [f"{context} create namespace {SEALING_NAMESPACE} --dry-run=client -o yaml | {context} apply -f -",
            f"{context} -n {SEALING_NAMESPACE} create secret tls {secret} --cert={key.with_suffix('.crt')} "
            f"--key={key} --dry-run=client -o yaml | {context} label -f - --local -o yaml "
            f"{SEALING_LABEL}=active | {context} apply -f -"]


def _values(literals: tuple[str, ...], files: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item, from_file in [(i, False) for i in literals] + [(i, True) for i in files]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got '{item.split('=')[0]}...'",
                                     param_hint="--from-file" if from_file else "--from-literal")
        if from_file:
            try:
                value = Path(value).read_text(encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(f"cannot read {value}: {exc.strerror}", param_hint="--from-file") from None
        values[key] = value
    return values


@secrets.command("set")
@click.argument("secret", metavar="NAMESPACE/NAME")
@click.option("--cluster", "-c", required=True, help="The cluster that receives it (a folder of clusters/).")
@click.option("--from-literal", "literals", multiple=True, metavar="KEY=VALUE", help="A key and its value.")
@click.option("--from-file", "files", multiple=True, metavar="KEY=PATH", help="A key and the file holding it.")
@click.option("--type", "secret_type", default="Opaque", show_default=True, help="The Secret's type.")
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered repository.")
def secrets_set(secret: str, cluster: str, literals: tuple[str, ...], files: tuple[str, ...], secret_type: str,
                directory: Path) -> None:
    """Encrypt a Secret for one cluster into the layer that creates its namespace
    (clusters/<cluster>/<layer>/secrets/); the plaintext never touches the repository."""
    from .secrets import set_secret

    namespace, sep, name = secret.partition("/")
    if not sep:
        raise click.BadParameter(f"expected NAMESPACE/NAME, got '{secret}'", param_hint="NAMESPACE/NAME")
    values = _values(literals, files)
    path = _secrets_call(lambda: set_secret(directory.resolve(), namespace, name, cluster, values, secret_type))
    click.echo(f"encrypted {namespace}/{name} ({', '.join(sorted(values))}) for {cluster}: "
               f"{path.relative_to(directory.resolve())}")


@secrets.command("list")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@chart_options
@click.option("--exit-code", is_flag=True, help="Exit 1 unless every Secret is there (none missing or not set).")
def secrets_list(directory: Path, kubernetes_version: str, chart_dirs: tuple[Path, ...],
                 substitutes: tuple[str, ...], offline: bool, no_charts: bool, exit_code: bool) -> None:
    """Every Secret each cluster needs (named by what it receives, charts and KubeVela's output
    included) and where it stands: encrypted, rendered, runtime, out-of-band, not set, missing."""
    from .secrets import load_declarations, statuses
    from .validate import validate_repo

    report = validate_repo(directory, [], kubernetes_version=kubernetes_version, progress=_err, lint=False,
                           wiring=[], charts=None if no_charts else _charts(kubernetes_version, chart_dirs,
                                                                             substitutes, offline))
    declarations, problems = load_declarations(report.root)
    for problem in problems:
        click.echo(str(problem))
    rows = statuses(report, declarations)
    for row in rows:
        ref = row.reference
        detail = f"  {row.detail}" if row.detail else ""
        click.echo(f"{ref.cluster:16} {ref.namespace + '/' + ref.name:56} {row.state:11} {ref.by}{detail}")
    counts = {state: sum(1 for r in rows if r.state == state) for state in sorted({r.state for r in rows})}
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()) or "no Secret is named")
    open_ = counts.get("missing", 0) + counts.get("not set", 0)
    sys.exit(1 if problems or counts.get("missing", 0) or (exit_code and open_) else 0)


@secrets.command("rotate")
@click.argument("cluster")
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered repository.")
@_keys_option
def secrets_rotate(cluster: str, directory: Path, keys: Path | None) -> None:
    """A new key for CLUSTER (Flux: or "company"): its Secrets re-encrypted to it (Flux: fresh data
    keys, .sops.yaml updated; Argo CD: sealed again, sealing.crt updated). Then give the cluster
    its new key (printed) and commit."""
    from .secrets import SEALING_SECRET, default_keys_dir, is_flux, rotate

    root = directory.resolve()
    flux = _secrets_call(lambda: is_flux(root))
    files = _secrets_call(lambda: rotate(root, cluster, keys))
    for path in files:
        click.echo(f"re-encrypted {path.relative_to(root)}")
    keys_dir = keys or default_keys_dir(root)
    if cluster != "company":
        # Sealed Secrets keeps every key it holds for opening: the new one is added beside the old
        name = "" if flux else f"{SEALING_SECRET}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
        click.echo("then, before the commit syncs:")
        for command in _key_commands(root, keys_dir, cluster, flux, name):
            click.echo(f"  {command}")
        if not flux:
            click.echo(f"  kubectl --context {cluster} -n sealed-secrets rollout restart deployment "
                       "sealed-secrets-controller")


@main.group()
def add() -> None:
    """Add something to a rendered project."""


@add.command("service")
@click.argument("name")
@click.option("--package", required=True, help="Java package, e.g. com.acme.payment")
@click.option("--grpc-service", required=True, help="gRPC service name, e.g. PaymentService")
@click.option("--port", type=int, required=True, help="gRPC port (1024-65535)")
@click.option("--database", type=click.Choice(["none", "mysql", "postgresql"]), default="none", show_default=True,
              help="Its own database, read and written through ShardingSphere-JDBC (primary and replica).")
@click.option("--shards", type=int, default=1, show_default=True,
              help="Split its table over this many databases (1-64; needs --database).")
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered project.")
def add_service_command(name: str, package: str, grpc_service: str, port: int, database: str, shards: int,
                        directory: Path) -> None:
    """Append service NAME to the answers file (comments and order kept) and render it.

    The project stays on its template version; the new service gets its Java modules under
    services/NAME and its KubeVela Application under apps/NAME.
    """
    from .update import UpdateError, add_service

    try:
        entry: dict[str, object] = {"name": name, "package": package, "grpc_service": grpc_service, "port": port}
        # only what differs from the defaults goes into the answers
        if database != "none":
            entry["database"] = database
        if shards != 1:
            entry["shards"] = shards
        result = add_service(directory, entry, progress=_err)
    except (UpdateError, ValueError) as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    click.echo(result.report())
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
