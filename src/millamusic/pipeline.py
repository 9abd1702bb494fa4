"""One song through every stage: compose -> backing + vocals -> stems, mix -> master -> export.

Each stage reads typed values, declares its inputs to the stage cache, and writes its
outputs into a cache entry. `publish` then copies the entries into the catalogue folders
(`masters/`, `stems/`, `lyrics/`): each song's masters folder is built aside and swapped in
whole, so it is always one complete release, never a mix of two.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Callable

from millamusic import SAMPLE_RATE, __version__
from millamusic.audio import Audio, load_npy, save_npy
from millamusic.cache import CorruptEntry, Entry, StageCache, sha256_file
from millamusic.errors import ExportError, MillaError, RenderError, disk_fault, is_disk_fault
from millamusic.score import Score
from millamusic.spec import Song

# Bump a stage's version when its code changes what it writes: old entries stop matching.
STAGE_VERSIONS = {"compose": "1", "backing": "1", "vocals": "1", "stems": "1", "mix": "1", "master": "2",
                  "lyrics": "1", "export": "2"}
STAGES = tuple(STAGE_VERSIONS)


@dataclass(frozen=True)
class RenderOptions:
    out_root: Path
    cache_dir: Path
    force: bool = False
    backing: str | None = None  # engine overrides from the CLI
    vocals: str | None = None
    profiles: tuple[str, ...] | None = None  # delivery profiles (millamusic.profiles), overriding the spec
    soundfont: Path | None = None  # the arranger plays its parts with this .sf2 (through FluidSynth)
    model: str | None = None  # the backing engine's checkpoint (MusicGen: hub id or folder), overriding the spec
    device: str | None = None  # where a neural backing engine runs (auto, cpu, cuda, mps), overriding the spec
    acknowledge_noncommercial: bool = False  # release with a non-commercial model on purpose (licence guard)


@dataclass(frozen=True)
class StageReport:
    name: str
    cached: bool
    seconds: float
    why: str  # why it ran ("" when cached)


@dataclass(frozen=True)
class RenderResult:
    slug: str
    stages: tuple[StageReport, ...]
    loudness: dict  # profile name -> the master's loudness report (target, LUFS, dBTP, LRA)
    files: dict[str, str]  # role ("spotify:wav", "lyrics:lrc", "stem:drums", ...) -> path of the published file
    release_path: str
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[str, str], None]  # (stage, "start" | "done: ...") for the CLI's display


@dataclass
class _Run:
    song: Song
    options: RenderOptions
    cache: StageCache
    progress: Progress
    sources: dict = field(default_factory=dict)  # the song's files, remembered with each stage (status.song_sources)
    reports: list[StageReport] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)

    def all_stems(self) -> "_StemFiles":
        return _StemFiles({**self._stem_files(self.entries["backing"], "backing.json"),
                           **self._stem_files(self.entries["vocals"], "vocals.json")})

    @staticmethod
    def _stem_files(entry: Entry, listing: str) -> dict[str, Callable[[], Path]]:
        names = json.loads((entry.path / listing).read_text())["stems"]
        return {name: lambda name=name: entry.verified(f"{name}.npy") for name in names}

    def in_order(self) -> list[StageReport]:
        """The stage reports in the order of a serial render (stages side by side finish in any order)."""
        rank = {"compose": 0, "backing": 1, "vocals": 2, "stems": 3}  # the rest run one after another
        return sorted(self.reports, key=lambda report: rank.get(report.name, 4))

    def stage(self, name: str, inputs: dict, produce: Callable[[Path], None], *, variant: str | None = None) -> Entry:
        """Run (or reuse) one stage. A `variant` (a delivery profile) is a separate run of the same
        stage: it is reported as "name[variant]" and remembered apart for "why did it re-run"."""
        label = self.song.slug if variant is None else f"{self.song.slug}.{variant}"
        shown = name if variant is None else f"{name}[{variant}]"
        self.progress(shown, "start")
        started = time.perf_counter()
        from millamusic.status import explain

        inputs = {"version": STAGE_VERSIONS[name], **inputs}
        try:
            entry = self.cache.run(name, inputs, produce, force=self.options.force, label=label, context=self.sources,
                                   explain=lambda previous: explain(name, previous, inputs, self.sources))
        except (MillaError, CorruptEntry):
            raise  # already says what is wrong and maps to its own exit code (a SpecError stays 2); see render
        except Exception as error:  # a bug or a library failure inside a stage: say which stage
            if isinstance(error, OSError) and is_disk_fault(error):  # the machine, not the song: say what to do
                where = self.cache.root.resolve()
                raise RenderError(f"stage {name!r} failed for {self.song.path}: " + disk_fault(
                    error, f"its cache entry in {where / name}", where,
                    "Nothing was published and no half entry was kept; the stages before it stay cached."
                )) from error
            raise RenderError(f"stage {name!r} failed for {self.song.path}: {type(error).__name__}: {error}"
                              + _low_disk_hint(self.cache.root)) from error
        report = StageReport(shown, entry.hit, time.perf_counter() - started, entry.why)
        self.reports.append(report)
        self.entries[shown] = entry
        self.progress(shown, "cached" if entry.hit else f"done ({entry.why})")
        return entry


class _StemFiles(Mapping):
    """Stems read from their cache entries when asked for, one at a time and not kept: the mix and
    the stems' WAVs (side by side) go through them stem by stem, so each holds one at a time
    instead of all of them (a 3-minute stem is 70 MB; a song has up to a dozen)."""

    def __init__(self, paths: dict[str, Callable[[], Path]]):
        self._paths = paths  # name -> the verified .npy path (Entry.verified)

    def __getitem__(self, name: str) -> Audio:
        return load_npy(self._paths[name]())

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


LOW_DISK_BYTES = 256 << 20  # less free than this where the cache lies: about one long song's stems


def _low_disk_hint(folder: Path) -> str:
    """Libraries that do not say "disk full" (libsndfile, LAME) fail with their own words: when the
    disk is nearly full, say so beside them."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free >= LOW_DISK_BYTES:
        return ""
    return (f" (the disk that holds {folder} has only {free >> 20} MiB free: if the stage was writing, a full disk "
            "is the likely cause. Fix: free space there, then run the same command again)")


