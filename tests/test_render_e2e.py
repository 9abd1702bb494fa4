"""A short song through the real CLI into a temp folder; every promise checked from the files."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import soxr
from click.testing import CliRunner
from mutagen.flac import FLAC
from mutagen.id3 import ID3

from millamusic.cli import main
from tests.conftest import CROWDED_SONG

ROOT = Path(__file__).resolve().parents[1]


def _render(spec: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render once for the module: (spec path, out folder, summary of the first and second render)."""
    base = tmp_path_factory.mktemp("e2e")
    (base / "songs").mkdir()
    from tests.conftest import SHORT_SONG

    spec = base / "songs" / "tiny.yaml"
    (base / "artwork").mkdir()  # inside the spec's catalogue (the folder above songs/)
    shutil.copyfile(ROOT / "artwork" / "set-me-spinning.jpg", base / "artwork" / "cover.jpg")
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3,
                                      extra="artwork: ../artwork/cover.jpg\n"))
    out = base / "out"
    first = _render(spec, out)
    second = _render(spec, out)
    return spec, out, first, second


def _riff_chunks(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    chunks, at = [], 12
    while at + 8 <= len(data):
        name, size = data[at:at + 4].decode("latin-1"), struct.unpack("<I", data[at + 4:at + 8])[0]
        chunks.append(name)
        at += 8 + size + (size & 1)
    assert at == len(data), "trailing bytes after the last chunk"
    return chunks


def test_every_promised_file_exists(rendered):
    _, out, first, _ = rendered
    slug = "tiny-test-song"
    masters = out / "masters" / slug
    for name in ("lyrics.txt", "release.json", *(f"spotify/{slug}{ext}" for ext in
                                                  (".wav", ".flac", ".320.mp3", ".v0.mp3", ".report.png"))):
        assert (masters / name).is_file(), name
    assert (out / "lyrics" / f"{slug}.lrc").is_file()
    stems = sorted(p.name for p in (out / "stems" / slug).iterdir())
    assert {"drums.wav", "bass.wav", "lead.wav", f"{slug}.mid"} <= set(stems)
    release = json.loads((masters / "release.json").read_text())
    for relative, record in release["files"].items():
        assert (out / relative).stat().st_size == record["bytes"]
    assert release["spec"]["sha256"] and release["engines"]["backing"]["name"] == "arranger"
    assert release["track"]["isrc"] == "FIMLA2600042" and release["track"]["upc"] == "6418000123454"
    assert release["settings"]["profiles"] == ["spotify"]
    delivered = release["masters"]["spotify"]
    assert delivered["profile"]["integrated_lufs"] == -14.0
    for relative, record in delivered["files"].items():
        assert relative in release["files"]
        if record["role"] != "report":
            assert abs(record["integrated_lufs"] + 14.0) <= 0.3, (relative, record)
            limit = -0.5 if record["role"].startswith("mp3") else -1.0
            assert record["true_peak_dbtp"] <= limit, (relative, record)


def test_masters_format_loudness_and_true_peak(rendered):
    _, out, first, _ = rendered
    masters = out / "masters" / "tiny-test-song" / "spotify"
    for ext in ("wav", "flac"):
        info = sf.info(str(masters / f"tiny-test-song.{ext}"))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_24")
    audio, rate = sf.read(str(masters / "tiny-test-song.wav"), dtype="float64")
    loudness = pyloudnorm.Meter(rate, filter_class="DeMan").integrated_loudness(audio)
    assert abs(loudness - (-14.0)) <= 0.5
    oversampled = soxr.resample(audio, rate, rate * 4, quality="VHQ")
    true_peak = 20 * np.log10(np.max(np.abs(oversampled)))
    assert true_peak <= -1.0
    assert abs(first["loudness"]["spotify"]["integrated_lufs"] - loudness) < 0.05


def test_wav_has_nothing_after_data_but_its_content_credentials(rendered):
    _, out, _, _ = rendered
    chunks = _riff_chunks(out / "masters" / "tiny-test-song" / "spotify" / "tiny-test-song.wav")
    assert chunks == ["fmt ", "data", "C2PA"]
    raw = (out / "masters" / "tiny-test-song" / "spotify" / "tiny-test-song.wav").read_bytes()
    assert struct.unpack("<H", raw[20:22])[0] == 1  # WAVE_FORMAT_PCM, not EXTENSIBLE


def test_tags_and_ai_fields_read_back(rendered):
    _, out, _, _ = rendered
    masters = out / "masters" / "tiny-test-song" / "spotify"
    flac = FLAC(str(masters / "tiny-test-song.flac"))
    assert flac["TITLE"] == ["Tiny Test Song"] and flac["ARTIST"] == ["Milla Virta"]
    assert flac["ALBUM"] == ["Test Album"] and flac["TRACKNUMBER"][0].startswith("3")
    assert flac["ISRC"] == ["FIMLA2600042"] and flac["DATE"] == ["2026"] and flac["GENRE"] == ["Pop"]
    assert flac["COMPOSER"] == ["Test Composer"] and flac["LYRICIST"] == ["Test Lyricist"]
    assert "Spin me round again" in flac["LYRICS"][0]
    assert flac["CONTAINS_AI"] == ["Partly"]
    assert flac["DIGITAL_SOURCE_TYPE"] == ["http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"]
    credits = json.loads(flac["AI_CREDITS"][0])
    assert {c["stage"] for c in credits} == {"lyrics", "melody", "backing", "vocals"}
    assert {c["engine"] for c in credits if c["stage"] in ("backing", "vocals")} == {"arranger", "singer"}
    assert "virtual artist" in flac["AI_DISCLOSURE"][0]
    assert flac.pictures and flac.pictures[0].type == 3
    assert flac["BARCODE"] == ["6418000123454"]
    assert re.match(r"\[ti:Tiny Test Song\]", flac["SYNCEDLYRICS"][0]) and "]Spin me round again" in flac["SYNCEDLYRICS"][0]

    id3 = ID3(str(masters / "tiny-test-song.320.mp3"))
    assert str(id3["TIT2"]) == "Tiny Test Song" and str(id3["TSRC"]) == "FIMLA2600042"
    assert str(id3["TRCK"]) == "3/9" and str(id3["TCOM"]) == "Test Composer" and str(id3["TEXT"]) == "Test Lyricist"
    assert id3.getall("APIC") and "Hold the light tonight" in id3.getall("USLT")[0].text
    ai = {frame.desc: str(frame) for frame in id3.getall("TXXX")}
    assert ai["CONTAINS_AI"] == "Partly" and json.loads(ai["AI_CREDITS"]) == credits
    assert ai["BARCODE"] == "6418000123454"


def test_stems_equal_length_and_lrc_matches_vocal_notes(rendered):
    _, out, _, _ = rendered
    lengths = {p.name: sf.info(str(p)).frames for p in (out / "stems" / "tiny-test-song").glob("*.wav")}
    assert len(set(lengths.values())) == 1, lengths
    lrc = (out / "lyrics" / "tiny-test-song.lrc").read_text()
    stamps = [(int(m[0]) * 60 + float(m[1]), m[2]) for m in re.findall(r"^\[(\d+):(\d+\.\d+)\](.+)$", lrc, re.M)]
    # enhanced LRC: <mm:ss.xx> before every word and one after the last
    assert [re.sub(r"<[^>]+>", "", text) for _, text in stamps] == ["Hold the light tonight", "Spin me round again"]
    times = [t for t, _ in stamps]
    assert times == sorted(times) and len(set(times)) == len(times)
    word_times = [int(m[0]) * 60 + float(m[1]) for m in re.findall(r"<(\d+):(\d+\.\d+)>", lrc)]
    assert len(word_times) == 4 + 1 + 4 + 1 and word_times == sorted(word_times)
    # Word times are the sung onsets: at or just before each word's first note (120 BPM).
    from millamusic.compose import compose
    from millamusic.release.ttml import read_ttml
    from millamusic.spec.song import load_song

    score = compose(load_song(rendered[0]))
    first_notes = [score.beat_to_seconds(next(n for n in score.notes if n.word_index == w).start_beat)
                   for w in range(len(score.words))]
    ttml = read_ttml(out / "lyrics" / "tiny-test-song.ttml")
    assert [line.text for line in ttml] == ["Hold the light tonight", "Spin me round again"]
    ttml_words = [word for line in ttml for word in line.words]
    assert [w.text for w in ttml_words] == ["Hold", "the", "light", "tonight", "Spin", "me", "round", "again"]
    for word, first_note in zip(ttml_words, first_notes):
        assert first_note - 0.25 <= word.start <= first_note + 0.01, (word, first_note)
        assert round(word.start, 2) in [round(t, 2) for t in word_times]


def test_second_render_hits_the_cache(rendered):
    _, _, first, second = rendered
    assert not any(stage["cached"] for stage in first["stages"])
    assert all(stage["cached"] for stage in second["stages"])
    assert second["loudness"] == first["loudness"]


@pytest.mark.slow  # masters and exports a profile: 4 s
def test_adding_a_profile_masters_and_exports_only_that_profile(rendered):
    spec, out, _, _ = rendered
    summary = _render(spec, out, "--profile", "spotify", "--profile", "apple,cd")
    rerun = [stage["name"] for stage in summary["stages"] if not stage["cached"]]
    assert rerun == ["master[apple]", "export[apple]", "master[cd]", "export[cd]"]
    assert abs(summary["loudness"]["apple"]["integrated_lufs"] - (-16.0)) <= 0.3
    assert abs(summary["loudness"]["cd"]["integrated_lufs"] - (-10.0)) <= 0.3
    cd = out / "masters" / "tiny-test-song" / "cd"
    assert sf.info(str(cd / "tiny-test-song.wav")).subtype == "PCM_16"
    assert sf.info(str(cd / "tiny-test-song.flac")).subtype == "PCM_16"
    release = json.loads((out / "masters" / "tiny-test-song" / "release.json").read_text())
    assert list(release["masters"]) == ["spotify", "apple", "cd"]


def test_unknown_profile_exits_2_naming_the_valid_ones(rendered, tmp_path):
    spec, _, _, _ = rendered
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(tmp_path / "o"), "--profile", "spotfy"])
    assert result.exit_code == 2
    assert "spotfy" in result.output and "apple" in result.output and "--profile" in result.output


