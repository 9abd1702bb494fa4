"""The embedded `arranger` backing engine: stems, MIDI, following the score, determinism."""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest
from scipy import signal

from millamusic.core.errors import RenderError
from millamusic.engines.arranger import Arranger, arrange
from millamusic.engines.base import BackingRequest, BackingResult
from millamusic.instruments import synth
from millamusic.instruments.parts import voice_chord
from millamusic.instruments.presets import GENRE_DEFAULT, PRESETS
from millamusic.music.score import Bar, Score, Section
from millamusic.music.theory import midi_to_hz, parse_chord

RATE = 44100
PROGRESSION = ("Am", "F", "C", "G")


def make_score(kinds=("intro", "verse", "chorus", "outro"), bars_per_section=2, tempo=120.0, beats=4,
               chords=PROGRESSION, tail=2.5, per_bar=None) -> Score:
    sections, bars = [], []
    for s, kind in enumerate(kinds):
        start = s * bars_per_section
        sections.append(Section(name=kind.title(), kind=kind, start_bar=start, bars=bars_per_section))
        for b in range(start, start + bars_per_section):
            symbols = per_bar[b] if per_bar else (chords[b % len(chords)],)
            bars.append(Bar(index=b, section_index=s, start_beat=float(b * beats), beats=beats, chords=symbols))
    return Score(
        title="Test Song", tempo_bpm=tempo, beats_per_bar=beats, beat_unit=4, key="A minor", tonic_pc=9,
        mode="minor", language="en-us", seed=7, sections=tuple(sections), bars=tuple(bars), lines=(), words=(),
        notes=(), melody_source="composed", tail_seconds=tail,
    )


def request(genre="pop", seed=1, style=(), rate=RATE) -> BackingRequest:
    return BackingRequest(seed=seed, genre=genre, style=tuple(style), sample_rate=rate)


def parts_of(genre: str) -> list[str]:
    return ["drums", *PRESETS[GENRE_DEFAULT[genre]]["instruments"]]


def program_of(genre: str, part: str) -> int:
    return PRESETS[GENRE_DEFAULT[genre]]["instruments"][part]["program"]


SCORE = make_score()
_CACHE: dict[tuple, BackingResult] = {}


def render(genre="pop", seed=1, style=()) -> BackingResult:
    key = (genre, seed, tuple(style))
    if key not in _CACHE:
        _CACHE[key] = Arranger().render(SCORE, request(genre, seed, style))
    return _CACHE[key]


def mix(result: BackingResult) -> np.ndarray:
    return sum(a.samples.astype(np.float64) for a in result.stems.values())


def dbfs(x) -> float:
    return 20 * np.log10(max(float(np.max(np.abs(x))), 1e-12))


def rms_db(x) -> float:
    return 10 * np.log10(max(float(np.mean(np.square(x))), 1e-24))


def parse_midi(result: BackingResult) -> mido.MidiFile:
    return mido.MidiFile(file=io.BytesIO(result.midi))


def note_ons(track) -> list[tuple[int, mido.Message]]:
    """(absolute tick, message) of every sounding note_on in a track."""
    now, out = 0, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((now, msg))
    return out


def low_band_onsets(samples: np.ndarray, rate: int) -> np.ndarray:
    """Onset times (s) of the kick: clear rises of the < 120 Hz energy envelope, also over a ringing tom."""
    pad = int(0.5 * rate)  # silence either side: an onset at 0 s, and no circular wrap in hilbert()
    x = np.pad(samples.mean(axis=0).astype(np.float64), pad)
    low = signal.sosfilt(signal.butter(4, 120.0, "lowpass", fs=rate, output="sos"), x)
    hop = int(0.002 * rate)
    frames = len(low) // hop
    envelope = np.abs(signal.hilbert(low))  # smooth amplitude envelope, no 50 Hz ripple
    env = envelope[: frames * hop].reshape(frames, hop).max(axis=1)
    threshold = 0.15 * env.max()
    onsets, last = [], -10.0
    for i in range(5, frames):
        if env[i] > threshold and env[i] > 2.0 * env[i - 5] + 1e-9:
            t = i * hop / rate - pad / rate
            if t - last > 0.06:
                onsets.append(t)
            last = t
    return np.array(onsets)


def masked_by_floor_tom(result: BackingResult, t: float) -> bool:
    """True if a low tom was struck in the 200 ms before time t (s) of SCORE."""
    midi = parse_midi(result)
    drums = next(tr for tr in midi.tracks if any(m.type == "track_name" and m.name == "drums" for m in tr))
    seconds_per_tick = SCORE.seconds_per_beat / midi.ticks_per_beat
    toms = [tick * seconds_per_tick for tick, m in note_ons(drums) if m.note == 45]
    return any(0.0 < t - tom < 0.2 for tom in toms)


