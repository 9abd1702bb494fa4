"""The arranger's Standard MIDI File: a conductor track (tempo, metre, key), then one track per part
with the same note events the audio is rendered from, so the MIDI is what you hear.
"""

from __future__ import annotations

import io

import mido

from millamusic.instruments.parts import DRUM_CHANNEL, Part
from millamusic.music.score import Score

PPQ = 480  # MIDI ticks per quarter note

# mido key names by signed count of sharps.
_MAJOR_KEYS = {0: "C", 1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#",
               -1: "F", -2: "Bb", -3: "Eb", -4: "Ab", -5: "Db", -6: "Gb", -7: "Cb"}
_MINOR_KEYS = {0: "Am", 1: "Em", 2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m",
               -1: "Dm", -2: "Gm", -3: "Cm", -4: "Fm", -5: "Bbm", -6: "Ebm", -7: "Abm"}


def mido_key_name(score: Score) -> str:
    key = score.key_value
    table = _MINOR_KEYS if key.mode == "minor" else _MAJOR_KEYS
    return table[key.sharps]


def midi_bytes(score: Score, parts: tuple[Part, ...] | list[Part]) -> bytes:
    """Type-1 SMF: conductor track (tempo, metre, key), then one track per part."""

    beat_ticks = PPQ * 4 / score.beat_unit  # a score beat is one `beat_unit` note
    # UTF-8 text events: mido's default latin-1 cannot write a title like "東京" or "Ωmega"
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ, charset="utf-8")
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=score.title, time=0))
    conductor.append(mido.MetaMessage(
        "set_tempo", tempo=mido.bpm2tempo(score.tempo_bpm, time_signature=(score.beats_per_bar, score.beat_unit)),
        time=0))
    conductor.append(mido.MetaMessage("key_signature", key=mido_key_name(score), time=0))
    last_tick, beats = 0, None
    for bar in score.bars:
        if bar.beats != beats:
            tick = int(round(bar.start_beat * beat_ticks))
            conductor.append(mido.MetaMessage("time_signature", numerator=bar.beats, denominator=score.beat_unit,
                                              time=tick - last_tick))
            last_tick, beats = tick, bar.beats
    end_tick = int(round((score.total_beats + score.tail_seconds / score.seconds_per_beat) * beat_ticks))
    conductor.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - last_tick)))
    midi.tracks.append(conductor)

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