def test_spec_with_three_mistakes_exits_2_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("title: Bad\nartist: M\ngenre: jazz\ntempo: fast\nkey: C\n"
                    "structure:\n  - {section: V, bars: 2, chords: [Cxx]}\nlyrics: |\n  [V]\n  la la\n")
    process = subprocess.run([sys.executable, "-m", "millamusic.cli", "render", str(spec), "--out", str(tmp_path / "o")],
                             capture_output=True, text=True)
    assert process.returncode == 2
    assert "3 problems" in process.stderr
    for line in (3, 4, 7):
        assert f"bad.yaml:{line}:" in process.stderr
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_engine_lists_valid_names(write_spec, tmp_path):
    result = CliRunner().invoke(main, ["render", str(write_spec()), "--out", str(tmp_path / "o"), "--backing", "nope"])
    assert result.exit_code == 3 and "arranger" in result.output


def test_import_does_not_import_torch():
    code = "import sys, millamusic, millamusic.cli, millamusic.spec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.slow  # renders twice: 5 s
def test_editing_lyrics_keeps_the_backing(tmp_path, write_spec):
    spec = write_spec()
    out = tmp_path / "out"
    _render(spec, out)
    spec.write_text(spec.read_text().replace("Spin me round again", "Turn me round again"))
    summary = _render(spec, out)
    cached = {stage["name"]: stage["cached"] for stage in summary["stages"]}
    assert cached["backing"] and not cached["vocals"] and not cached["compose"]
    assert "Turn me round again" in re.sub(r"<[^>]+>", "", (out / "lyrics" / "tiny-test-song.lrc").read_text())


