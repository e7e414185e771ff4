"""The questionnaire as data: what Copier accepts, and what it would silently accept but must not.

Copier ignores a misspelt ``--data`` key, drops a multiselect value that is not a choice, and
lets ``--data`` override a computed (``when: false``) value. ``check_answers`` rejects all three
before anything is rendered.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARSED_TYPES = {"yaml", "json", "int", "float", "bool"}


@dataclass(frozen=True)
class Question:
    name: str
    type: str
    multiselect: bool
    choices: tuple[Any, ...]
    computed: bool


class AnswerError(ValueError):
    """Answers that Copier must never see; the message names the question and the rule."""


def load_questions(template: Path, ref: str | None = None) -> dict[str, Question]:
    """The questions of the template at ``template`` (a local path), at git ``ref`` if given."""
    if ref is not None and (template / ".git").exists():
        import subprocess

        shown = subprocess.run(["git", "-C", str(template), "show", f"{ref}:copier.yml"], capture_output=True,
                               text=True, check=False)
        if shown.returncode != 0:
            raise AnswerError(f"template version '{ref}' not found in {template}")
        text = shown.stdout
        if ref == "HEAD":  # Copier renders HEAD with the working tree's changes
            text = (template / "copier.yml").read_text(encoding="utf-8")
    else:
        config = template / "copier.yml"
        if not config.is_file():
            config = template / "copier.yaml"
        text = config.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    questions = {}
    for name, raw_spec in raw.items():
        if name.startswith("_"):
            continue
        spec = raw_spec if isinstance(raw_spec, dict) else {"default": raw_spec}
        choices = spec.get("choices") or ()
        if isinstance(choices, dict):
            choices = tuple(choices.values())
        questions[name] = Question(
            name=name,
            type=str(spec.get("type", "str")),
            multiselect=bool(spec.get("multiselect", False)),
            choices=tuple(choices),
            computed=spec.get("when") is False,
        )
    return questions


def parse_value(question: Question | None, raw: str) -> Any:
    """A ``--data key=value`` string as Copier would read it for that question's type."""
    if question is not None and (question.multiselect or question.type in PARSED_TYPES):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise AnswerError(f"{question.name}: not valid YAML: {exc}") from exc
    return raw


def check_answers(data: dict[str, Any], questions: dict[str, Question]) -> None:
    """Raise AnswerError listing every answer Copier would silently mishandle."""
    problems = []
    askable = sorted(n for n, q in questions.items() if not q.computed)
    for key, value in data.items():
        question = questions.get(key)
        if question is None:
            close = difflib.get_close_matches(key, askable, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; the questions are: {', '.join(askable)}"
            problems.append(f"unknown question '{key}'{hint}")
            continue
        if question.computed:
            problems.append(f"'{key}' is computed from other answers and cannot be set")
            continue
        if question.multiselect:
            values = value if isinstance(value, list) else None
            if values is None:
                problems.append(f"{key} must be a list of: {', '.join(map(str, question.choices))}")
                continue
            unknown = [v for v in values if v not in question.choices]
            if unknown:
                problems.append(
                    f"{key}: {', '.join(map(repr, unknown))} not one of {', '.join(map(str, question.choices))}"
                )
    if problems:
        raise AnswerError("; ".join(problems))


def load_data_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AnswerError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise AnswerError(f"{path}: must be a mapping of question to answer")
    return data


def read_answers_file(root: Path) -> dict[str, Any]:
    """The answers a rendered repository was made with ({} when it has no answers file)."""
    path = root / ".copier-answers.yml"
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return loaded if isinstance(loaded, dict) else {}
