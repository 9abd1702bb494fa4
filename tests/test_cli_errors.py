"""Errors at the command line: user errors map to their exit codes in one place (millamusic.cli),
bugs keep their traceback and exit 70, and `check` reports every spec it is given."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import millamusic
import millamusic.cli as cli
from millamusic.core.errors import MillaError

ROOT = Path(__file__).resolve().parents[1]


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_user_error_has_an_exit_code():
    for module in pkgutil.walk_packages(millamusic.__path__, "millamusic."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    errors = {cls for cls in _subclasses(MillaError) if cls.__module__.startswith("millamusic.")}
    assert errors, "no MillaError subclasses found"
    for cls in errors:
        code = cli.exit_code_for(cls.__new__(cls))
        assert code in (2, 3, 4, 5), (cls, code)
    assert cli.BUG not in cli.EXIT_CODES.values() and cli.DELIVERY_CHECK_FAILED not in cli.EXIT_CODES.values()


def test_an_error_class_without_a_code_is_a_bug_not_a_guess():
    class Unmapped(MillaError):
        pass

    with pytest.raises(TypeError, match="Unmapped has no exit code"):
        cli.exit_code_for(Unmapped("x"))


@pytest.fixture
def catalogue(tmp_path):
    """A copy of the example catalogue: one good song and one with a typo."""
    for folder in ("songs", "lyrics", "artwork", "artists"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    bad = tmp_path / "songs" / "bad.yaml"
    bad.write_text((tmp_path / "songs" / "set-me-spinning.yaml").read_text().replace("tempo: ", "tempo: fast #", 1))
    return tmp_path


def test_check_reports_every_spec_it_is_given(catalogue):
    bad, good = catalogue / "songs" / "bad.yaml", catalogue / "songs" / "set-me-spinning.yaml"
    result = CliRunner().invoke(cli.main, ["check", str(bad), str(good)])
    assert result.exit_code == 2, result.output
    assert "bad.yaml" in result.output and "tempo" in result.output, result.output
    assert f"{good}: ok" in result.output, result.output
    assert "1 of 2 specs ok" in result.output, result.output


def test_a_bug_exits_70_with_one_line_and_the_traceback_in_a_file(catalogue, monkeypatch, tmp_path):
    def broken(song):
        raise ZeroDivisionError("a bug in compose")

    monkeypatch.setattr("millamusic.compose.compose", broken)  # cli imports it when the command runs
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli.main, ["check", str(catalogue / "songs" / "set-me-spinning.yaml")])
    assert result.exit_code == cli.BUG, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "internal error" in lines[0] and "ZeroDivisionError: a bug in compose" in lines[0], lines
    [trace] = tmp_path.glob("millamusic-bug-*.txt")
    assert str(trace) in lines[0]
    assert "Traceback (most recent call last)" in trace.read_text() and "in broken" in trace.read_text()


def test_debug_prints_the_traceback(catalogue, monkeypatch):
    def broken(song):
        raise ZeroDivisionError("a bug in compose")

    monkeypatch.setattr("millamusic.compose.compose", broken)  # cli imports it when the command runs
    result = CliRunner().invoke(cli.main, ["--debug", "check", str(catalogue / "songs" / "set-me-spinning.yaml")])
    assert result.exit_code == cli.BUG, result.output
    assert "Traceback (most recent call last)" in result.output and "in broken" in result.output, result.output


def test_a_user_error_prints_one_line_and_no_traceback(catalogue):
    result = CliRunner().invoke(cli.main, ["render", str(catalogue / "songs" / "set-me-spinning.yaml"),
                                           "--vocals", "nobody", "--out", str(catalogue / "out")])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and "unknown vocals engine 'nobody'" in result.output, result.output


def test_a_bug_in_a_delivery_rule_is_a_bug_not_a_fail_verdict(tmp_path, monkeypatch):
    import numpy as np
    import soundfile

    import millamusic.qa.check as check
    from millamusic.spec.profiles import PROFILES

    wav = tmp_path / "x.wav"
    soundfile.write(wav, np.zeros((4410, 2), np.float32), 44100, subtype="PCM_24")

    def broken(probe):
        raise ZeroDivisionError("a bug in a rule")

    monkeypatch.setitem(check._RULES, "loudness", broken)
    with pytest.raises(ZeroDivisionError, match="a bug in a rule"):
        check.check_file(wav, PROFILES["spotify"])
    monkeypatch.setitem(check._RULES, "loudness", lambda probe: (_ for _ in ()).throw(OSError("unreadable")))
    results = {r.rule: r for r in check.check_file(wav, PROFILES["spotify"])}
    assert results["loudness"].status == "fail" and "unreadable" in results["loudness"].detail