@dataclass(frozen=True)
class MixResult:
    """Where a song stands after its mix (album builds master all tracks' mixes together)."""
    slug: str
    mix_hash: str  # content hash of the mix cache entry
    mix_path: str  # the entry's mix.npy
    stages: tuple[StageReport, ...]


def render(song: Song, options: RenderOptions, progress: Progress | None = None, *,
           until: str | None = None, album_masters: dict | None = None,
           earlier: tuple[StageReport, ...] = ()) -> RenderResult | MixResult | tuple[StageReport, ...]:
    """Render `song` through every stage and publish it.

    `until="backing"` stops after the backing (its stage reports): a cluster build runs that part
    on a GPU worker, the rest on a CPU worker, which then finds it in the shared cache.
    Album builds call it twice per track in album-loudness mode: `until="mix"` stops after the
    mix (a MixResult); then, with `album_masters` (profile name -> the cache Entry of this
    track's master made by `master.master_album`), every stage up to the mix is a cache hit and
    the album's master replaces the track's own. `earlier` (the first call's stage reports) then
    stands in for those hits in the result and in release.json, so they say what really ran.
    """
    if until not in (None, "backing", "mix"):
        raise ValueError(f"render(until={until!r}): stop after 'backing' or 'mix', or None for everything")
    started = time.perf_counter()
    cache = StageCache(options.cache_dir)
    try:
        return _render(song, options, progress, cache, started, until, album_masters, earlier)
    except CorruptEntry as corrupt:  # a file a stage (or publish) read failed its checksum
        first = corrupt
    # Move the damaged entry aside and start over: the stages before it are cache hits, it is
    # recomputed (saying why), and nothing was published from it.
    cache.retire(first.entry, first.problem)
    if progress is not None:
        progress(first.entry.stage, f"cache entry corrupt: {first.problem}; moved aside, rendering again")
    try:
        return _render(song, options, progress, cache, started, until, album_masters, earlier)
    except CorruptEntry as again:
        cache.retire(again.entry, again.problem)
        raise RenderError(f"{song.path}: {again} (after recomputing {first.entry.stage}); it was moved aside: "
                          "run the same command again") from again


def _render(song: Song, options: RenderOptions, progress: Progress | None, cache: StageCache, started: float,
            until: str | None, album_masters: dict | None,
            earlier: tuple[StageReport, ...]) -> RenderResult | MixResult | tuple[StageReport, ...]:
    from millamusic.engines import load_engine

    if options.vocals:  # the engine decides the range the composer writes in (kokoro: its clean range)
        song = replace(song, vocals_override=options.vocals)
    spec = song.spec
    backing_engine = load_engine("backing", options.backing or spec.engines.backing)
    vocal_engine = load_engine("vocals", song.vocal_engine)
    profiles = delivery_profiles(options.profiles or tuple(spec.master.profiles))
    done_before = {report.name for report in earlier}
    say = progress or (lambda *_: None)
    from millamusic.status import song_sources

    run = _Run(song, options, cache,
               lambda stage, state: None if stage in done_before else say(stage, state), song_sources(song))

    backing_request = backing_request_for(song, options)
    backing_info = backing_engine.describe(backing_request)  # the checkpoint, before minutes of rendering
    guard_licences(song, [backing_info, vocal_engine.info], options.acknowledge_noncommercial)
    score = _compose(run)
    by_name = {report.name: report for report in earlier}
    if until == "backing":
        _backing(run, score, backing_engine, backing_request, backing_info)
        return tuple(by_name.get(report.name, report) for report in run.reports)
    # Stages that do not read each other run side by side: the backing beside the vocals, then the
    # stems' WAVs beside the mix, master and export. Each engine alone leaves one of two cores idle
    # much of the time (docs/performance.md).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="millamusic-beside") as beside:
        backing_job = beside.submit(_backing, run, score, backing_engine, backing_request, backing_info)
        vocals = _vocals(run, score, vocal_engine)
        backing = backing_job.result()
        stems_job = beside.submit(_stems, run, score, backing, vocals)
        mixed = _mix(run, backing, vocals)
        if until == "mix":
            stems_job.result()
            mixed.verified("mix.npy")  # the album master reads it next, outside this render
            return MixResult(song.slug, mixed.content_hash, str(mixed.path / "mix.npy"),
                             tuple(by_name.get(report.name, report) for report in run.in_order()))
        vocals_info = engine_used(vocals, "vocals.json")
        credits = credits_for(song, score, backing_info, backing, vocals_info)
        lines = timed_lyrics(score, vocals)
        seconds = score.total_frames(SAMPLE_RATE) / SAMPLE_RATE  # every stem, the mix and the masters are this long
        lyrics_entry = _lyrics(run, score, lines, seconds)
        tags = release_tags(song, score, credits, lines)
        deliveries = {}
        for profile in profiles:
            if album_masters is not None:
                master_entry = album_masters[profile.name]
                run.entries[f"master[{profile.name}]"] = master_entry
            else:
                master_entry = _master(run, mixed, profile)
            deliveries[profile.name] = (profile, master_entry, _export(run, master_entry, tags, profile))
        stems_job.result()
    run.reports = [by_name.get(report.name, report) for report in run.in_order()]
    files, loudness = publish(run, deliveries, lyrics_entry, credits, tags, backing_info, vocals_info, seconds)
    return RenderResult(song.slug, tuple(run.reports), loudness, files, files["release"],
                        time.perf_counter() - started)


def delivery_profiles(names) -> list:
    """The DeliveryProfiles for `names` (from the spec or the CLI's --profile); SpecError (exit 2)
    naming the valid ones otherwise."""
    from millamusic.errors import SpecError, SpecProblem
    from millamusic.profiles import PROFILES, profile_choices, profile_names_problem

    names = list(names)
    problem = profile_names_problem(names)
    if problem:
        raise SpecError([SpecProblem("--profile", None, None, "profile", ", ".join(names), problem,
                                     f"use one or more of: {profile_choices()}")])
    return [PROFILES[name] for name in names]


