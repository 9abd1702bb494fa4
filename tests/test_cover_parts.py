"""The pieces a cover is built from, without a recording: transposition in the spec and composer,
the original work in tags and release fields, the drafter's note fitting, lyric mapping and
transposition choice, MusicGen's reference chroma, and `millamusic cover` refusing bad input."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from millamusic.analysis.form import SectionEstimate
from millamusic.cli import main
from millamusic.compose import compose
from millamusic.core.audio import Audio
from millamusic.core.errors import SpecError
from millamusic.cover.draft import DraftNote, DraftSection, choose_transpose, fit_notes, map_sheet, skeleton_sheet
from millamusic.cover.files import midi_bytes
from millamusic.engines.base import BackingRequest
from millamusic.engines.musicgen import guide_chroma
from millamusic.music.lyrics import parse_sheet
from millamusic.music.theory import parse_key, transpose_chord
from millamusic.release.tags import ReleaseTags, id3_tags
from millamusic.spec.song import load_song

ORIGINAL = """release:
  original:
    title: Every Little Star
    artist: The Originals
    songwriters: [Ann Writer, Bob Composer]
    year: 1983
"""


# --------------------------------------------------------------------------- transpose


def test_transpose_chord_keeps_quality_and_bass():
    assert transpose_chord("Am", 2) == "Bm"
    assert transpose_chord("F#m7/C#", -1) == "Fm7/C"
    assert transpose_chord("Bb", 2) == "C"
    assert transpose_chord("Gsus4", 5) == "Csus4"
    assert parse_key("A minor").transposed(3).name == "C minor"
    with pytest.raises(ValueError, match="not a chord symbol"):
        transpose_chord("H7", 1)


def test_transpose_moves_key_chords_and_midi_melody_together(write_spec, tmp_path):
    plain = compose(load_song(write_spec(name="plain.yaml")))
    moved = compose(load_song(write_spec(name="moved.yaml", extra="transpose: 3\n")))
    assert (plain.key, moved.key) == ("A minor", "C minor")
    assert [bar.chords for bar in moved.bars] == [tuple(transpose_chord(c, 3) for c in bar.chords)
                                                  for bar in plain.bars]
    # a MIDI melody moves with the song: the file stays in the reference's key
    notes = [DraftNote(float(i), 1.0, 60 + i) for i in range(10)]
    (tmp_path / "songs" / "tune.mid").write_bytes(midi_bytes(notes, 120.0, "4/4"))
    lyrics = "lyrics: |\n  [Verse]\n  one two three four five\n  [Chorus]\n  six sev en eight nine\n"
    spec = write_spec(name="tune.yaml", extra="melody: tune.mid\ntranspose: -2\n").read_text()
    spec_path = tmp_path / "songs" / "tune.yaml"
    spec_path.write_text(spec.split("lyrics: |")[0] + lyrics + "release:" + spec.split("release:")[1])
    score = compose(load_song(spec_path))
    assert [n.pitch for n in score.notes] == [58 + i for i in range(10)]


def test_transpose_out_of_range_is_a_located_spec_error(write_spec):
    with pytest.raises(SpecError) as error:
        load_song(write_spec(extra="transpose: 13\n"))
    assert "transpose" in str(error.value) and "less than or equal to 12" in str(error.value)


# --------------------------------------------------------------------------- the original work


def test_original_work_fills_composer_lyricist_and_cover_tags(write_spec):
    text = write_spec().read_text()
    text = text.replace("  composer: Test Composer\n  lyricist: Test Lyricist\n", "")
    path = write_spec(name="cover.yaml", text=text.replace("release:\n", ORIGINAL))
    release = load_song(path).spec.release
    assert release.composer_credit == release.lyricist_credit == "Ann Writer, Bob Composer"
    tags = ReleaseTags(title="t", artist="a", disclosure="made with AI tools here", contains_ai="Partly",
                       digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic",
                       ai_credits_json="[]", original_title="Every Little Star", original_artist="The Originals",
                       original_songwriters="Ann Writer, Bob Composer", original_year=1983)
    vorbis = tags.vorbis_comments()
    assert vorbis["ORIGINALARTIST"] == "The Originals" and vorbis["ORIGINALDATE"] == "1983"
    assert vorbis["COVER_OF"] == "Cover of 'Every Little Star' by The Originals (written by Ann Writer, Bob Composer)"
    id3 = id3_tags(tags)
    assert str(id3["TOPE"]) == "The Originals" and str(id3["TOLY"]) == "Ann Writer, Bob Composer"
    assert str(id3["TXXX:ORIGINAL_TITLE"]) == "Every Little Star"


def test_original_work_without_songwriters_is_refused(write_spec):
    text = write_spec().read_text().replace("release:\n", "release:\n  original: {title: X, artist: Y}\n")
    with pytest.raises(SpecError, match="original.songwriters"):
        load_song(write_spec(name="bad.yaml", text=text))


# --------------------------------------------------------------------------- drafting


def test_fit_notes_merges_shortest_and_splits_longest():
    notes = [DraftNote(0, 1, 60), DraftNote(1, 0.25, 62), DraftNote(1.25, 0.75, 64), DraftNote(2, 2, 65)]
    merged = fit_notes(notes, 3)
    assert [(n.start_beat, n.length_beats, n.pitch) for n in merged] == [(0, 1.25, 60), (1.25, 0.75, 64), (2, 2, 65)]
    split = fit_notes(notes, 5)
    assert len(split) == 5 and split[-2:] == [DraftNote(2, 1, 65), DraftNote(3, 1, 65)]
    assert fit_notes([DraftNote(0, 0.25, 60)], 2) is None  # an eighth of a beat cannot hold a syllable


def test_choose_transpose_moves_the_melody_into_the_range_by_the_least():
    notes = [DraftNote(i, 1, p) for i, p in enumerate([55, 57, 59, 60, 62, 64, 65, 67])]
    shift, why = choose_transpose(notes, (57, 76))  # A3..E5: two semitones up fit
    assert shift == 2 and "+2" in why
    assert choose_transpose(notes, (48, 72))[0] == 0
    assert choose_transpose(None, (57, 76))[0] == 0


def test_lyric_sheet_headers_rename_repeated_sections_in_order():
    sections = [DraftSection("Intro", "intro", 0, 4, "A"), DraftSection("Verse", "verse", 4, 8, "B"),
                DraftSection("Chorus", "chorus", 12, 8, "C"), DraftSection("Verse", "verse", 20, 8, "B"),
                DraftSection("Chorus", "chorus", 28, 8, "C")]
    blocks, _ = parse_sheet("[Verse 1]\na b\n\n[Refrain]\nc d\n\n[Verse 2]\ne f\n", file="sheet.txt")
    renamed, why = map_sheet(sections, blocks)
    assert why == "" and [s.name for s in renamed] == ["Intro", "Verse 1", "Refrain", "Verse 2", "Refrain"]
    blocks, _ = parse_sheet("[Verse]\na b\n\n[Middle Eight]\nc d\n", file="sheet.txt")
    renamed, why = map_sheet(sections, blocks)
    assert renamed is None and "[Middle Eight]" in why


def test_skeleton_sheet_has_one_la_per_note_and_phrase():
    sections = [DraftSection("Verse", "verse", 0, 2, "A"), DraftSection("Verse", "verse", 2, 2, "A")]
    notes = [DraftNote(0, 0.5, 60), DraftNote(0.5, 0.5, 62), DraftNote(2, 1, 64), DraftNote(8, 1, 60)]
    blocks = skeleton_sheet(sections, notes, 4)
    assert [(b.header, [line.text for line in b.lines]) for b in blocks] == [("Verse", ["la la", "la"])]


def test_melody_midi_reads_back_with_tempo_and_meter():
    notes = [DraftNote(0, 1, 60), DraftNote(1, 1, 60), DraftNote(2.5, 0.5, 67)]
    midi = mido.MidiFile(file=__import__("io").BytesIO(midi_bytes(notes, 96.0, "3/4")))
    metas = {m.type: m for m in midi.tracks[0] if m.is_meta}
    assert round(mido.tempo2bpm(metas["set_tempo"].tempo), 3) == 96.0
    assert (metas["time_signature"].numerator, metas["time_signature"].denominator) == (3, 4)
    ons = [m.note for m in midi.tracks[0] if m.type == "note_on"]
    assert ons == [60, 60, 67]  # a repeated pitch is struck again


def test_musicgen_reference_chroma_moves_with_the_song():
    rate = 32000
    t = np.arange(rate * 4) / rate
    guide = Audio(np.sin(2 * np.pi * 220.0 * t)[None, :].astype(np.float32), rate)  # A
    request = BackingRequest(seed=0, genre="pop", style=(), sample_rate=44100, reference="x.wav",
                             reference_start=1.5, transpose=3)
    chroma, offset = guide_chroma(guide, "reference", request)
    assert offset == 1.5 and np.argmax(chroma[10]) == 0  # A + 3 semitones = C
    plain, offset = guide_chroma(guide, "score", request)
    assert offset == 0.0 and np.argmax(plain[10]) == 9


def test_section_estimates_name_intro_chorus_verse_outro():
    from millamusic.cover.draft import name_sections

    found = (SectionEstimate(0, 4, "A", -30.0), SectionEstimate(4, 8, "B", -20.0), SectionEstimate(12, 8, "C", -15.0),
             SectionEstimate(20, 8, "B", -20.0), SectionEstimate(28, 8, "C", -15.0), SectionEstimate(36, 4, "D", -25.0))
    names = [s.name for s in name_sections(found, set(range(4, 36)))]
    assert names == ["Intro", "Verse", "Chorus", "Verse", "Chorus", "Outro"]
    # no melody heard: the middle sections cannot be told instrumental, and a lone one is a Bridge
    unsung = [s.name for s in name_sections(found[:3] + (SectionEstimate(20, 8, "E", -18.0),) + found[4:], set())]
    assert unsung == ["Intro", "Bridge", "Chorus", "Bridge 2", "Chorus", "Outro"]


# --------------------------------------------------------------------------- bad input


def _cover(tmp_path: Path, reference: Path, *args: str):
    out = tmp_path / "proj" / "songs" / "draft.yaml"
    result = CliRunner().invoke(main, ["cover", str(reference), "--title", "Draft", "--artist", "Milla Virta",
                                       "--out-spec", str(out), *args])
    return result, out.parent


def _assert_refused(result, folder: Path, words: str):
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output
    assert not folder.exists() or not any(folder.iterdir())  # nothing half-written


def test_not_audio_is_refused_with_the_file_named(tmp_path):
    fake = tmp_path / "song.wav"
    fake.write_text("this is not a recording")
    result, folder = _cover(tmp_path, fake)
    _assert_refused(result, folder, "not a readable audio file")
    assert "song.wav" in result.output


def test_half_an_original_work_is_refused_before_listening(tmp_path):
    result, folder = _cover(tmp_path, tmp_path / "not-read-yet.wav", "--original-artist", "The Originals")
    _assert_refused(result, folder, "--original-artist with at least one --songwriter")


def test_a_two_second_clip_is_refused(tmp_path):
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, np.zeros((2 * 22050, 2), np.float32) + 0.1, 22050)
    result, folder = _cover(tmp_path, clip)
    _assert_refused(result, folder, "2.0 s long")


def test_a_thirty_minute_file_is_refused_from_its_header(tmp_path):
    long = tmp_path / "long.wav"
    with soundfile.SoundFile(long, "w", samplerate=8000, channels=1, subtype="PCM_16") as out:
        block = np.zeros(8000 * 60, np.int16)
        for _ in range(30):
            out.write(block)
    result, folder = _cover(tmp_path, long)
    _assert_refused(result, folder, "30 minutes long")


def test_silence_is_refused(tmp_path):
    quiet = tmp_path / "quiet.flac"
    soundfile.write(quiet, np.zeros((30 * 22050, 2), np.float32), 22050)
    result, folder = _cover(tmp_path, quiet)
    _assert_refused(result, folder, "silent")


@pytest.mark.slow
def test_a_recording_with_no_steady_beat_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    rate = 22050
    x = np.zeros(rate * 30, np.float32)
    at = 0.3
    while at < 29:  # plucks at random times: rubato, no grid
        n, k = int(at * rate), np.arange(4000)
        x[n:n + 4000] += (np.sin(2 * np.pi * rng.uniform(200, 600) * k / rate) * np.exp(-k / 1500))[: len(x) - n]
        at += rng.uniform(0.2, 1.4)
    free = tmp_path / "free.wav"
    soundfile.write(free, x * 0.5, rate)
    result, folder = _cover(tmp_path, free)
    _assert_refused(result, folder, "no clear beat")


@pytest.mark.slow
def test_a_recording_that_speeds_up_is_drafted_on_one_grid_and_the_drift_reported():
    from millamusic.analysis.beat_grid import estimate_beat_grid

    rate, seconds = 22050, 60.0
    # beat times of a tempo rising steadily from 100 to 106 BPM: t(beat) from the integrated rate
    beats, t, bpm = [], 0.0, 100.0
    while t < seconds - 1:
        beats.append(t)
        bpm = 100.0 + 6.0 * t / seconds
        t += 60.0 / bpm
    x = np.zeros(int(rate * seconds), np.float32)
    roots = [220.0, 174.6, 130.8, 196.0]  # A F C G, one chord per 4 beats
    for index, start in enumerate(beats):
        n = int(start * rate)
        k = np.arange(int(0.25 * rate))
        hit = np.sin(2 * np.pi * 60 * k / rate) * np.exp(-k / 800) * (1.0 if index % 4 == 0 else 0.6)
        root = roots[(index // 4) % 4]
        tone = sum(np.sin(2 * np.pi * root * r * k / rate) for r in (1, 1.26, 1.5)) * np.exp(-k / 4000) * 0.2
        x[n:n + k.size] += (hit + tone)[: x.size - n].astype(np.float32)
    grid = estimate_beat_grid(x, rate)
    first, last = np.mean([100 + 6 * t / seconds for t in (0, 20)]), np.mean([100 + 6 * t / seconds for t in (40, 60)])
    assert abs(grid.drift_percent - 100 * (last / first - 1)) < 1.5, grid.drift_percent
    assert 100 < grid.bpm < 106


# --------------------------------------------------------------------------- lyric sheets in song order


def test_published_sheets_sing_the_nth_block_in_the_nth_section(write_spec):
    text = write_spec().read_text().replace(
        "  - {section: Chorus, bars: 2, chords: [C, G]}\n",
        "  - {section: Chorus, bars: 2, chords: [C, G]}\n  - {section: Verse, bars: 2, chords: [Am, F]}\n"
        "  - {section: Chorus, bars: 2, chords: [C, G]}\n  - {section: Chorus, bars: 2, chords: [C, G]}\n")
    text = text.replace("  [Chorus]\n  Spin me round again\n",
                        "  [Chorus]\n  Spin me round again\n  [Verse]\n  Another verse is here\n"
                        "  [Chorus]\n  New words for the second one\n")
    score = compose(load_song(write_spec(name="published.yaml", text=text)))
    sung = [(score.sections[line.section_index].name, line.text) for line in score.lines]
    assert sung == [("Verse", "Hold the light tonight"), ("Chorus", "Spin me round again"),
                    ("Verse", "Another verse is here"), ("Chorus", "New words for the second one"),
                    ("Chorus", "New words for the second one")]  # no third block: the last one again


def test_more_blocks_than_sections_of_a_name_is_a_located_error(write_spec):
    text = write_spec().read_text().replace("  [Chorus]\n  Spin me round again\n",
                                            "  [Chorus]\n  Spin me round again\n  [Chorus]\n  Once more\n")
    with pytest.raises(SpecError) as error:
        load_song(write_spec(name="extra.yaml", text=text))
    said = str(error.value)
    assert "block 2 named [Chorus], but `structure` has 1 section of that name" in said
    assert "add another Chorus section" in said


def six_eight(dotted_quarter_bpm: float, *, bars: int = 24, rate: int = 22050) -> np.ndarray:
    """A 6/8 groove: kick on the 1st eighth, snare on the 4th (the two dotted-quarter beats), soft
    hats on every eighth, a chord per bar."""
    rng = np.random.default_rng(0)
    eighth = 60.0 / dotted_quarter_bpm / 3
    x = np.zeros(int(rate * (bars * 6 * eighth + 2)), np.float32)
    k = np.arange(int(0.3 * rate))
    for bar in range(bars):
        root = (220.0, 174.6, 130.8, 196.0)[bar % 4]
        for e in range(6):
            n = int((bar * 6 + e) * eighth * rate)
            sound = rng.normal(0, 1, k.size) * np.exp(-k / 100) * 0.08
            if e == 0:
                sound += np.sin(2 * np.pi * 60 * k / rate) * np.exp(-k / 700)
            if e == 3:
                sound += rng.normal(0, 1, k.size) * np.exp(-k / 400) * 0.5
            sound += sum(np.sin(2 * np.pi * root * r * k / rate) for r in (1, 1.26, 1.5)) * np.exp(-k / 3000) * (
                0.12 if e == 0 else 0.05)
            x[n:n + k.size] += sound[: x.size - n].astype(np.float32)
    return x


@pytest.mark.slow
@pytest.mark.parametrize("dotted_quarter_bpm", [50.0, 66.0, 80.0])
def test_six_eight_is_heard_with_its_bars_and_downbeat(dotted_quarter_bpm):
    """Read in pairs of eighths as 3/4 bars of the right length and phase, and said to be 6/8."""
    from millamusic.analysis.beat_grid import estimate_beat_grid

    grid = estimate_beat_grid(six_eight(dotted_quarter_bpm), 22050)
    bar = 2 * 60.0 / dotted_quarter_bpm
    assert grid.heard_meter == "6/8" and grid.time_signature == "3/4"
    assert abs(grid.beats_per_bar * grid.seconds_per_beat / bar - 1) < 0.01
    offset = grid.first_downbeat_seconds % bar
    assert min(offset, bar - offset) < 0.05, grid.first_downbeat_seconds




@pytest.mark.slow
def test_a_six_eight_cover_is_drafted_in_its_bars_and_says_so(tmp_path):
    reference = tmp_path / "ballad.wav"
    soundfile.write(reference, six_eight(60.0), 22050)
    result, folder = _cover(tmp_path, reference)
    assert result.exit_code == 0, result.output
    spec = (folder / "draft.yaml").read_text()
    # 6/8 at the dotted-quarter tempo it was played at (60), not 3/4 at the eighth pairs' 90
    assert "6/8 heard" in spec and "time_signature: 6/8" in spec and "tempo: 60" in spec
    song = load_song(folder / "draft.yaml")
    assert song.spec.time_signature == "6/8" and song.spec.tempo == pytest.approx(60, abs=0.5)
    score = compose(song)
    assert (score.beats_per_bar, score.beat_unit) == (6, 8)
    assert score.seconds_per_beat * 6 == pytest.approx(2.0, rel=0.01)  # a bar of two dotted quarters at 60