# --- the engine's identity ------------------------------------------------------------------------
def test_info_and_registry():
    info = Arranger.info
    assert (info.name, info.kind, info.version, info.model) == ("arranger", "backing", "0.3.0", "embedded")
    assert info.generator == "algorithmic" and info.licence == "MIT (millamusic)"
    from millamusic.engines import load_engine

    assert isinstance(load_engine("backing", "arranger"), Arranger)


def test_unknown_genre_is_a_clear_error():
    with pytest.raises(RenderError, match="valid genres: pop, rock"):
        Arranger().render(SCORE, request("polka"))


# --- stems --------------------------------------------------------------------------------------
@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_stems_are_stereo_exact_length_finite_and_unclipped(genre):
    result = render(genre)
    frames = SCORE.total_frames(RATE)
    assert set(result.stems) == set(parts_of(genre))
    for name, audio in result.stems.items():
        assert audio.sample_rate == RATE
        assert audio.samples.dtype == np.float32
        assert audio.samples.shape == (2, frames), name
        assert np.all(np.isfinite(audio.samples)), name
        assert audio.peak() < 1.0, name
    peaks = {name: dbfs(audio.samples) for name, audio in result.stems.items()}
    assert all(-18.0 < p < -2.9 for p in peaks.values()), peaks  # healthy levels, headroom kept
    assert max(peaks.values()) > -9.0, peaks
    assert -1.5 < dbfs(mix(result)) < -0.9  # the stems together peak at -1 dBFS: below 1.0
    # the engine's own backing mix (whose peak it reports) is the sum of the stems it returns
    assert result.details["sum_peak_dbfs"] == pytest.approx(dbfs(mix(result)), abs=0.01)
    assert result.prompt is None
    assert result.details["parts"] == parts_of(genre) and result.details["preset"] == GENRE_DEFAULT[genre]
    drums = result.stems["drums"].samples
    assert not np.array_equal(drums[0], drums[1])  # panned: hats right, crash left


def test_rock_has_guitar_and_pop_has_keys():
    rock, pop = render("rock"), render("pop")
    assert "guitar" in rock.stems and "keys" not in rock.stems
    assert "keys" in pop.stems and "guitar" not in pop.stems
    guitar = rock.stems["guitar"].samples
    assert rms_db(guitar) > -40
    # double-tracked and spread: the two sides differ clearly
    side = (guitar[0] - guitar[1]) / 2
    assert rms_db(side) > rms_db(guitar) - 12


def test_same_seed_is_bit_identical_and_another_seed_differs():
    first = render("rock", seed=3)
    again = Arranger().render(SCORE, request("rock", seed=3))
    for name in first.stems:
        assert np.array_equal(first.stems[name].samples, again.stems[name].samples), name
    assert first.midi == again.midi
    other = render("rock", seed=4)
    assert any(not np.array_equal(first.stems[n].samples, other.stems[n].samples) for n in first.stems)
    assert first.midi != other.midi


# --- MIDI ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_midi_file(genre):
    result = render(genre)
    midi = parse_midi(result)
    assert midi.type == 1
    conductor = midi.tracks[0]
    tempos = [m.tempo for m in conductor if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120.0)]
    assert [(m.numerator, m.denominator) for m in conductor if m.type == "time_signature"] == [(4, 4)]
    assert [m.key for m in conductor if m.type == "key_signature"] == ["Am"]
    names = [next(m.name for m in t if m.type == "track_name") for t in midi.tracks[1:]]
    assert names == parts_of(genre)
    for name, track in zip(names, midi.tracks[1:]):
        ons = note_ons(track)
        assert len(ons) > 0, name
        channels = {m.channel for _, m in ons}
        if name == "drums":
            assert channels == {9}
            assert {m.note for _, m in ons} >= {36, 38, 42, 49}
        else:
            assert 9 not in channels
            programs = [m.program for m in track if m.type == "program_change"]
            assert programs == [program_of(genre, name)]
        sounding: set[int] = set()  # well formed: a pitch is never struck while it still sounds
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                assert msg.note not in sounding, (name, msg)
                sounding.add(msg.note)
            elif msg.type in ("note_off", "note_on"):
                sounding.discard(msg.note)
        assert not sounding
    guitar_programs = {30, 29}
    if genre == "rock":
        track = midi.tracks[1 + names.index("guitar")]
        assert {m.program for m in track if m.type == "program_change"} <= guitar_programs