# --- stages ---------------------------------------------------------------------------------

# Each stage's cache inputs come from one function, shared by render and `millamusic status`.

def compose_inputs(song: Song) -> dict:
    from millamusic.compose import COMPOSER_VERSION

    spec = song.spec
    return {
        "composer": COMPOSER_VERSION,
        "spec": spec.model_dump(include={"title", "tempo", "key", "time_signature", "seed", "structure"}),
        "language": song.language, "voice_range": song.voice_range,
        "lyrics": [[block.header, [line.text for line in block.lines]] for block in song.lyric_blocks],
        "melody": song.input_hashes.get("melody"),
    }


def _compose(run: _Run) -> Score:
    from millamusic.compose import compose

    entry = run.stage("compose", compose_inputs(run.song),
                      lambda folder: (folder / "score.json").write_text(compose(run.song).to_json()))
    return Score.from_json((entry.path / "score.json").read_text())


def guard_licences(song: Song, infos: list, acknowledged: bool) -> None:
    """Refuse a commercial release made with a model whose licence forbids (or does not grant) that.

    MusicGen's published weights are CC-BY-NC 4.0. The spec's `release.commercial` (default true:
    streaming releases earn money) and an explicit acknowledgement decide, never a silent default.
    """
    from millamusic.credits import licence_allows_commercial
    from millamusic.errors import SpecError, SpecProblem

    release = song.spec.release
    if not release.commercial or acknowledged or release.acknowledge_noncommercial:
        return
    for info in infos:
        if not licence_allows_commercial(info.licence):
            what = "is unknown" if info.licence == "unknown" else f"is {info.licence}, which does not allow commercial use"
            raise SpecError([SpecProblem(
                str(song.path), None, None, "release.commercial", True,
                f"the {info.kind} model {info.model} ({info.name}) licence {what}",
                "use a model licensed for commercial use (or the embedded engine), set `release.commercial: false`, "
                "or acknowledge it: `release.acknowledge_noncommercial: true` / --acknowledge-noncommercial "
                "(recorded in release.json)")])


def backing_request_for(song: Song, options: RenderOptions):
    from millamusic.engines import option_problems
    from millamusic.engines.base import BackingRequest
    from millamusic.errors import SpecError, SpecProblem

    spec = song.spec
    engine = options.backing or spec.engines.backing
    # The spec's backing_options are written for the spec's engine: another one from --backing starts clean.
    engine_options = dict(spec.engines.backing_options) if engine == spec.engines.backing else {}
    soundfont = options.soundfont or song.soundfont_path
    if soundfont is not None:
        engine_options["soundfont"] = str(Path(soundfont).resolve())
    for name in ("model", "device"):  # command-line values, checked like the spec's
        value = getattr(options, name)
        if value is None:
            continue
        engine_options[name] = value
        bad = [SpecProblem(f"--{name}", None, None, name, value, f"backing engine {engine!r}: {message}",
                           f"{fix} (or pick another engine with --backing)")
               for key, message, fix in option_problems(engine, {name: value}) if key == name]
        if bad:
            raise SpecError(bad)
    reference = str(song.reference_path) if song.reference_path else None
    return BackingRequest(seed=spec.seed, genre=spec.genre, style=tuple(spec.style), sample_rate=SAMPLE_RATE,
                          options=engine_options, reference=reference)


def backing_inputs(song: Song, options: RenderOptions, score: Score, request, info) -> dict:
    keyed = asdict(request)  # the cache key holds files' content, not where they lie
    soundfont = request.options.get("soundfont")
    if soundfont is not None:
        keyed["options"]["soundfont"] = (sha256_file(Path(soundfont)) if options.soundfont
                                         else song.input_hashes["soundfont"])  # hashed when the spec loaded
    engine_key = asdict(info)
    if info.weights_hash is not None:  # the model is named by its content, not by the folder it lies in
        keyed["options"].pop("model", None)
        engine_key["model"] = None
    keyed["options"].pop("device", None)  # where it ran is recorded, but a render from any device will do
    keyed["reference"] = song.input_hashes.get("reference")
    return {"engine": engine_key, "harmony": score.harmony_dict(), "request": keyed}


def _backing(run: _Run, score: Score, engine, request, info) -> Entry:
    inputs = backing_inputs(run.song, run.options, score, request, info)

    def produce(folder: Path) -> None:
        result = engine.render(score, request)
        _check_stems(result.stems, score, f"backing engine {engine.info.name!r}")
        for name, audio in result.stems.items():
            save_npy(audio, folder / f"{name}.npy")
        (folder / "backing.mid").write_bytes(result.midi)
        (folder / "backing.json").write_text(json.dumps({"stems": sorted(result.stems), "prompt": result.prompt,
                                                         "details": result.details}, indent=1, default=str))

    entry = run.stage("backing", inputs, produce)
    for warning in json.loads((entry.path / "backing.json").read_text())["details"].get("warnings", []):
        run.progress("backing", f"warning: {warning}")  # shown again on a cached run: it is still true
    return entry


def vocals_inputs(song: Song, score: Score, engine, reuse_dir: Path | None = None) -> tuple:
    """(the VocalRequest, the vocals stage's cache inputs). `reuse_dir`: where an engine may keep
    reusable work (kokoro: its phrases), shared by every song rendered with this stage cache."""
    from millamusic.engines.base import VocalRequest

    request = VocalRequest(seed=song.spec.seed, language=song.language, voice=song.voice,
                           sample_rate=SAMPLE_RATE, options=song.vocal_options, reuse_dir=reuse_dir)
    sung = {"tempo": score.tempo_bpm, "total_seconds": score.total_seconds,
            "notes": [asdict(n) for n in score.notes], "words": [asdict(w) for w in score.words],
            "lines": [asdict(line) for line in score.lines],
            "sections": [[s.name, s.kind] for s in score.sections], "key": score.key}
    keyed = asdict(request)  # the cache key holds the voice model's content, not where it lies
    del keyed["reuse_dir"]  # where reusable work is kept is not what is sung
    for option in ("piper_model", "kokoro_pack"):
        if isinstance(keyed["options"].get(option), str) and song.artist is not None:
            keyed["options"][option] = song.artist.sha256  # profile + model/pack file, hashed when it loaded
    return request, {"engine": asdict(engine.describe(request)), "score": sung, "request": keyed}


