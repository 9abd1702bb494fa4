"""A preview: one section or bar range of a song, mastered alone, into previews/<slug>/ (never a release).

    millamusic render SPEC --section "Chorus 2"     # the 2nd section named "Chorus" (or one named "Chorus 2")
    millamusic render SPEC --bars 33-48             # bars 33 to 48, 1-based, inclusive

The range gets one bar of pre-roll (none at bar 1): it is mixed and mastered with the range, so the
reverb and the compressors are in their state when the range starts, faded in from silence, and
kept in the file (the JSON beside it says where the range starts). A range that ends on the song's
last bar keeps the song's tail; any other ends on its bar line with a short fade-out.

What it reuses (docs/previews.md): the Score and the full backing are the song's own cache stages
(a backing made for a preview is the full render's backing later). The vocals are cut from the full
song's vocals when those are cached, else only the lyric lines that reach into the range are sung
(`preview_vocals`, cached per range). With the full mix cached the preview is cut from it, else the
range's stems are mixed. Mastering always measures what it gets: the range (with its pre-roll) lands
on the profile's loudness target, as the issue asks, not at the level it has inside the full master.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from millamusic import SAMPLE_RATE
from millamusic.compose import compose
from millamusic.core.audio import Audio, load_npy, load_pcm24, resample, save_npy, save_pcm24
from millamusic.core.cache import Entry, StageCache
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.core.files import atomic_write_bytes
from millamusic.dsp.loudness import measure
from millamusic.engines import load_engine
from millamusic.mastering.chain import master
from millamusic.mix import mix
from millamusic.music.score import Score
from millamusic.pipeline.render import backing_request_for, backing_stage, check_stems, compose_stage, delivery_profiles
from millamusic.pipeline.run import Progress, Run, StageReport, once_more_if_corrupt
from millamusic.pipeline.stages import (
    STAGE_VERSIONS,
    RenderOptions,
    mix_inputs,
    song_sources,
    vocals_inputs,
)
from millamusic.release.pcm import decode, write_wav
from millamusic.spec.song import Song, slugify
from millamusic.spec.yaml import parse_yaml, position, read_spec_bytes

PRE_ROLL_BARS = 1  # context for the mix's reverb and compressors, and for the ear
END_FADE_S = 0.02  # a cut on a bar line without a click
PREVIEW_FOLDER = "previews"


@dataclass(frozen=True)
class PreviewRange:
    """Which bars a preview plays: 1-based, inclusive, as a producer counts them."""

    name: str  # "Chorus 2", "bars 33-48": what the user asked for, in words
    slug: str  # the file name: "chorus-2", "bars-33-48"
    first_bar: int
    last_bar: int
    pre_roll_bars: int  # bars before `first_bar` played as context (0 at bar 1)


@dataclass(frozen=True)
class PreviewWindow:
    """A PreviewRange in frames of the song's stems (SAMPLE_RATE), from Score.beat_to_seconds."""

    start: int  # the file starts here: the pre-roll's first frame
    range_start: int  # the range itself starts here
    end: int  # exclusive
    to_song_end: bool  # the range ends on the last bar: the song's tail is kept, no fade-out

    @property
    def pre_roll(self) -> int:
        return self.range_start - self.start


@dataclass(frozen=True)
class PreviewResult:
    slug: str  # the song's
    range: PreviewRange
    wav_path: str
    json_path: str
    profile: str
    seconds_in_file: float
    range_starts_at: float  # seconds into the file
    loudness: dict  # the written WAV measured back (integrated LUFS, true peak, ...)
    stages: tuple[StageReport, ...]
    sources: dict  # "vocals" / "mix": where each came from, in words
    seconds: float  # wall time of the preview

    def to_dict(self) -> dict:
        return asdict(self)


# --- which bars -------------------------------------------------------------------------------

def preview_range(song: Song, score: Score, *, section: str | None, bars: str | None) -> PreviewRange:
    """The range `--section` or `--bars` names in `score`; SpecError (exit 2), located at the spec's
    `structure`, for a name or a range the song does not have."""
    if section is not None and bars is not None:
        raise SpecError([_problem(song, "--section/--bars", f"{section} / {bars}",
                                  "a preview plays one range: --section and --bars name two",
                                  "give --section NAME or --bars FIRST-LAST, not both")])
    if section is not None:
        return section_range(song, score, section)
    if bars is not None:
        return bars_range(song, score, bars)
    raise ValueError("preview_range: give section= or bars=")