def test_midi_notes_are_the_synthesised_notes():
    """Every kick in the MIDI is heard in the drum stem within 20 ms, and nothing else is."""
    result = render("rock")
    midi = parse_midi(result)
    drums = next(t for t in midi.tracks if any(m.type == "track_name" and m.name == "drums" for m in t))
    seconds_per_tick = 0.5 / midi.ticks_per_beat
    kicks = np.array([tick * seconds_per_tick for tick, m in note_ons(drums) if m.note == 36])
    onsets = low_band_onsets(result.stems["drums"].samples, RATE)
    onsets = onsets[onsets < SCORE.music_seconds]
    assert len(kicks) > 10
    for t in kicks:
        if not masked_by_floor_tom(result, t):
            assert np.min(np.abs(onsets - t)) < 0.02, t
    # the arrangement object is what the MIDI was written from
    events = next(p for p in arrange(SCORE, request("rock")).parts if p.name == "drums").events
    assert sorted(round(e.start_beat * 0.5 / seconds_per_tick) for e in events if e.pitch == 36) == sorted(
        round(t / seconds_per_tick) for t in kicks)


# --- following the score -------------------------------------------------------------------------
@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_bass_plays_the_chord_roots(genre):
    bass = render(genre).stems["bass"].samples.mean(axis=0).astype(np.float64)
    hits = 0
    for bar in SCORE.bars:
        a = int(round(SCORE.beat_to_seconds(bar.start_beat) * RATE))
        b = int(round(SCORE.beat_to_seconds(bar.start_beat + bar.beats) * RATE))
        segment = bass[a:b] * np.hanning(b - a)
        power = np.abs(np.fft.rfft(segment)) ** 2
        freqs = np.fft.rfftfreq(b - a, 1 / RATE)
        band = (freqs > 25) & (freqs < 400)
        pcs = np.round(69 + 12 * np.log2(freqs[band] / 440.0)).astype(int) % 12
        chroma = np.bincount(pcs, weights=power[band], minlength=12)
        hits += int(np.argmax(chroma)) == parse_chord(bar.chords[0]).root_pc
    assert hits >= 0.9 * len(SCORE.bars)


@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_kick_onsets_sit_on_the_beat_grid(genre):
    result = render(genre)
    onsets = low_band_onsets(result.stems["drums"].samples, RATE)
    spb = SCORE.seconds_per_beat
    assert len(onsets) >= len(SCORE.bars)
    # every bar starts with a kick
    for bar in SCORE.bars:
        t = SCORE.beat_to_seconds(bar.start_beat)
        if not masked_by_floor_tom(result, t):
            assert np.min(np.abs(onsets - t)) < 0.02, f"no kick on the downbeat of bar {bar.index}"
    # every kick (and fill tom) is on the 16th-note grid
    grid = spb / 4
    off_grid = np.abs(onsets - np.round(onsets / grid) * grid)
    assert np.all(off_grid < 0.02), onsets[off_grid >= 0.02]
    # and most of them on a beat
    on_beat = np.abs(onsets - np.round(onsets / spb) * spb) < 0.02
    assert on_beat.mean() > 0.45  # the rest push on the off-beats (rock chorus: x.x...x.x.x...x.)


def test_sections_shape_the_drums():
    result = render("pop")
    midi = parse_midi(result)
    drums = next(t for t in midi.tracks if any(m.type == "track_name" and m.name == "drums" for m in t))
    ticks_per_bar = 4 * midi.ticks_per_beat
    ons = note_ons(drums)

    def notes_in(bar: int, first_beat=0.0, last_beat=4.0):
        lo, hi = bar * ticks_per_bar + first_beat * midi.ticks_per_beat, bar * ticks_per_bar + last_beat * midi.ticks_per_beat
        return [m for tick, m in ons if lo - 20 <= tick < hi - 20]

    chorus_bar = next(b.index for b in SCORE.bars if SCORE.sections[b.section_index].kind == "chorus")
    assert 49 in [m.note for m in notes_in(chorus_bar, 0, 0.25)]  # crash on the chorus downbeat
    assert 49 not in [m.note for m in notes_in(chorus_bar - 1)]
    fill = notes_in(chorus_bar - 1, 3, 4)  # last beat before the chorus: a fill
    assert len([m for m in fill if m.note in (38, 45, 47, 50)]) >= 3
    # the intro is sparser than the chorus
    assert len(notes_in(0)) < len(notes_in(chorus_bar))


def test_ballad_is_half_time_and_softer():
    normal = next(p for p in arrange(SCORE, request("rock")).parts if p.name == "drums").events
    ballad_arr = arrange(SCORE, request("rock", style=("ballad",)))
    ballad = next(p for p in ballad_arr.parts if p.name == "drums").events
    assert ballad_arr.style_words == ("ballad",) and ballad_arr.preset_name == "power-ballad"
    snares = lambda events: [e for e in events if e.pitch == 38]  # noqa: E731
    assert len(snares(ballad)) < len(snares(normal))
    assert np.mean([e.velocity for e in ballad]) < np.mean([e.velocity for e in normal])
    result = render("rock", style=("ballad",))
    assert result.details["style_words"] == ["ballad"] and result.details["preset"] == "power-ballad"