def _vocals(run: _Run, score: Score, engine) -> Entry:
    request, inputs = vocals_inputs(run.song, score, engine, run.cache.root / "phrases")

    def produce(folder: Path) -> None:
        result = engine.render(score, request)
        _check_stems(result.stems, score, f"vocal engine {engine.info.name!r}")
        for name, audio in result.stems.items():
            save_npy(audio, folder / f"{name}.npy")
        info = asdict(result.engine_info or engine.info)
        (folder / "vocals.json").write_text(json.dumps({"stems": sorted(result.stems), "engine": info,
                                                        "syllables": [asdict(s) for s in result.syllables],
                                                        "details": result.details}, indent=1, default=str))

    entry = run.stage("vocals", inputs, produce)
    for warning in json.loads((entry.path / "vocals.json").read_text())["details"].get("warnings", []):
        run.progress("vocals", f"warning: {warning}")  # shown again on a cached run: it is still true
    return entry


def _check_stems(stems: dict[str, Audio], score: Score, who: str) -> None:
    """The engine contract, checked at the boundary: stereo, project rate, the score's length."""
    import numpy as np

    frames = score.total_frames(SAMPLE_RATE)
    for name, audio in stems.items():
        if audio.sample_rate != SAMPLE_RATE or audio.frames != frames or audio.channels != 2:
            raise RenderError(f"{who} returned stem {name!r} as {audio.channels} ch, {audio.frames} frames at "
                              f"{audio.sample_rate} Hz; the contract is 2 ch, {frames} frames at {SAMPLE_RATE} Hz")
        if not np.all(np.isfinite(audio.samples)):
            raise RenderError(f"{who} returned stem {name!r} with NaN or infinite samples")


def stems_inputs(backing_hash: str, vocals_hash: str, score_hash: str, slug: str) -> dict:
    return {"backing": backing_hash, "vocals": vocals_hash, "score": score_hash, "slug": slug}  # slug: <slug>.mid


def _stems(run: _Run, score: Score, backing: Entry, vocals: Entry) -> Entry:
    from millamusic.export import write_wav

    inputs = stems_inputs(backing.content_hash, vocals.content_hash, run.entries["compose"].content_hash, run.song.slug)

    def produce(folder: Path) -> None:
        # After a lyric edit only the vocals change: the backing's WAVs of this song's last stems
        # entry are the same bytes (the same backing entry, the same writer), so they are linked,
        # not written again.
        earlier = _earlier_stems(run, backing.content_hash)
        backing_names = set(json.loads((backing.path / "backing.json").read_text())["stems"])
        stems = run.all_stems()
        for name in stems:
            wav = f"{name}.wav"
            if earlier is not None and name in backing_names and wav in earlier.files:
                try:
                    os.link(earlier.verified(wav), folder / wav)
                    continue
                except OSError:  # no hard links here (another file system, a FAT disk): write it
                    pass
            write_wav(stems[name], folder / wav, bit_depth=24)
        (folder / f"{run.song.slug}.mid").write_bytes(_midi_with_vocal(backing.verified("backing.mid"), score))

    return run.stage("stems", inputs, produce)


def _earlier_stems(run: _Run, backing_hash: str) -> Entry | None:
    """This song's previous stems entry, if it was made from the same backing by this stage version."""
    previous = run.cache.previous("stems", run.song.slug)
    inputs = (previous or {}).get("inputs") or {}
    if inputs.get("backing") != backing_hash or inputs.get("version") != STAGE_VERSIONS["stems"]:
        return None
    return run.cache.lookup("stems", inputs)


def _midi_with_vocal(backing_midi: Path, score: Score) -> bytes:
    """The backing's multitrack MIDI plus the sung melody with a lyric event on each syllable's
    note. As in karaoke files, a syllable that continues its word ends in '-' ("spin-", "ning");
    melisma notes carry no lyric."""
    import mido

    data = backing_midi.read_bytes()
    midi = (mido.MidiFile(file=io.BytesIO(data), charset="utf-8") if data  # lyric events in any script
            else mido.MidiFile(type=1, ticks_per_beat=480, charset="utf-8"))
    per_beat = midi.ticks_per_beat
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


def mix_inputs(backing_hash: str, vocals_hash: str) -> dict:
    from millamusic.mix import MIX_VERSION, STEM_SETTINGS

    return {"backing": backing_hash, "vocals": vocals_hash, "mix": MIX_VERSION,
            "settings": {name: asdict(s) for name, s in STEM_SETTINGS.items()}}


def _mix(run: _Run, backing: Entry, vocals: Entry) -> Entry:
    from millamusic.mix import mix

    inputs = mix_inputs(backing.content_hash, vocals.content_hash)

    def produce(folder: Path) -> None:
        mixed, report = mix(run.all_stems())
        save_npy(mixed, folder / "mix.npy")
        (folder / "mix.json").write_text(json.dumps(report.to_dict(), indent=1))

    return run.stage("mix", inputs, produce)


def master_inputs(mix_hash: str, profile) -> dict:
    return {"mix": mix_hash, "profile": profile.to_dict()}


def _master(run: _Run, mixed: Entry, profile) -> Entry:
    from millamusic.audio import resample
    from millamusic.master import master

    inputs = master_inputs(mixed.content_hash, profile)

    def produce(folder: Path) -> None:
        # master at the delivery rate: resampling after the limiter would bring back inter-sample peaks
        mastered, report = master(resample(load_npy(mixed.verified("mix.npy")), profile.sample_rate), profile)
        save_npy(mastered, folder / "master.npy")
        (folder / "loudness.json").write_text(json.dumps({"target": profile.to_dict(), **report.to_dict()}, indent=1))

    return run.stage("master", inputs, produce, variant=profile.name)


def engine_used(entry: Entry, record: str):
    """The EngineInfo an engine reported for this render (a Piper voice, say), from its cache record."""
    from millamusic.engines.base import EngineInfo

    return EngineInfo(**json.loads((entry.path / record).read_text())["engine"])