def section_names(score: Score) -> list[str]:
    """Every section's name as --section takes it: a name used by several sections gets its
    ordinal ("Chorus 1", "Chorus 2"), a unique one stays as written."""
    counts: dict[str, int] = {}
    for s in score.sections:
        counts[_fold(s.name)] = counts.get(_fold(s.name), 0) + 1
    seen: dict[str, int] = {}
    names = []
    for s in score.sections:
        key = _fold(s.name)
        seen[key] = seen.get(key, 0) + 1
        names.append(f"{s.name} {seen[key]}" if counts[key] > 1 else s.name)
    return names


def section_range(song: Song, score: Score, asked: str) -> PreviewRange:
    """An exact name (case and spacing aside) first; then "NAME N", the Nth section named NAME."""
    sections = score.sections
    valid = ", ".join(section_names(score))
    exact = [i for i, s in enumerate(sections) if _fold(s.name) == _fold(asked)]
    if len(exact) == 1:
        return _section(score, exact[0], sections[exact[0]].name, PRE_ROLL_BARS)
    if len(exact) > 1:
        which = ", ".join(f"{sections[exact[0]].name} {n}" for n in range(1, len(exact) + 1))
        raise SpecError([_problem(song, "--section", asked, f"{len(exact)} sections are named {asked!r}",
                                  f"say which: {which}")])
    numbered = re.fullmatch(r"(.*\S)\s+(\d+)", asked.strip(), flags=re.ASCII)
    if numbered:
        base, nth = numbered.group(1), int(numbered.group(2))
        named = [i for i, s in enumerate(sections) if _fold(s.name) == _fold(base)]
        if named and 1 <= nth <= len(named):
            index = named[nth - 1]
            return _section(score, index, f"{sections[index].name} {nth}", PRE_ROLL_BARS)
        if named:
            raise SpecError([_problem(song, "--section", asked,
                                      f"the song has {len(named)} section{'s' if len(named) > 1 else ''} named "
                                      f"{sections[named[0]].name!r}", f"use one of: {valid}")])
    raise SpecError([_problem(song, "--section", asked, "the song has no section of that name",
                              f"use one of: {valid}")])


def bars_range(song: Song, score: Score, text: str) -> PreviewRange:
    """--bars FIRST-LAST (or one bar, N): 1-based and inclusive, inside the song."""
    count = len(score.bars)
    found = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text, flags=re.ASCII)  # 0-9 only, not "٣"
    if found is None:
        raise SpecError([_problem(song, "--bars", text, "not a bar range",
                                  f"give FIRST-LAST in bar numbers, e.g. --bars 1-{min(count, 8)} (the song has "
                                  f"{count} bars)")])
    first = int(found.group(1))
    last = int(found.group(2)) if found.group(2) is not None else first
    if first < 1:
        raise SpecError([_problem(song, "--bars", text, "bars are counted from 1",
                                  f"start at bar 1 or later, e.g. --bars 1-{max(last, 1)}")])
    if last < first:
        raise SpecError([_problem(song, "--bars", text, f"the range ends (bar {last}) before it starts (bar {first})",
                                  f"give the first bar first: --bars {last}-{first}")])
    if last > count:
        raise SpecError([_problem(song, "--bars", text, f"the range is outside the song, which has {count} bars",
                                  f"give bars between 1 and {count}")])
    name = f"bars {first}-{last}" if last != first else f"bar {first}"
    return PreviewRange(name, slugify(name), first, last, min(PRE_ROLL_BARS, first - 1))


