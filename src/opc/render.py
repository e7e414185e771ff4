"""Rendering a company repository with Copier, all or nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .answers import AnswerError, Question, check_answers, load_questions


class TemplateNotFound(RuntimeError):
    pass


def template_root(explicit: str | None = None) -> str:
    """The template to render: --template, else $OPC_TEMPLATE, else the checkout opc runs from.

    A local path is made absolute: Copier stores the source in the answers file, and a relative
    path there breaks every later update.
    """
    source = explicit or os.environ.get("OPC_TEMPLATE")
    if source is None:
        checkout = Path(__file__).resolve().parents[2]
        if not (checkout / "copier.yml").is_file():
            raise TemplateNotFound(
                "no template given and opc does not run from a checkout of the template; "
                "pass --template <path or git URL> or set OPC_TEMPLATE"
            )
        return str(checkout)
    if "://" in source or source.startswith(("gh:", "gl:", "git@")):
        return source
    path = Path(source).expanduser().resolve()
    if not (path / "copier.yml").is_file():
        raise TemplateNotFound(f"{path} has no copier.yml")
    return str(path)


def questions_for(source: str, ref: str | None = None) -> dict[str, Question] | None:
    """The questionnaire of the version to render, when the template is a local path (remote ones
    are checked by Copier): ``ref``, else the newest release, else the working tree."""
    path = Path(source)
    if not path.is_dir():
        return None
    if ref is None and (path / ".git").exists():
        from .update import newest_release

        ref = newest_release(source)
    return load_questions(path, ref)


def unanswered(source: str, data: dict[str, Any], vcs_ref: str | None = None) -> list[str]:
    """The questions Copier would ask given ``data``: askable (their ``when`` holds for these
    answers) and not answered. Runs Copier's own question pass without rendering anything."""
    import copier

    with _quiet_copier(), copier.Worker(src_path=source, dst_path=Path(tempfile.gettempdir()) / "opc-unanswered",
                                        data=data, defaults=True, pretend=True, unsafe=True, vcs_ref=vcs_ref,
                                        quiet=True) as worker:
        worker._ask()
        answers = worker.answers
        return [name for name in answers.user if name not in data and name not in answers.hidden]


@contextlib.contextmanager
def _quiet_copier() -> Iterator[None]:
    """Copier's warnings (a dirty local template, a missing tag) as one line each, not a stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def render_new(
    dest: Path,
    data: dict[str, Any],
    *,
    template: str | None = None,
    defaults: bool = True,
    vcs_ref: str | None = None,
    quiet: bool = False,
) -> Path:
    """Render a new company repository into ``dest``, which must not exist or be empty.

    The answers are checked first (unknown questions, computed values, unknown choices); the
    render goes to a temporary sibling directory that is moved into place only when Copier has
    finished, so a failure leaves nothing behind.
    """
    import copier

    source = template_root(template)
    questions = questions_for(source, vcs_ref)
    if questions is not None:
        check_answers(data, questions)
    dest = dest.expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.opc-", dir=dest.parent))
    try:
        with _quiet_copier():
            copier.run_copy(
                source,
                staging,
                data=data,
                defaults=defaults,
                unsafe=True,
                vcs_ref=vcs_ref,
                quiet=quiet,
                cleanup_on_error=True,
            )
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


__all__ = ["AnswerError", "TemplateNotFound", "render_new", "template_root"]
