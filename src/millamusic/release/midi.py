"""The release's MIDI file: the backing's parts plus the vocal melody."""

from __future__ import annotations

import io
from pathlib import Path

import mido

from millamusic.instruments.midi_file import PPQ, conductor_track
from millamusic.music.score import Score


def midi_with_vocal(backing_midi: Path, score: Score) -> bytes:
    """The backing's multitrack MIDI plus the sung melody with a lyric event on each syllable's
    note. As in karaoke files, a syllable that continues its word ends in '-' ("spin-", "ning");
    melisma notes carry no lyric."""

    data = backing_midi.read_bytes()
    if data:  # the backing's parts after its conductor track (tempo map, metre, keys)
        midi = mido.MidiFile(file=io.BytesIO(data), charset="utf-8")  # lyric events in any script
    else:  # a backing with no MIDI (MusicGen): the melody still needs the tempo map to be in time
        midi = mido.MidiFile(type=1, ticks_per_beat=PPQ, charset="utf-8")
        midi.tracks.append(conductor_track(score))
    per_beat = midi.ticks_per_beat * 4 / score.beat_unit  # ticks count quarters; a score beat is a beat_unit note
    events = []
    sung = [i for i, note in enumerate(score.notes) if note.syllable]
    word_continues = {i for i, j in zip(sung, sung[1:]) if score.notes[i].word_index == score.notes[j].word_index}
    for index, note in enumerate(score.notes):
        start = round(note.start_beat * per_beat)
        end = round((note.start_beat + note.length_beats) * per_beat)
        if note.syllable:
            text = note.syllable + ("-" if index in word_continues else "")
            events.append((start, 0, mido.MetaMessage("lyrics", text=text)))
        events.append((start, 1, mido.Message("note_on", channel=3, note=note.pitch, velocity=90)))
        events.append((max(end - 1, start), 0, mido.Message("note_off", channel=3, note=note.pitch, velocity=0)))
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Lead Vocal"),
                            mido.Message("program_change", channel=3, program=53)])  # GM 54: voice oohs
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