@pytest.mark.slow  # renders twice: 6 s
def test_force_reruns_everything(tmp_path, write_spec):
    spec = write_spec()
    _render(spec, tmp_path / "out")
    summary = _render(spec, tmp_path / "out", "--force")
    assert not any(stage["cached"] for stage in summary["stages"])


def test_compose_time_spec_error_exits_2(tmp_path, write_spec):
    """Mistakes found while composing (a line too long for its bars) are spec errors, not crashes."""
    spec = write_spec(text=CROWDED_SONG)
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "do not fit" in result.output and "stage" not in result.output
    assert not (tmp_path / "o" / "masters").exists()



def test_engines_lists_engines_and_speech_sources():
    result = CliRunner().invoke(main, ["engines"])
    assert result.exit_code == 0
    rows = {tuple(line.split()[:2]): line for line in result.output.splitlines()}
    assert {("backing", "arranger"), ("vocals", "singer"), ("speech", "espeak"), ("speech", "piper")} <= set(rows)
    assert rows[("speech", "piper")].endswith("installed")


def test_stems_midi_has_the_sung_melody_with_lyrics(rendered):
    import mido

    _, out, _, _ = rendered
    midi = mido.MidiFile(str(out / "stems" / "tiny-test-song" / "tiny-test-song.mid"))
    (track,) = [t for t in midi.tracks if t.name == "Lead Vocal"]
    lyrics = [m.text for m in track if m.type == "lyrics"]
    assert " ".join(lyrics).replace("- ", "") == "Hold the light tonight Spin me round again"
    assert "to-" in lyrics and "night" in lyrics
    from millamusic.compose import compose
    from millamusic.spec.song import load_song

    score = compose(load_song(rendered[0]))
    pitches = [m.note for m in track if m.type == "note_on" and m.velocity > 0]
    assert pitches == [n.pitch for n in score.notes]


