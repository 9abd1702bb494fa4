"""Song form from repetition (analysis.form): section boundaries on bar lines and labels that
mark repeated sections, on synthetic chords and on the rendered cover references."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from millamusic.analysis.form import SectionEstimate, find_sections
from tests.cover_references import REFERENCES, build_reference

RATE = 22050
BAR_S = 1.0
TRIADS = {"C": (60, 64, 67), "F": (53, 57, 60), "G": (55, 59, 62), "Am": (57, 60, 64)}


def _bar(chord: str, harmonics: int, gain: float) -> np.ndarray:
    """One bar of a held triad: `harmonics` partials per note (1 = soft sines, more = brighter)."""
    t = np.arange(int(BAR_S * RATE)) / RATE
    tone = np.zeros_like(t)
    for midi in TRIADS[chord]:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        tone += sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1))
    return gain * tone * np.minimum(1.0, t / 0.01) / 3


def _synthetic_song() -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """A A B B A A B B in 4-bar phrases: A plays C G Am F softly, B plays F C G G brighter and
    louder (the same chords, another order: a bag of chroma cannot tell them apart)."""
    phrases = {"A": (("C", "G", "Am", "F"), 1, 0.3), "B": (("F", "C", "G", "G"), 5, 0.6)}
    form = "AABBAABB"
    bars = [_bar(chord, harm, gain) for name in form for chord, harm, gain in
            [(c, phrases[name][1], phrases[name][2]) for c in phrases[name][0]]]
    y = np.concatenate(bars).astype(np.float32)
    starts = [0, 8, 16, 24]  # a section is two phrases of the same music
    return np.stack([y, y]), np.arange(len(bars)) * BAR_S, starts, ["A", "B", "A", "B"]


def _covers(sections: list[SectionEstimate], n_bars: int) -> bool:
    return (sections[0].start_bar == 0 and sum(s.bars for s in sections) == n_bars
            and all(a.start_bar + a.bars == b.start_bar for a, b in itertools.pairwise(sections)))


def test_synthetic_form_is_found() -> None:
    samples, bar_starts, truth, labels = _synthetic_song()
    sections = find_sections(samples, RATE, bar_starts)
    assert _covers(sections, len(bar_starts))
    assert [s.start_bar for s in sections] == truth
    assert [s.label for s in sections] == labels
    loud = [s.energy_db for s in sections if s.label == "B"]
    soft = [s.energy_db for s in sections if s.label == "A"]
    assert min(loud) > max(soft) + 3  # B is played at twice the amplitude, with more partials


def test_min_bars_keeps_sections_long() -> None:
    samples, bar_starts, _, _ = _synthetic_song()
    sections = find_sections(samples[0], RATE, bar_starts, min_bars=12)
    assert _covers(sections, len(bar_starts))
    assert all(s.bars >= 12 for s in sections)


@pytest.mark.parametrize("bar_starts", [[], [0.0], np.zeros((2, 2)), [0.0, 1.0, 1.0]])
def test_bad_grids_are_refused(bar_starts) -> None:
    with pytest.raises(ValueError):
        find_sections(np.zeros(RATE, dtype=np.float32), RATE, bar_starts)


@pytest.mark.parametrize("samples", [np.zeros(0, dtype=np.float32), np.zeros((2, 0), dtype=np.float32)])
def test_empty_audio_is_refused(samples) -> None:
    with pytest.raises(ValueError):
        find_sections(samples, RATE, [0.0, 1.0])


# --------------------------------------------------------------------------- references


def _scores(sections: list[SectionEstimate], truth_starts: list[int]) -> tuple[float, float]:
    """(hit rate, precision) of boundaries, bar 0 excluded, a match within +-1 bar."""
    truth = truth_starts[1:]
    found = [s.start_bar for s in sections[1:]]
    hits = sum(any(abs(f - t) <= 1 for f in found) for t in truth) / len(truth)
    precision = sum(any(abs(f - t) <= 1 for t in truth) for f in found) / max(1, len(found))
    return hits, precision


def _labels_by_name(sections: list[SectionEstimate], score_sections) -> dict[str, list[str]]:
    """The estimated label at the middle bar of each true section, grouped by section name."""
    out: dict[str, list[str]] = {}
    for truth in score_sections:
        middle = truth.start_bar + truth.bars // 2
        label = next(s.label for s in sections if s.start_bar <= middle < s.start_bar + s.bars)
        out.setdefault(truth.name, []).append(label)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("form-references")


@pytest.mark.slow
@pytest.mark.parametrize("jitter_s", [0.0, 0.03], ids=["exact-grid", "jittered-grid"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_form(name: str, jitter_s: float, folder) -> None:
    reference = build_reference(REFERENCES[name], folder / name)
    bar_starts = reference.bar_starts
    # An estimated beat grid is not exact: move every bar line by up to +-30 ms.
    bar_starts = bar_starts + np.random.default_rng(7).uniform(-jitter_s, jitter_s, len(bar_starts))
    started = time.perf_counter()
    sections = find_sections(reference.mix, 44100, bar_starts)
    seconds = time.perf_counter() - started
    hits, precision = _scores(sections, reference.section_starts_bars)
    labels = _labels_by_name(sections, reference.score.sections)
    found = [(s.start_bar, s.label) for s in sections]
    detail = f"{name}: hits {hits:.2f} precision {precision:.2f} in {seconds:.2f} s, {found} vs {reference.section_starts_bars}"
    assert _covers(sections, len(bar_starts)), detail
    assert hits >= 0.8, detail
    assert len(set(labels["Verse"])) == 1 and len(set(labels["Chorus"])) == 1, (labels, detail)
    assert labels["Verse"][0] != labels["Chorus"][0], (labels, detail)