def test_chords_are_voice_led_in_the_middle_register():
    keys = next(p for p in arrange(SCORE, request("pop")).parts if p.name == "keys").events
    assert all(48 <= e.pitch <= 79 for e in keys)
    chords = []
    for e in keys:
        if not chords or e.start_beat - chords[-1][0] > 0.2:
            chords.append([e.start_beat, []])
        chords[-1][1].append(e.pitch)
    for (_, a), (_, b) in zip(chords, chords[1:]):
        a, b = sorted(a), sorted(b)
        if len(a) == len(b):
            assert sum(abs(x - y) for x, y in zip(a, b)) <= 8  # Am -> F -> C -> G moves by steps
    assert voice_chord((9, 0, 4), (57, 60, 64), 53, 76) == (57, 60, 64)
    assert voice_chord((5, 9, 0), (57, 60, 64), 53, 76) == (57, 60, 65)


@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_the_last_chord_rings_out_into_the_tail(genre):
    total = mix(render(genre))
    end_of_music = int(round(SCORE.music_seconds * RATE))
    just_after = total[:, end_of_music : end_of_music + RATE // 2]
    assert rms_db(just_after) > -40  # still sounding after the last bar
    very_end = total[:, -int(0.05 * RATE) :]
    assert dbfs(very_end) < -60  # but decayed to (near) silence by the end of the tail
    assert rms_db(total[:, -RATE // 2 :]) < rms_db(just_after) - 12  # and it decays, not cut


def test_odd_bars_split_chords_and_other_rates():
    per_bar = [("Am",), ("F", "G"), ("C/E",), ("Dm7", "E7")]
    score = make_score(kinds=("verse", "chorus"), bars_per_section=2, beats=3, tempo=96.0, per_bar=per_bar, tail=1.0)
    result = Arranger().render(score, request("rock", rate=48000))
    for audio in result.stems.values():
        assert audio.samples.shape == (2, score.total_frames(48000))
        assert np.all(np.isfinite(audio.samples)) and audio.peak() < 1.0
    bass = next(p for p in arrange(score, request("rock", rate=48000)).parts if p.name == "bass").events
    beat = lambda b: [e.pitch % 12 for e in bass if abs(e.start_beat - b) < 0.1]  # noqa: E731
    assert beat(3.0) == [5] and beat(4.5) == [7]  # F, then G halfway through the 3/4 bar
    assert beat(6.0) == [4]  # C/E: the bass plays the slash note
    midi = parse_midi(result)
    assert [(m.numerator, m.denominator) for m in midi.tracks[0] if m.type == "time_signature"] == [(3, 4)]


@pytest.mark.parametrize("pitch", [40, 45, 52, 59, 64])
def test_karplus_strong_string_is_in_tune(pitch):
    freq = midi_to_hz(pitch)
    note = synth.karplus_strong(freq, RATE // 2, RATE, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(note * np.hanning(len(note)), 16 * len(note)))
    freqs = np.fft.rfftfreq(16 * len(note), 1 / RATE)
    band = (freqs > freq * 0.8) & (freqs < freq * 1.2)
    found = freqs[band][np.argmax(spectrum[band])]
    assert abs(1200 * np.log2(found / freq)) < 10
    assert note.dtype == np.float32 and np.max(np.abs(note)) <= 1.0
    assert np.max(np.abs(note[-200:])) < 0.05  # released at note-off, no click


def test_options_pick_and_override_the_preset():
    req = BackingRequest(seed=1, genre="pop", style=("synth-pop",), sample_rate=RATE,
                         options={"preset": "piano-ballad", "overrides": {"instruments": {"pad": None},
                                                                         "swing": 0.2}})
    arrangement = arrange(SCORE, req)
    assert arrangement.preset_name == "piano-ballad"  # the option wins over the style words
    assert [p.name for p in arrangement.parts] == ["drums", "piano", "bass"]  # null leaves an instrument out
    assert arrangement.preset["swing"] == 0.2
    with pytest.raises(RenderError, match="valid presets: synth-pop, piano-ballad, driving-rock, power-ballad"):
        arrange(SCORE, BackingRequest(seed=1, genre="pop", style=(), sample_rate=RATE, options={"preset": "polka"}))
    with pytest.raises(RenderError, match="valid options: preset, overrides, soundfont"):
        arrange(SCORE, BackingRequest(seed=1, genre="pop", style=(), sample_rate=RATE, options={"presets": "x"}))