def preview_window(score: Score, chosen: PreviewRange, sample_rate: int = SAMPLE_RATE) -> PreviewWindow:
    """The range and its pre-roll in frames; times come from Score.beat_to_seconds (tempo changes included)."""
    bars = score.bars

    def frame(beat: float) -> int:
        return int(round(score.beat_to_seconds(beat) * sample_rate))

    start = frame(bars[chosen.first_bar - 1 - chosen.pre_roll_bars].start_beat)
    range_start = frame(bars[chosen.first_bar - 1].start_beat)
    to_song_end = chosen.last_bar == len(bars)
    end = score.total_frames(sample_rate) if to_song_end else frame(bars[chosen.last_bar].start_beat)
    return PreviewWindow(start, range_start, end, to_song_end)


def lines_in_window(score: Score, window: PreviewWindow, sample_rate: int = SAMPLE_RATE) -> set[int]:
    """The lyric lines with a note (lead or backing part) sounding in the window."""
    start, end = window.start / sample_rate, window.end / sample_rate
    return {n.line_index for n in (*score.notes, *score.backing_notes) if score.beat_to_seconds(n.start_beat) < end
            and score.beat_to_seconds(n.start_beat + n.length_beats) > start}


def score_to_sing(score: Score, window: PreviewWindow) -> Score:
    """`score` with only the notes of the lines that sound in the window: whole lines, so each is
    phrased (and its words spoken) as in the song, then cut. Bars and length stay the song's, so the
    vocal engine's contract (full-length stems) holds."""
    lines = lines_in_window(score, window)
    return replace(score, notes=tuple(n for n in score.notes if n.line_index in lines),
                   backing_notes=tuple(n for n in score.backing_notes if n.line_index in lines))


def _section(score: Score, index: int, name: str, pre_roll: int) -> PreviewRange:
    section = score.sections[index]
    first = section.start_bar + 1  # Section.start_bar is 0-based
    return PreviewRange(name, slugify(name), first, first + section.bars - 1, min(pre_roll, first - 1))


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def _problem(song: Song, field: str, value: object, message: str, fix: str) -> SpecProblem:
    """A problem with a preview option, located at the spec's `structure` (where the bars and sections are)."""
    shown = str(song.path)
    try:
        line, column = position(parse_yaml(read_spec_bytes(Path(song.path), shown, "spec"), shown), ("structure",))
    except (SpecError, OSError):  # the spec changed or went away since it loaded: the file is still the place
        line = column = None
    return SpecProblem(shown, line, column, field, value, message, fix)


# --- the render ---------------------------------------------------------------------------------

def render_preview(song: Song, options: RenderOptions, progress: Progress | None = None, *,
                   section: str | None = None, bars: str | None = None) -> PreviewResult:
    """Render one range of `song` into OUT/previews/<slug>/<range>.wav (+ .json). Everything the
    user can get wrong (the range, the profile) is checked before the cache or OUT is touched."""
    started = time.perf_counter()
    song = song.with_vocals(options.vocals)
    chosen = preview_range(song, compose(song), section=section, bars=bars)  # composing takes milliseconds
    profile = _profile(song, options)
    engines = (load_engine("backing", options.backing or song.spec.engines.backing),
               load_engine("vocals", song.vocal_engine))
    say = progress or (lambda *_: None)
    cache = StageCache(options.cache_dir)
    with cache.in_use():  # `cache gc --delete` deletes nothing while a render holds this (core.cache)
        return once_more_if_corrupt(cache, song.path, say, lambda: _render(
            Run(song, options, cache, say, song_sources(song)), chosen, profile, engines, started))


