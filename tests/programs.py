"""What pip cannot install with the project (Chromium; tinysoundfont, whose PyAudio requirement does
not build without PortAudio's headers): their tests skip on a machine without them, with the reason,
and fail where they must run. .ci/run sets REQUIRE_ENV, so CI never skips them silently; CI=1 (set by
most CI services) does the same."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRE_ENV = "MILLAMUSIC_REQUIRE_PROGRAMS"


def required() -> bool:
    return any(os.environ.get(name, "").lower() not in ("", "0", "false") for name in (REQUIRE_ENV, "CI"))


def _missing(what: str, install: str) -> None:
    if required():
        pytest.fail(f"{REQUIRE_ENV} (or CI) is set but {what} is not installed: {install}")
    pytest.skip(f"{what} is not installed ({install}); set {REQUIRE_ENV}=1 to make this a failure")


def require_program(found: str | None, what: str, install: str) -> str:
    """`found` (the program's path) or skip/fail saying what is missing and how to install it."""
    if not found:
        _missing(what, install)
    return found


def require_module(name: str, what: str, install: str) -> ModuleType:
    """The imported module `name`, or skip/fail saying what is missing and how to install it.

    Only a missing module skips: one that is there but fails to import is a failure with its traceback.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        _missing(what, install)
