"""The `opc` command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from . import __version__
from .schemas import DEFAULT_KUBERNETES_VERSION


def _err(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="opc")
def main() -> None:
    """Scaffold, validate and upgrade a one-person company's multi-cloud GitOps repository."""


def _collect_data(pairs: tuple[str, ...], data_file: Path | None, template: str, ref: str | None = None) -> dict:
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
    from .render import TemplateNotFound, render_new, template_root

    try:
        source = template_root(template)
        data = _collect_data(pairs, data_file, source, vcs_ref)
        started = time.perf_counter()
        dest = render_new(destination, data, template=source, defaults=defaults, vcs_ref=vcs_ref, quiet=quiet)
    except (AnswerError, TemplateNotFound, FileExistsError) as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    except ValueError as exc:  # Copier's validators and choices
        _err(f"error: {exc}")
        sys.exit(2)
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    _err(f"rendered {files} files into {dest} in {time.perf_counter() - started:.1f}s")


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
@click.option("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION, show_default=True,
              help="Kubernetes version whose schemas built-in kinds are checked against.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Parallel kustomize builds.")
@click.option("--no-lint", is_flag=True, help="Skip yamllint.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and the summary.")
def validate(directory: Path, schema_dirs: tuple[Path, ...], schema_locations: tuple[str, ...], kubernetes_version: str, jobs: int | None,
             no_lint: bool, quiet: bool) -> None:
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
    if not dirs and not schema_locations:
        _err("warning: no --schema-dir or --schema-location: every custom resource will be reported as missing")
    started = time.perf_counter()
    report = validate_repo(
        directory, dirs, kubernetes_version=kubernetes_version, jobs=jobs,
        progress=None if quiet else _err, lint=not no_lint, wiring=ALL_CHECKS,
        schema_locations=list(schema_locations),
    )
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(report.summary() + f" ({time.perf_counter() - started:.1f}s)")
    sys.exit(0 if report.ok else 1)


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


@main.group()
def add() -> None:
    """Add something to a rendered project."""


@add.command("service")
@click.argument("name")
@click.option("--package", required=True, help="Java package, e.g. com.acme.payment")
@click.option("--grpc-service", required=True, help="gRPC service name, e.g. PaymentService")
@click.option("--port", type=int, required=True, help="gRPC port (1024-65535)")
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The rendered project.")
def add_service_command(name: str, package: str, grpc_service: str, port: int, directory: Path) -> None:
    """Append service NAME to the answers file (comments and order kept) and render it.

    The project stays on its template version; the new service gets its Java modules under
    services/NAME and its KubeVela Application under apps/NAME.
    """
    from .update import UpdateError, add_service

    try:
        result = add_service(directory, {"name": name, "package": package, "grpc_service": grpc_service, "port": port},
                             progress=_err)
    except (UpdateError, ValueError) as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    click.echo(result.report())
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