def _render(run: Run, chosen: PreviewRange, profile, engines: tuple, started: float) -> PreviewResult:
    song, options, cache = run.song, run.options, run.cache
    backing_engine, vocal_engine = engines
    score = compose_stage(run)
    window = preview_window(score, chosen)
    request = backing_request_for(song, options)
    vocal_request, full_vocal_inputs = vocals_inputs(song, score, vocal_engine, cache.root / "phrases")
    # the backing beside the range's vocals, as a render runs it beside the song's: two cores busy
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="millamusic-beside") as beside:
        backing_job = beside.submit(backing_stage, run, score, backing_engine, request,
                                    backing_engine.describe(request))
        full_vocals = _cached(run, "vocals", full_vocal_inputs)
        sung = None if full_vocals is not None else _preview_vocals(run, score, window, vocal_engine, vocal_request,
                                                                    full_vocal_inputs, chosen.slug)
        backing = backing_job.result()
    full_mix = None
    if full_vocals is not None:
        full_mix = _cached(run, "mix", mix_inputs(backing.content_hash, full_vocals.content_hash, options.mix))
    if full_mix is not None:
        source = {"mix": full_mix.content_hash}
        sources = {"vocals": "the full song's (cached)", "mix": "cut from the full song's mix (cached)"}
    elif full_vocals is not None:
        source = {"backing": backing.content_hash, "vocals": full_vocals.content_hash}
        sources = {"vocals": "cut from the full song's vocals (cached)", "mix": "the range's stems mixed"}
    else:
        source = {"backing": backing.content_hash, "preview_vocals": sung.content_hash}
        lines = json.loads((sung.path / "vocals.json").read_text())["lines"]
        sources = {"vocals": f"sung for the range ({lines} lyric line{'s' if lines != 1 else ''})",
                   "mix": "the range's stems mixed"}
    mastered = _preview_master(run, source, window, profile, chosen.slug)

    folder = Path(options.out_root) / PREVIEW_FOLDER / song.slug
    wav = folder / f"{chosen.slug}.wav"
    write_wav(load_npy(mastered.verified("preview.npy")), wav, bit_depth=profile.bit_depth)
    loudness = measure(decode(wav)).to_dict()  # what the file holds, after quantising
    result = PreviewResult(song.slug, chosen, str(wav), str(wav.with_suffix(".json")), profile.name,
                           round((window.end - window.start) / SAMPLE_RATE, 3),
                           round(window.pre_roll / SAMPLE_RATE, 3), loudness, tuple(run.in_order()), sources,
                           time.perf_counter() - started)
    atomic_write_bytes(wav.with_suffix(".json"), json.dumps(_record(song, score, result, window, profile),
                                                            indent=1).encode())
    return result


def _profile(song: Song, options: RenderOptions):
    """One delivery profile: --profile NAME, else the spec's first (said in the JSON and on the terminal)."""
    names = options.profiles or tuple(song.spec.master.profiles)
    profiles = delivery_profiles(names)
    if options.profiles and len(profiles) > 1:
        raise SpecError([SpecProblem("--profile", None, None, "profile", ", ".join(names),
                                     "a preview is mastered for one delivery profile",
                                     f"name one: --profile {names[0]}")])
    return profiles[0]


def _cached(run: Run, stage: str, inputs: dict) -> Entry | None:
    """The full song's entry of `stage` if a render left it in the cache: a preview never makes one."""
    entry = None if run.options.force else run.cache.lookup(stage, {"version": STAGE_VERSIONS[stage], **inputs})
    if entry is not None:
        run.entries[stage] = entry
        run.reports.append(StageReport(stage, True, 0.0, ""))
        run.progress(stage, "cached (the full song's)")
    return entry


def _preview_vocals(run: Run, score: Score, window: PreviewWindow, engine, request, full_inputs: dict,
                    variant: str) -> Entry:
    """Sing only the lines that sound in the window (a score with the other notes taken out, so
    the engine's contract - full-length stems - holds), and keep the window of each stem."""
    sung = score_to_sing(score, window)
    lines = lines_in_window(score, window)

    def produce(folder: Path) -> None:
        names: list[str] = []
        details: dict = {}
        if sung.notes or sung.backing_notes:  # an instrumental range sings nothing: no vocal stems at all
            result = engine.render(sung, request)
            check_stems(result.stems, score, f"vocal engine {engine.info.name!r}")
            for name, audio in result.stems.items():
                save_pcm24(Audio(np.ascontiguousarray(audio.samples[:, window.start:window.end]),
                                 audio.sample_rate), folder / f"{name}.flac")
            names, details = sorted(result.stems), result.details
        (folder / "vocals.json").write_text(json.dumps({
            "stems": names, "notes": len(sung.notes), "backing_notes": len(sung.backing_notes), "lines": len(lines),
            "engine": asdict(engine.describe(request)), "details": details}, indent=1, default=str))

    inputs = {**full_inputs, "window": [window.start, window.end]}
    return run.stage("preview_vocals", inputs, produce, variant=variant)


