"""One error hierarchy; the CLI maps each class to an exit code in one place."""

from __future__ import annotations

from dataclasses import dataclass


class MillaError(Exception):
    """Base of every error a user can cause or fix."""


@dataclass(frozen=True)
class SpecProblem:
    """One mistake in a spec or lyric file, located as precisely as we can."""

    file: str
    line: int | None  # 1-based
    column: int | None  # 1-based
    field: str
    value: object
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        shown = repr(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{where}: {self.field} = {shown}: {self.message}. Fix: {self.fix}"


class SpecError(MillaError):
    """The spec (or a file it points to) is wrong. Carries every problem found, not the first."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the song spec:\n{lines}")


class EngineUnavailable(MillaError):
    """An engine name is unknown, or known but its extra is not installed."""


class RenderError(MillaError):
    """A stage failed while making audio."""


class ExportError(MillaError):
    """Writing or checking a release file failed."""


# Exit codes, one place. The CLI is the only user of this table.
EXIT_CODES: dict[type[MillaError], int] = {
    SpecError: 2,
    EngineUnavailable: 3,
    RenderError: 4,
    ExportError: 5,
}


def exit_code_for(error: MillaError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
