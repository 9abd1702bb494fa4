"""What a spec asks of the engines and voices it names: their options and languages, checked and
reported at the option's own line."""

from __future__ import annotations

from typing import Any

from millamusic.core.errors import SpecProblem
from millamusic.engines import option_problems
from millamusic.music import espeak
from millamusic.spec.yaml import position


def language_problem(code: str) -> str | None:
    """The fix for a language espeak-ng cannot speak, or None (also None when espeak is
    missing: the singer then reports itself unavailable with the install command)."""

    try:
        return espeak.language_fix(code)
    except (OSError, ImportError, espeak.EspeakError):
        return None


def engine_option_problems(engine: str, options: dict, document: Any, shown: str, loc: tuple) -> list[SpecProblem]:
    """An engine's own option checks (its registry entry names them), at the option's place in the YAML."""

    problems = []
    for key, message, fix in option_problems(engine, options):
        line, col = position(document, loc + (key,))
        problems.append(SpecProblem(shown, line, col, ".".join(loc + (key,)), options.get(key), message, fix))
    return problems
