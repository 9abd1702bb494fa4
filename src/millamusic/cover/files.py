"""A CoverDraft on disk: the commented spec YAML, the lyric sheet and the melody MIDI.

Only a complete draft is ever written: every file is built in a scratch folder beside the
spec's folder (same depth, so the spec's relative paths resolve the same), the draft is loaded
and composed there exactly as `millamusic render` will, and only then are the files moved into
place, the spec last. A draft that does not load or compose is a bug in the drafter, not the
producer's input, and is raised as one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from io import BytesIO
from pathlib import Path

import mido

from millamusic.compose import compose
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.core.files import fsync_dir, fsync_file
from millamusic.cover.draft import CoverDraft, DraftNote, DraftSection, spec_meter
from millamusic.spec.fields import meter
from millamusic.spec.inputs import default_catalogue, outside_catalogue
from millamusic.spec.song import OriginalWork, load_song, slugify

TICKS_PER_BEAT = 480


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _chords_text(draft: CoverDraft, section: DraftSection) -> str:
    """The section's chords, shortened to the loop that repeats through it (the spec repeats a
    shorter list to fill the section)."""
    bars = [draft.analysis.bars[b] for b in range(section.start_bar, section.start_bar + section.bars)]
    key = draft.analysis.key
    tonic = key.name.split()[0] + ("m" if key.mode == "minor" else "")
    filled, last = [], None
    for chords in bars:  # a bar with no pitch ("N") keeps the chord before it (the tonic at the start)
        chords = tuple(c for c in chords if c != "N") or last or (tonic,)
        filled.append(chords)
        last = chords
    loop = next(p for p in range(1, len(filled) + 1)
                if len(filled) % p == 0 and all(filled[i] == filled[i % p] for i in range(len(filled))))
    return ", ".join(" ".join(c) if len(c) == 1 else _quote(" ".join(c)) for c in filled[:loop])


def spec_text(draft: CoverDraft, *, reference: str, lyrics: str, melody: str | None, artist_profile: str | None,
              original: OriginalWork | None) -> str:
    analysis, grid = draft.analysis, draft.analysis.grid
    key = analysis.key
    signature, tempo = spec_meter(grid)
    lines = [f"# Cover draft by `millamusic cover` from {analysis.path.name}: edit it, then render it.",
             "# What was heard (and what was not):"]
    lines += [f"#  - {finding}" for finding in draft.findings]
    lines += ["", f"title: {_quote(draft.title)}", f"artist: {_quote(draft.artist)}"]
    if artist_profile:
        lines.append(f"artist_profile: {_quote(artist_profile)}")
    lines += [f"genre: {draft.genre}", "style: []",
              f"tempo: {round(tempo, 2):g}" + ("   # dotted quarters a minute" if grid.compound else ""),
              f"key: {key.name}   # confidence {key.margin:.2f} over {key.runner_up} (0 = a coin toss)",
              f"time_signature: {signature}",
              f"transpose: {draft.transpose}   # semitones from the recording's key into the singer's range",
              "seed: 0", "", "structure:"]
    for section in draft.sections:
        lines.append(f"  - {{section: {_quote(section.name)}, kind: {section.kind}, bars: {section.bars}, "
                     f"chords: [{_chords_text(draft, section)}]}}   # bar {section.start_bar + 1}, music "
                     f"{section.label}")
    lines += ["", f"lyrics: {_quote(lyrics)}"]
    lines.append(f"melody: {_quote(melody)}   # the sung melody heard, one note per syllable" if melody else
                 "# melody: none drafted (see above): the composer writes one")
    lines += [f"reference: {_quote(reference)}",
              f"reference_start: {max(0.0, grid.first_downbeat_seconds):.3f}   # where bar 1 starts in it (s)",
              ""]
    if original is not None:
        lines += ["release:", "  original:   # the song this covers: distributors require it",
                  f"    title: {_quote(original.title)}", f"    artist: {_quote(original.artist)}",
                  f"    songwriters: [{', '.join(_quote(s) for s in original.songwriters)}]"]
        if original.year:
            lines.append(f"    year: {original.year}")
    else:
        lines += ["# release:", "#   original:   # the song this covers: fill it in before release (distributors "
                  "require it)", f"#     title: {_quote(draft.title)}", "#     artist: \"...\"",
                  "#     songwriters: [\"...\"]"]
    return "\n".join(lines) + "\n"


def midi_bytes(notes: list[DraftNote], bpm: float, time_signature: str) -> bytes:
    """The melody in quarter notes (`bpm`: quarters a minute; the draft's beats are quarters, a 6/8
    bar three of them), under the spec's time signature."""
    numerator, denominator = meter(time_signature)
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("track_name", name="melody (transcribed)", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0))
    events = []
    for note in notes:
        start = round(note.start_beat * TICKS_PER_BEAT)
        events.append((start, 1, note.pitch))
        events.append((start + max(1, round(note.length_beats * TICKS_PER_BEAT)), 0, note.pitch))
    now = 0
    for tick, on, pitch in sorted(events):  # offs before ons at one tick: a repeated note re-strikes
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=90 if on else 0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    buffer = BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def write_draft(draft: CoverDraft, out_spec: Path, *, artist_profile: Path | None, original: OriginalWork | None,
                force: bool = False) -> dict[str, Path]:
    """Write the draft's spec, lyric sheet and melody MIDI (and a copy of the reference when it
    lies outside the spec's catalogue) into out_spec's folder; returns the files written by role
    (spec, lyrics, melody, reference).

    Raises SpecError (exit 2) when a file is already there and `force` is not given.
    """
    folder = out_spec.resolve().parent
    slug = slugify(draft.title)
    catalogue = default_catalogue(out_spec)
    reference = draft.analysis.path.resolve()
    targets = {"spec": out_spec.resolve(), "lyrics": folder / f"{slug}.txt"}
    if draft.melody:
        targets["melody"] = folder / f"{slug}.mid"
    if outside_catalogue(reference, catalogue):  # a spec cannot reach outside its catalogue: bring it in
        targets["reference"] = folder / reference.name
    existing = [path for path in targets.values() if path.exists()]
    if existing and not force:
        raise SpecError([SpecProblem(str(path), None, None, "--out-spec", str(out_spec), "the file already exists",
                                     "choose another --out-spec, or pass --force to replace the draft")
                         for path in existing])
    folder.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(targets.get("reference", reference), folder)
    profile = os.path.relpath(artist_profile.resolve(), folder) if artist_profile else None
    text = spec_text(draft, reference=relative, lyrics=targets["lyrics"].name,
                     melody=targets["melody"].name if "melody" in targets else None,
                     artist_profile=profile, original=original)
    scratch = Path(tempfile.mkdtemp(prefix=".cover-", dir=folder.parent))
    try:
        staged = {role: scratch / path.name for role, path in targets.items()}
        staged["lyrics"].write_text(draft.lyrics, encoding="utf-8")
        if "melody" in staged:
            staged["melody"].write_bytes(midi_bytes(draft.melody, draft.analysis.grid.bpm,
                                                    spec_meter(draft.analysis.grid)[0]))
        if "reference" in staged:
            shutil.copyfile(reference, staged["reference"])
        staged["spec"].write_text(text, encoding="utf-8")
        _validate(staged["spec"], catalogue, reference)
        for role in ("reference", "melody", "lyrics", "spec"):  # the spec last: it never names a missing file
            if role in staged:
                fsync_file(staged[role])
                os.replace(staged[role], targets[role])
        fsync_dir(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return targets


def _validate(spec: Path, catalogue: Path, reference: Path) -> None:
    """Load and compose the staged draft as a render would; any problem is the drafter's bug."""
    try:
        compose(load_song(spec, catalogue))
    except SpecError as error:
        raise RuntimeError(f"the cover draft does not load as a song (a bug in millamusic cover, not in "
                           f"{reference.name}):\n{error}") from error
