"""The arranger's Standard MIDI File: a conductor track (tempo, metre, key), then one track per part
with the same note events the audio is rendered from, so the MIDI is what you hear.
"""

from __future__ import annotations

import io

import mido

from millamusic.instruments.parts import DRUM_CHANNEL, Part
from millamusic.music.score import Score
from millamusic.music.theory import Key

PPQ = 480  # MIDI ticks per quarter note

# mido key names by signed count of sharps.
_MAJOR_KEYS = {0: "C", 1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#",
               -1: "F", -2: "Bb", -3: "Eb", -4: "Ab", -5: "Db", -6: "Gb", -7: "Cb"}
_MINOR_KEYS = {0: "Am", 1: "Em", 2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m",
               -1: "Dm", -2: "Gm", -3: "Cm", -4: "Fm", -5: "Bbm", -6: "Ebm", -7: "Abm"}


RAMP_STEP_NOTE = 8  # a tempo ramp is written as one set_tempo per eighth note


def mido_key_name(key: Key) -> str:
    table = _MINOR_KEYS if key.mode == "minor" else _MAJOR_KEYS
    return table[key.sharps]


def _microseconds_per_quarter(seconds: float, beats: float, beat_unit: int) -> int:
    """MIDI tempo (microseconds per quarter note) that lasts `seconds` over `beats` score beats."""
    return int(round(seconds * 1e6 / (beats * 4 / beat_unit)))


def tempo_events(score: Score) -> list[tuple[float, int]]:
    """(score beat, MIDI tempo) of every set_tempo the tempo map needs: one per change, and one per
    eighth note of a ramp, each step's tempo the ramp's average over it, so every step lands on
    the beat the audio plays it on."""
    spb = score.seconds_per_beat
    events = [(0.0, _microseconds_per_quarter(spb, 1.0, score.beat_unit))]
    step = score.beat_unit / RAMP_STEP_NOTE  # score beats in an eighth note
    for change in score.tempo_changes:
        if change.ramp_beats <= 0:
            seconds = score.seconds_per_beat_at(change.start_beat)
            events.append((change.start_beat, _microseconds_per_quarter(seconds, 1.0, score.beat_unit)))
            continue
        end = change.start_beat + change.ramp_beats
        beat = change.start_beat
        while beat < end - 1e-9:
            span = min(step, end - beat)
            seconds = score.beat_to_seconds(beat + span) - score.beat_to_seconds(beat)
            events.append((beat, _microseconds_per_quarter(seconds, span, score.beat_unit)))
            beat += span
        events.append((end, _microseconds_per_quarter(score.seconds_per_beat_at(end), 1.0, score.beat_unit)))
    kept: dict[int, tuple[float, int]] = {}
    for beat, tempo in events:  # the last event at a beat wins (a change that a ramp starts on)
        kept[round(beat * 1e6)] = (beat, tempo)
    return sorted(kept.values())


def conductor_track(score: Score) -> mido.MidiTrack:
    """Title, the tempo map, a time signature wherever the bar length changes and a key signature
    wherever a section changes key; ends with the song's tail."""
    beat_ticks = PPQ * 4 / score.beat_unit  # a score beat is one `beat_unit` note
    events = [(0, 0, mido.MetaMessage("track_name", name=score.title))]
    events += [(int(round(beat * beat_ticks)), 1, mido.MetaMessage("set_tempo", tempo=tempo))
               for beat, tempo in tempo_events(score)]
    key = None
    for index, section in enumerate(score.sections):
        section_key = score.section_key(index)
        if section_key != key:
            tick = int(round(score.bars[section.start_bar].start_beat * beat_ticks)) if score.bars else 0
            events.append((tick, 2, mido.MetaMessage("key_signature", key=mido_key_name(section_key))))
            key = section_key
    if not score.sections:
        events.append((0, 2, mido.MetaMessage("key_signature", key=mido_key_name(score.key_value))))
    beats = None
    for bar in score.bars:
        if bar.beats != beats:
            events.append((int(round(bar.start_beat * beat_ticks)), 3,
                           mido.MetaMessage("time_signature", numerator=bar.beats, denominator=score.beat_unit)))
            beats = bar.beats
    track = mido.MidiTrack()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    end_tick = int(round((score.total_beats + score.tail_beats) * beat_ticks))
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
    return track


def midi_bytes(score: Score, parts: tuple[Part, ...] | list[Part]) -> bytes:
    """Type-1 SMF: conductor track (tempo map, metre, keys), then one track per part."""

    beat_ticks = PPQ * 4 / score.beat_unit  # a score beat is one `beat_unit` note
    # UTF-8 text events: mido's default latin-1 cannot write a title like "東京" or "Ωmega"
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ, charset="utf-8")
    midi.tracks.append(conductor_track(score))

    for part in parts:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        if part.channel != DRUM_CHANNEL:
            track.append(mido.Message("program_change", program=part.program, channel=part.channel, time=0))
        timeline = []
        next_on: dict[int, int] = {}  # a repeated pitch ends before it is struck again
        for ev in sorted(part.events, key=lambda e: (e.start_beat, e.pitch), reverse=True):
            on = int(round(ev.start_beat * beat_ticks))
            off = int(round((ev.start_beat + ev.length_beats) * beat_ticks))
            off = max(on + 1, min(off, next_on.get(ev.pitch, off)))
            next_on[ev.pitch] = on
            timeline.append((on, 1, ev.pitch, ev.velocity))
            timeline.append((off, 0, ev.pitch, 0))
        timeline.sort()
        now = 0
        for tick, is_on, pitch, vel in timeline:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, note=pitch, velocity=vel, channel=part.channel, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