def _preview_master(run: Run, source: dict, window: PreviewWindow, profile, variant: str) -> Entry:
    """Mix the window (or cut it from the full mix), fade the pre-roll in, master it to `profile`."""
    options = run.options

    def produce(folder: Path) -> None:
        if "mix" in source:
            mixed = _cut(load_npy(run.entries["mix"].verified("mix.npy")), window)
            mix_report = json.loads((run.entries["mix"].path / "mix.json").read_text())
        else:
            stems = {**_stems(run.entries["backing"], "backing.json", window),
                     **(_stems(run.entries["vocals"], "vocals.json", window) if "vocals" in source
                        else _stems(run.entries[f"preview_vocals[{variant}]"], "vocals.json", None))}
            mixed, report = mix(stems, options.mix)
            mix_report = report.to_dict()
        faded = Audio(_fade(mixed.samples.copy(), window), mixed.sample_rate)
        # master at the delivery rate, as a release is: resampling after the limiter would bring back peaks
        mastered, loudness = master(resample(faded, profile.sample_rate), profile, options.mastering)
        save_npy(mastered, folder / "preview.npy")
        (folder / "loudness.json").write_text(json.dumps({"target": profile.to_dict(), **loudness.to_dict(),
                                                          "mix": mix_report}, indent=1))

    inputs = {"source": source, "window": [window.start, window.range_start, window.end, window.to_song_end],
              "settings": options.mix.key(), "profile": profile.to_dict(), "chain": options.mastering.key(),
              "fades": {"end_s": END_FADE_S}}
    return run.stage("preview", inputs, produce, variant=variant)


def _stems(entry: Entry, listing: str, window: PreviewWindow | None) -> dict[str, Audio]:
    """The stems of a cache entry, cut to `window` (None: already the window's length)."""
    return {name: _cut(load_pcm24(flac()), window) for name, flac in Run.stem_files(entry, listing).items()}


def _cut(audio: Audio, window: PreviewWindow | None) -> Audio:
    if window is None:
        return audio
    return Audio(np.ascontiguousarray(audio.samples[:, window.start:window.end]), audio.sample_rate)


def _fade(samples: np.ndarray, window: PreviewWindow) -> np.ndarray:
    """Raised-cosine fade in over the pre-roll; a short fade out where the range stops mid-song (in place)."""
    n = window.pre_roll
    if n > 0:
        samples[:, :n] *= (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    if not window.to_song_end:
        m = min(int(END_FADE_S * SAMPLE_RATE), samples.shape[1] // 2)
        samples[:, samples.shape[1] - m:] *= np.linspace(1.0, 0.0, m, dtype=np.float32)
    return samples


def _record(song: Song, score: Score, result: PreviewResult, window: PreviewWindow, profile) -> dict:
    """The JSON beside the preview: what it plays, how it was made, how loud it is, and that it is no release."""
    chosen = result.range
    return {
        "preview": chosen.name, "title": song.spec.title, "spec": str(song.path), "file": Path(result.wav_path).name,
        "bars": {"first": chosen.first_bar, "last": chosen.last_bar, "pre_roll": chosen.pre_roll_bars},
        "seconds": {"file": result.seconds_in_file, "range_starts_at": result.range_starts_at,
                    "range": round((window.end - window.range_start) / SAMPLE_RATE, 3),
                    "song_from": round(window.start / SAMPLE_RATE, 3), "song_to": round(window.end / SAMPLE_RATE, 3),
                    "includes_song_tail": window.to_song_end},
        "fades": {"in": "raised cosine over the pre-roll" if window.pre_roll else None,
                  "out_s": None if window.to_song_end else END_FADE_S},
        "profile": profile.to_dict(), "loudness": result.loudness,
        "mastered": "alone: the preview's own loudness is the profile's target (inside the full master the same "
                    "bars may be louder or quieter)",
        "sources": result.sources,
        "stages": [asdict(report) for report in result.stages], "render_seconds": round(result.seconds, 2),
        "release": False, "signed": False,
        "not_a_release": "a preview for listening: no tags, no Content Credentials, no release record; "
                         "`millamusic render SPEC` makes the release",
        "song_bars": len(score.bars),
    }