def test_check_passes_the_rendered_masters_and_fails_a_damaged_one(rendered, tmp_path):
    import shutil

    _, out, _, _ = rendered
    masters = out / "masters" / "tiny-test-song"
    result = CliRunner().invoke(main, ["check", str(masters)])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output and "FAIL" not in result.output
    # a copy of the release with the WAV turned down 3 dB: loudness fails, and the record no longer matches
    copy = tmp_path / "out"
    shutil.copytree(out / "masters", copy / "masters")
    shutil.copytree(out / "lyrics", copy / "lyrics")
    wav = copy / "masters" / "tiny-test-song" / "spotify" / "tiny-test-song.wav"
    data, rate = sf.read(str(wav), dtype="float32")
    sf.write(str(wav), data * 10 ** (-3 / 20), rate, subtype="PCM_24")
    result = CliRunner().invoke(main, ["check", str(wav), "--profile", "spotify"])
    assert result.exit_code == 1
    assert re.search(r"loudness\s+│\s+FAIL", result.output) and re.search(r"record\s+│\s+FAIL", result.output)
    assert re.search(r"provenance\s+│\s+FAIL", result.output)  # rewritten after signing: the manifest is gone
    result = CliRunner().invoke(main, ["check", str(wav), "--profile", "vinyl"])
    assert result.exit_code == 2 and "spotify" in result.output


def test_check_validates_specs_and_refuses_a_mix_of_specs_and_masters(tmp_path, write_spec):
    good = write_spec()
    result = CliRunner().invoke(main, ["check", str(good)])
    assert result.exit_code == 0 and "ok (" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: Bad\nartist: M\ngenre: jazz\ntempo: 100\nkey: C\n"
                   "structure:\n  - {section: V, bars: 2, chords: [C]}\nlyrics: |\n  [V]\n  la la\n")
    result = CliRunner().invoke(main, ["check", str(good), str(bad)])
    assert result.exit_code == 2 and "bad.yaml:3:" in result.output
    result = CliRunner().invoke(main, ["check", str(good), str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(main, ["check", str(good), "--profile", "spotify"])
    assert result.exit_code == 2 and "--profile applies to masters" in result.output