def credits_for(song: Song, score: Score, backing_info, backing: Entry, vocals_info):
    from millamusic.credits import song_credits

    prompt = json.loads((backing.path / "backing.json").read_text())["prompt"]
    spec = song.spec
    return song_credits(artist=spec.artist, lyricist=spec.release.lyricist,
                        melody_from_midi=score.melody_source.startswith("midi:"), composer=spec.release.composer,
                        seed=spec.seed, backing=backing_info, backing_prompt=prompt, vocals=vocals_info)


def timed_lyrics(score: Score, vocals: Entry) -> list:
    """Each lyric line with its words, timed from the syllables as actually sung.

    A word runs from its first syllable's first sound to its last syllable's end, cut
    where the next word begins (the next word's consonants are sung before its beat).
    """
    from millamusic.export import TimedLine, TimedWord

    sung = json.loads((vocals.path / "vocals.json").read_text())["syllables"]
    spans: dict[int, list[float]] = {}  # word index -> [start, end]
    for syllable in sorted(sung, key=lambda s: s["start_seconds"]):
        word = score.notes[syllable["note_index"]].word_index
        span = spans.setdefault(word, [syllable["start_seconds"], syllable["end_seconds"]])
        span[1] = max(span[1], syllable["end_seconds"])
    order = sorted(spans, key=lambda w: spans[w][0])
    for this, following in zip(order, order[1:]):
        spans[this][1] = min(spans[this][1], spans[following][0])
    lines = []
    for line_index, line in enumerate(score.lines):
        words = [TimedWord(score.words[w].text, round(spans[w][0], 3), round(spans[w][1], 3))
                 for w in order if score.words[w].line_index == line_index]
        if words:
            lines.append(TimedLine(line.text, words[0].start, words[-1].end, tuple(words),
                                   score.sections[line.section_index].name))
    return lines


# ISO 639-2 codes for ID3 lyrics frames, from the espeak language's first part
_ISO_639_2 = {"en": "eng", "fi": "fin", "sv": "swe", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld",
              "no": "nor", "nb": "nob", "da": "dan", "et": "est", "pt": "por", "ja": "jpn", "ru": "rus", "pl": "pol"}


def _bcp47(language: str) -> str:
    """espeak 'en-us' -> BCP-47 'en-US' (TTML's xml:lang)."""
    parts = language.split("-")
    return "-".join([parts[0].lower()] + [p.upper() if len(p) == 2 else p for p in parts[1:]])


def release_tags(song: Song, score: Score, credits, lines):
    """The tags every delivery file of this song carries (the same for every profile)."""
    from millamusic.credits import contains_ai, credits_json, digital_source_type, disclosure
    from millamusic.export import ReleaseTags, lrc_text, sylt_words, validate_cover

    spec, release = song.spec, song.spec.release
    cover = validate_cover(song.artwork_path) if song.artwork_path else (None, None)
    return ReleaseTags(
        title=spec.title, artist=spec.artist, album=release.album, album_artist=release.album_artist or spec.artist,
        track_number=release.track, track_total=release.track_total, disc_number=release.disc,
        year=release.year, genre=spec.genre.capitalize(), isrc=release.isrc, upc=release.upc,
        composer=release.composer, lyricist=release.lyricist, copyright=release.copyright, label=release.label,
        producer=release.producer, cover_image=cover[0], cover_mime=cover[1],
        lyrics_text="\n".join(line.text for line in score.lines), synced_words=sylt_words(lines),
        synced_lrc=lrc_text(lines, title=spec.title, artist=spec.artist, album=release.album, words=False),
        lyrics_language=_ISO_639_2.get(song.language.split("-")[0], "und"),
        disclosure=disclosure(spec.artist, credits, song.disclosure), contains_ai=contains_ai(credits),
        digital_source_type=digital_source_type(credits), ai_credits_json=credits_json(credits),
    )


def _tag_inputs(tags) -> dict:
    """The tags as cache inputs: the cover by its hash, not its bytes."""
    inputs = {k: v for k, v in asdict(tags).items() if k != "cover_image"}
    inputs["cover_sha256"] = hashlib.sha256(tags.cover_image).hexdigest() if tags.cover_image else None
    return inputs


def lyrics_inputs(song: Song, lines: list, seconds: float) -> dict:
    spec = song.spec
    return {"lines": [asdict(line) for line in lines], "title": spec.title, "artist": spec.artist,
            "album": spec.release.album, "language": song.language, "seconds": round(seconds, 3), "slug": song.slug}


def _lyrics(run: _Run, score: Score, lines: list, seconds: float) -> Entry:
    """lyrics/<slug>.lrc (enhanced, word by word) and .ttml from the sung timing, and plain text."""
    from millamusic.export import write_lrc, write_ttml

    song, spec = run.song, run.song.spec
    inputs = lyrics_inputs(song, lines, seconds)

    def produce(folder: Path) -> None:
        slug = song.slug
        write_lrc(lines, folder / f"{slug}.lrc", title=spec.title, artist=spec.artist, album=spec.release.album,
                  length_seconds=seconds)
        write_ttml(lines, folder / f"{slug}.ttml", title=spec.title, artist=spec.artist,
                   language=_bcp47(song.language), length_seconds=seconds)
        (folder / "lyrics.txt").write_text("\n".join(line.text for line in score.lines) + "\n", encoding="utf-8")

    return run.stage("lyrics", inputs, produce)


# Each profile's files, by role: (file name after the slug, what it is)
DELIVERY_FILES = {
    "wav": (".wav", "PCM WAV, plain header, no tags"),
    "flac": (".flac", "FLAC, fully tagged"),
    "mp3_320": (".320.mp3", "MP3 320 kbps CBR, ID3v2.4"),
    "mp3_v0": (".v0.mp3", "MP3 LAME V0 VBR, ID3v2.4"),
    "report": (".report.png", "waveform, short-term loudness and spectrum"),
}


def export_inputs(master_hash: str, tags, profile, slug: str) -> dict:
    # the slug names the entry's files: a new slug (slugify's rules changed) is a new entry
    return {"master": master_hash, "tags": _tag_inputs(tags), "profile": profile.to_dict(), "slug": slug}


def _export(run: _Run, master_entry: Entry, tags, profile) -> Entry:
    """One profile's delivery files, each decoded back and measured (files.json)."""
    from millamusic.export import decode, quantize, write_flac, write_mp3_under, write_wav
    from millamusic.report import measure_with_short_term, write_master_report

    slug = run.song.slug
    inputs = export_inputs(master_entry.content_hash, tags, profile, slug)

    def produce(folder: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import numpy as np

        mastered = load_npy(master_entry.verified("master.npy"))
        name = {role: folder / f"{slug}{suffix}" for role, (suffix, _) in DELIVERY_FILES.items()}
        # The MP3s run beside the PCM files: each thread waits on its LAME child process
        # (export._encode_mp3), then decodes and measures its file.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="millamusic-mp3") as pool:
            lossy = {role: pool.submit(write_mp3_under, mastered, name[role], tags, mode=mode,
                                       max_true_peak_dbtp=profile.lossy_true_peak_dbtp)
                     for role, mode in (("mp3_320", "cbr320"), ("mp3_v0", "v0"))}
            integers = quantize(mastered, profile.bit_depth)
            write_wav(mastered, name["wav"], bit_depth=profile.bit_depth, pcm=integers)
            write_flac(mastered, name["flac"], tags, bit_depth=profile.bit_depth, pcm=integers)
            del integers
            pcm = decode(name["wav"])
            if not np.array_equal(decode(name["flac"]).samples, pcm.samples):
                raise ExportError(f"{name['flac'].name} does not decode to the same samples as {name['wav'].name}")
            pcm_report, short_term = measure_with_short_term(pcm)  # one K-weighting pass for both
            pcm_loudness = pcm_report.to_dict()
            album_lufs = json.loads((master_entry.path / "loudness.json").read_text()).get("album_lufs")
            write_master_report(pcm, name["report"], title=tags.title, profile=profile.name,
                                target_lufs=profile.integrated_lufs, ceiling_dbtp=profile.true_peak_dbtp,
                                measured=pcm_loudness, album_lufs=album_lufs, short_term=short_term)
            measured = {"wav": {**pcm_loudness, "trim_db": 0.0}, "flac": {**pcm_loudness, "trim_db": 0.0}}
            for role, future in lossy.items():
                result = future.result()
                measured[role] = {**result.loudness.to_dict(), "trim_db": round(result.trim_db, 2)}
        (folder / "files.json").write_text(json.dumps(measured, indent=1))

    return run.stage("export", inputs, produce, variant=profile.name)


# --- publishing -------------------------------------------------------------------------------

def publish(run: _Run, deliveries: dict, lyrics_entry: Entry, credits, tags, backing_info,
            vocals_info, seconds: float) -> tuple[dict[str, str], dict]:
    """Copy cache entries into masters/<slug>/<profile>/, stems/<slug>/ and lyrics/, with
    masters/<slug>/release.json describing them. Returns (role -> published path, profile -> loudness report).

    A release manager ships masters/<slug>/ as a folder, so it is never written in place: the new
    release (every file, then release.json, made from the copies) is built in a hidden staging
    folder beside it, fsynced, and swapped in with one rename (see _Publication). masters/<slug>/
    therefore always holds either the previous complete release or the new one, each with the
    release.json that describes exactly its files; a failure before the swap (a full disk while
    copying) deletes the staging and leaves the previous release untouched, byte for byte. stems/<slug>/
    is swapped the same way and the lyrics files replaced one by one, both just before the masters,
    which go last: a failure or crash between those few renames can leave new stems or lyrics
    beside the previous masters (the run then exits 5 saying so, and the previous release.json's
    checksums for them no longer match until the next render), never a master folder that is
    half old, half new. (Chosen over writing in place and having `check` find the mix: this way
    there is no mixed master folder to find.)"""
    root = run.options.out_root.resolve()
    slug = run.song.slug
    masters = _inside(root, root / "masters" / slug)
    stems = _inside(root, root / "stems" / slug)
    lyrics = _inside(root, root / "lyrics")
    publication = _Publication(root, [stems, masters])  # the order they are swapped in: the masters last
    try:
        try:
            return _publish(run, publication, root, masters, stems, lyrics, deliveries, lyrics_entry, credits, tags,
                            backing_info, vocals_info, seconds)
        finally:
            publication.discard()  # the temp names of whatever was not put in place (none after a commit)
    except OSError as error:
        writing = publication.writing or masters
        shown = os.path.relpath(writing, root) if root in writing.parents else str(writing)
        if publication.swapped:
            after = (f"Publishing stopped part way: {', '.join(publication.swapped)} already hold the new "
                     f"render, masters/{slug}/ still the previous release.")
        else:
            after = f"Nothing was published: what was in masters/{slug}/, stems/{slug}/ and lyrics/ is untouched."
        after += " The rendered stages are cached: the re-run only publishes."
        if error.filename is None or is_disk_fault(error) or error.errno in (errno.EACCES, errno.EPERM):
            said = disk_fault(error, shown, root, after)
        else:  # not the write itself (a cache file gone missing meanwhile, say): show the OS's words
            said = f"{error}. {after}"
        raise ExportError(f"cannot publish {run.song.spec.title!r}: {said}") from error


def _publish(run: _Run, publication: _Publication, root: Path, masters: Path, stems: Path, lyrics: Path,
             deliveries: dict, lyrics_entry: Entry, credits, tags, backing_info, vocals_info,
             seconds: float) -> tuple[dict[str, str], dict]:
    slug = run.song.slug
    from millamusic.cache import sweep_stale_temps

    for folder in (masters.parent, stems.parent, lyrics):  # temp files and staging of killed earlier runs
        sweep_stale_temps(folder)
    # masters/<slug>/ becomes exactly this render: say so when that drops an earlier render's profile
    dropped = sorted(p.name for p in masters.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name not in deliveries) if masters.is_dir() else []
    if dropped:
        run.progress("publish", f"note: masters/{slug}/{', '.join(dropped)}/ replaced by this render's profiles "
                                f"({', '.join(deliveries)}); render with --profile {','.join([*deliveries, *dropped])} "
                                "to keep them (their stages are still cached)")
    plan = []  # (cache entry, its file, destination, role)
    for name, (_, _, export_entry) in deliveries.items():
        folder = _inside(root, masters / name)
        for role, (suffix, _) in DELIVERY_FILES.items():
            plan.append((export_entry, f"{slug}{suffix}", folder / f"{slug}{suffix}", f"{name}:{role}"))
    plan.append((lyrics_entry, "lyrics.txt", masters / "lyrics.txt", "lyrics:txt"))
    plan.append((lyrics_entry, f"{slug}.lrc", lyrics / f"{slug}.lrc", "lyrics:lrc"))
    plan.append((lyrics_entry, f"{slug}.ttml", lyrics / f"{slug}.ttml", "lyrics:ttml"))
    stems_entry = run.entries["stems"]
    for name in sorted(stems_entry.files):
        path = Path(name)
        if path.suffix in (".wav", ".mid"):
            plan.append((stems_entry, name, stems / name, f"stem:{path.stem}" if path.suffix == ".wav" else "midi"))
    files: dict[str, str] = {role: str(destination) for _, _, destination, role in plan}

    from millamusic.credits import contains_ai, digital_source_type

    def relative(path: str | Path) -> str:
        return Path(os.path.relpath(path, root)).as_posix()

    # each file as it will be published: the bytes of its cache entry, whose sha256 entry.json holds
    file_records = {relative(destination): {"sha256": entry.files[name]["sha256"], "bytes": entry.files[name]["bytes"]}
                    for entry, name, destination, _ in plan}
    loudness, delivered = {}, {}
    for name, (profile, master_entry, export_entry) in deliveries.items():
        loudness[name] = json.loads((master_entry.path / "loudness.json").read_text())
        measured = json.loads((export_entry.path / "files.json").read_text())
        delivered[name] = {
            "profile": profile.to_dict(),
            "master": loudness[name],
            "files": {relative(files[f"{name}:{role}"]): {"role": role, "format": DELIVERY_FILES[role][1],
                                                          **measured.get(role, {})}
                      for role in DELIVERY_FILES},
        }
    spec, release = run.song.spec, run.song.spec.release
    record = {
        "millamusic_version": __version__,
        "rendered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "title": spec.title, "artist": spec.artist, "slug": slug,
        "track": {"title": spec.title, "artist": spec.artist, "album": tags.album, "album_artist": tags.album_artist,
                  "track": tags.track_number, "track_total": tags.track_total, "disc": tags.disc_number,
                  "year": tags.year, "genre": tags.genre, "isrc": tags.isrc, "upc": tags.upc,
                  "composer": tags.composer, "lyricist": tags.lyricist, "producer": tags.producer,
                  "copyright": tags.copyright, "label": tags.label, "language": run.song.language,
                  "duration_seconds": round(seconds, 3)},
        "spec": {"path": str(run.song.path), "sha256": run.song.spec_sha256, "inputs": run.song.input_hashes},
        "engines": {"backing": asdict(backing_info), "vocals": asdict(vocals_info)},
        "settings": {"sample_rate": SAMPLE_RATE, "seed": spec.seed, "profiles": list(deliveries),
                     "commercial": release.commercial,
                     "acknowledged_noncommercial": (run.options.acknowledge_noncommercial
                                                    or release.acknowledge_noncommercial)},
        "stages": {r.name: {"key": run.entries[r.name].key, "content_hash": run.entries[r.name].content_hash,
                            "cached": r.cached, "seconds": round(r.seconds, 3), "why": r.why} for r in run.reports},
        "masters": delivered,
        "backing": json.loads((run.entries["backing"].path / "backing.json").read_text())["details"],
        "mix": json.loads((run.entries["mix"].path / "mix.json").read_text()),
        "credits": [asdict(c) for c in credits], "contains_ai": contains_ai(credits),
        "digital_source_type": digital_source_type(credits), "disclosure": tags.disclosure,
        "files": file_records,
    }
    release_path = masters / "release.json"
    files["release"] = str(release_path)
    published = _PublishedRelease.read(root, release_path)
    stems_names = {destination.name for _, _, destination, _ in plan if destination.parent == stems}
    if published.same_release(record, masters, deliveries) and published.folder_is(stems, stems_names):
        run.progress("publish", f"unchanged: masters/{slug}/ already holds this release")
        return files, loudness  # an unchanged re-render writes nothing
    in_place = {destination for _, _, destination, _ in plan
                if published.holds(destination, file_records[relative(destination)])}
    stems_stay = published.folder_is(stems, stems_names) and all(
        destination in in_place for _, _, destination, _ in plan if destination.parent == stems)
    for entry, name, destination, _ in plan:
        if destination not in in_place:
            publication.copy(entry, name, destination)
        elif destination.parent == lyrics or (destination.parent == stems and stems_stay):
            continue  # already in place, as this render would write it: left alone
        else:  # into its folder's new staging, without copying the bytes again
            publication.link(destination, destination)
    publication.write(release_path, json.dumps(record, indent=1, ensure_ascii=False).encode())
    publication.commit()
    return files, loudness


class _PublishedRelease:
    """What a song's release.json (from an earlier render) says is published, to leave what is
    already in place alone: an unchanged re-render rewrites nothing, a new mastering target leaves
    the stems alone, and files that stay are hard-linked into the new masters folder, not copied.

    A published file counts as in place when release.json lists it with the sha256 and size this
    render would give it, and on disk it has that size and was last modified no later than
    release.json was written (the quick check make and rsync use: the published copy is not
    hashed again). A file edited, replaced or truncated after its release is published afresh;
    `millamusic check` hashes every file against release.json."""

    def __init__(self, root: Path, record: dict | None, written_ns: int):
        self.root, self.record, self.written_ns = root, record or {}, written_ns

    @classmethod
    def read(cls, root: Path, path: Path) -> "_PublishedRelease":
        try:
            with open(path, "rb") as handle:
                written_ns = os.fstat(handle.fileno()).st_mtime_ns
                record = json.loads(handle.read())
        except (OSError, ValueError):
            return cls(root, None, 0)
        return cls(root, record if isinstance(record, dict) else None, written_ns)

    def holds(self, destination: Path, want: dict) -> bool:
        listed = (self.record.get("files") or {}).get(Path(os.path.relpath(destination, self.root)).as_posix())
        if listed != want:
            return False
        try:
            stat = destination.stat()
        except OSError:
            return False
        return stat.st_size == want["bytes"] and stat.st_mtime_ns <= self.written_ns

    def folder_is(self, folder: Path, names: set[str]) -> bool:
        """Whether `folder` holds exactly `names` (hidden temp names aside)."""
        try:
            return {p.name for p in folder.iterdir() if not p.name.startswith(".")} == names
        except OSError:
            return False

    def same_release(self, record: dict, masters: Path, deliveries: dict) -> bool:
        """Whether release.json already describes `record` (its timestamp and stage timings aside) and
        masters/<slug>/ holds exactly its files."""
        if not self.record or _comparable(self.record) != _comparable(record):
            return False
        if not all(self.holds(self.root / name, want) for name, want in record["files"].items()):
            return False
        return self.folder_is(masters, {*deliveries, "lyrics.txt", "release.json"}) and all(
            self.folder_is(masters / name, {f"{record['slug']}{suffix}" for suffix, _ in DELIVERY_FILES.values()})
            for name in deliveries)


def _comparable(record: dict) -> dict:
    """A release record without what changes every render (when, how long, from cache or not)."""
    stages = {name: (stage.get("key"), stage.get("content_hash")) for name, stage in record.get("stages", {}).items()}
    return {**{k: v for k, v in record.items() if k not in ("rendered_at", "stages")}, "stages": stages}


def _inside(root: Path, path: Path) -> Path:
    resolved = path.resolve()
    if root != resolved and root not in resolved.parents:
        raise ExportError(f"refusing to write outside the output folder: {resolved}")
    return resolved


class _Publication:
    """Files written under temp names, then put in place together by `commit` (see publish).

    Each of `folders` is replaced whole: its files are written into a hidden staging folder beside
    it (".<name>.tmp-<owner>-<random>"), which `commit` fsyncs and swaps in with one rename
    (export.replace_folder). Any other file is written as a temp file beside it and os.replace'd
    by `commit`, before the folders, which go in the order given. If anything fails before
    `commit` has finished, every temp name is removed; a killed run's are swept by the next one
    (cache.sweep_stale_temps: the names carry the writer's pid)."""

    def __init__(self, root: Path, folders: list[Path]):
        self.root = root
        self.folders: dict[Path, Path | None] = {folder: None for folder in folders}  # final -> staging
        self.staged: dict[Path, Path] = {}  # final path -> where it is written until commit
        self.loose: list[Path] = []  # final paths outside `folders`: replaced one by one
        self.writing: Path | None = None  # the final path being written (for the error message)
        self.swapped: list[str] = []  # what commit has put in place so far

    def path(self, final: Path) -> Path:
        """Where to write `final` until commit."""
        from millamusic.cache import owner_tag

        folder = next((f for f in self.folders if f in final.parents), None)
        token = uuid.uuid4().hex[:8]
        if folder is None:
            temp = final.with_name(f".{final.name}.{owner_tag()}.{token}.tmp{final.suffix}")
            self.loose.append(final)
        else:
            if self.folders[folder] is None:
                staging = folder.with_name(f".{folder.name}.tmp-{owner_tag()}-{token}")
                staging.mkdir(parents=True)
                self.folders[folder] = staging
            temp = self.folders[folder] / final.relative_to(folder)
        temp.parent.mkdir(parents=True, exist_ok=True)
        self.staged[final] = temp
        return temp

    def copy(self, entry: Entry, name: str, final: Path) -> None:
        """The cache entry's file `name` to `final`, its bytes checked first (CorruptEntry).

        A hard link where the file system allows (the cache and the output on one disk, the usual
        case): no bytes are copied or synced again (the entry was synced when it was stored), which
        saved ~0.6 s of a 3-minute song's cold render here and more on a laptop disk. Entries are
        never written in place, so the link stays the release's bytes; a published file edited
        in place would also change the entry, which its checksum then finds (recomputed, see
        cache.py). Elsewhere, a copy checked as it streams."""
        self.writing = final
        temp = self.path(final)
        try:
            os.link(entry.verified(name), temp)
            return
        except OSError as error:
            if is_disk_fault(error):
                raise
        entry.copy_verified(name, temp)
        _fsync_file(temp)  # one file at a time, as it is written: ~3x faster than a pile of dirty pages at the end

    def link(self, published: Path, final: Path) -> None:
        """A file already published (and unchanged) into its folder's new staging: a hard link where
        the file system has them (no bytes copied), else a copy."""
        self.writing = final
        temp = self.path(final)
        try:
            os.link(published, temp)
        except OSError:
            shutil.copyfile(published, temp)
            _fsync_file(temp)

    def write(self, final: Path, data: bytes) -> None:
        self.writing = final
        temp = self.path(final)
        temp.write_bytes(data)
        _fsync_file(temp)

    def commit(self) -> None:
        from millamusic.export import _fsync_dir, replace_folder

        self.writing = None
        for staging in filter(None, self.folders.values()):  # the files are on disk: now the folders naming them
            for folder, _, _ in os.walk(staging, topdown=False):
                _fsync_dir(Path(folder))
        for final in self.loose:
            self.writing = final
            os.replace(self.staged.pop(final), final)
            _fsync_dir(final.parent)
            self.swapped.append(self._shown(final))
        for folder, staging in self.folders.items():
            if staging is not None:
                self.writing = folder
                replace_folder(staging, folder)
                self.folders[folder] = None
                self.swapped.append(self._shown(folder) + "/")
        self.writing = None

    def discard(self) -> None:
        """Remove whatever commit has not put in place."""
        for final in self.loose:
            temp = self.staged.get(final)
            if temp is not None:
                temp.unlink(missing_ok=True)
        for staging in self.folders.values():
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _shown(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
