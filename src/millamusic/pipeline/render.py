"""One song through every stage: compose -> backing + vocals -> stems, mix -> master -> export.

Each stage reads typed values, declares its inputs to the stage cache, and writes its
outputs into a cache entry. `publish` then copies the entries into the catalogue folders
(`masters/`, `stems/`, `lyrics/`): each song's masters folder is built aside and swapped in
whole, so it is always one complete release, never a mix of two.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from millamusic import SAMPLE_RATE, __version__
from millamusic.compose import compose
from millamusic.core.audio import (
    Audio,
    load_npy,
    load_pcm24,
    resample,
    save_npy,
    save_pcm24,
    save_stem,
    stem_wav_record,
    wav_facts_writer,
)
from millamusic.core.cache import Entry, StageCache
from millamusic.core.errors import ExportError, RenderError, SpecError, SpecProblem
from millamusic.engines import load_engine, option_problems
from millamusic.engines.base import BackingRequest
from millamusic.mastering.chain import master
from millamusic.mix import mix
from millamusic.music.score import Score
from millamusic.pipeline.publish import publish
from millamusic.pipeline.run import STEM_SOURCES, Progress, Run, StageReport, StemWav, once_more_if_corrupt
from millamusic.pipeline.stages import (
    DELIVERY_FILES,
    STAGE_VERSIONS,
    RenderOptions,
    backing_inputs,
    compose_inputs,
    export_inputs,
    lyrics_inputs,
    master_inputs,
    mix_inputs,
    song_sources,
    stems_inputs,
    vocal_request_for,
    vocals_inputs,
)
from millamusic.pipeline.tagging import bcp47, credits_for, engine_used, release_tags, timed_lyrics
from millamusic.release.credits import licence_allows_commercial
from millamusic.release.distributor import AiRoles, ai_roles, distributor_text
from millamusic.release.flac import write_flac
from millamusic.release.lyric_files import write_lrc
from millamusic.release.midi import midi_with_vocal
from millamusic.release.mp3 import write_mp3_under
from millamusic.release.pcm import decode, quantize, write_wav
from millamusic.release.provenance import sign_masters
from millamusic.release.report import measure_with_short_term, write_master_report
from millamusic.release.signing import SigningIdentity, load_identity
from millamusic.release.ttml import write_ttml
from millamusic.spec.profiles import PROFILES, profile_choices, profile_names_problem
from millamusic.spec.song import Song


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
    with cache.in_use():  # `cache gc --delete` deletes nothing while a render holds this (core.cache)
        result = once_more_if_corrupt(cache, song.path, progress, lambda: _render(
            song, options, progress, cache, started, until, album_masters, earlier))
        if isinstance(result, RenderResult):  # which entries this release uses: `cache gc --keep-last N`
            stages = json.loads(Path(result.release_path).read_text())["stages"]
            cache.record_render(song.slug, [stage["key"] for stage in stages.values()], result.release_path)
    return result


def _render(song: Song, options: RenderOptions, progress: Progress | None, cache: StageCache, started: float,
            until: str | None, album_masters: dict | None,
            earlier: tuple[StageReport, ...]) -> RenderResult | MixResult | tuple[StageReport, ...]:
    song = song.with_vocals(options.vocals)
    spec = song.spec
    backing_engine = load_engine("backing", options.backing or spec.engines.backing)
    vocal_engine = load_engine("vocals", song.vocal_engine)
    profiles = delivery_profiles(options.profiles or tuple(spec.master.profiles))
    done_before = {report.name for report in earlier}
    say = progress or (lambda *_: None)

    run = Run(song, options, cache,
               lambda stage, state: None if stage in done_before else say(stage, state), song_sources(song))

    backing_request = backing_request_for(song, options)
    backing_info = backing_engine.describe(backing_request)  # the checkpoint, before minutes of rendering
    vocal_info = vocal_engine.describe(vocal_request_for(song))  # the voice's own terms (a DiffSinger bank's)
    guard_licences(song, [backing_info, vocal_info], options.acknowledge_noncommercial)
    score = compose_stage(run)
    by_name = {report.name: report for report in earlier}
    if until == "backing":
        backing_stage(run, score, backing_engine, backing_request, backing_info)
        return tuple(by_name.get(report.name, report) for report in run.reports)
    # Stages that do not read each other run side by side: the backing beside the vocals, then the
    # stems (each new stem WAV made in memory and hashed) beside the mix, master and export. Each
    # engine alone leaves one of two cores idle much of the time (docs/performance.md).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="millamusic-beside") as beside:
        backing_job = beside.submit(backing_stage, run, score, backing_engine, backing_request, backing_info)
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
        signing = Signing(load_identity(), credits, ai_roles(credits, spec.release.artwork_ai))
        deliveries = {}
        for profile in profiles:
            if album_masters is not None:
                master_entry = album_masters[profile.name]
                run.entries[f"master[{profile.name}]"] = master_entry
            else:
                master_entry = _master(run, mixed, profile)
            deliveries[profile.name] = (profile, master_entry, _export(run, master_entry, tags, profile, signing))
        stems_job.result()
    run.reports = [by_name.get(report.name, report) for report in run.in_order()]
    files, loudness = publish(run, deliveries, lyrics_entry, credits, tags, backing_info, vocals_info, seconds)
    return RenderResult(song.slug, tuple(run.reports), loudness, files, files["release"],
                        time.perf_counter() - started)


def delivery_profiles(names) -> list:
    """The DeliveryProfiles for `names` (from the spec or the CLI's --profile); SpecError (exit 2)
    naming the valid ones otherwise."""

    names = list(names)
    problem = profile_names_problem(names)
    if problem:
        raise SpecError([SpecProblem("--profile", None, None, "profile", ", ".join(names), problem,
                                     f"use one or more of: {profile_choices()}")])
    return [PROFILES[name] for name in names]


def compose_stage(run: Run) -> Score:
    entry = run.stage("compose", compose_inputs(run.song),
                      lambda folder: (folder / "score.json").write_text(compose(run.song).to_json()))
    return Score.from_json((entry.path / "score.json").read_text())


def guard_licences(song: Song, infos: list, acknowledged: bool) -> None:
    """Refuse a commercial release made with a model whose licence forbids (or does not grant) that.

    MusicGen's published weights are CC-BY-NC 4.0. The spec's `release.commercial` (default true:
    streaming releases earn money) and an explicit acknowledgement decide, never a silent default.
    """

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
                "(recorded in release.json); where the terms are yours to state (a DiffSinger voicebank: "
                "voice.diffsinger.licence in the artist profile, after reading the bank's own licence files), "
                "state them")])


def backing_request_for(song: Song, options: RenderOptions):
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
                          options=engine_options, reference=reference, reference_start=spec.reference_start,
                          transpose=spec.transpose)


def backing_stage(run: Run, score: Score, engine, request, info) -> Entry:
    inputs = backing_inputs(run.song, run.options, score, request, info)

    def produce(folder: Path) -> None:
        result = engine.render(score, request)
        check_stems(result.stems, score, f"backing engine {engine.info.name!r}")
        wavs = _save_stems(result.stems, folder)
        (folder / "backing.mid").write_bytes(result.midi)
        (folder / "backing.json").write_text(json.dumps({"stems": list(wavs), "wavs": wavs,
                                                         "prompt": result.prompt, "details": result.details},
                                                        indent=1, default=str))

    entry = run.stage("backing", inputs, produce)
    for warning in json.loads((entry.path / "backing.json").read_text())["details"].get("warnings", []):
        run.progress("backing", f"warning: {warning}")  # shown again on a cached run: it is still true
    return entry


def _vocals(run: Run, score: Score, engine) -> Entry:
    request, inputs = vocals_inputs(run.song, score, engine, run.cache.root / "phrases")

    def produce(folder: Path) -> None:
        result = engine.render(score, request)
        check_stems(result.stems, score, f"vocal engine {engine.info.name!r}")
        wavs = _save_stems(result.stems, folder)
        info = asdict(result.engine_info or engine.info)
        (folder / "vocals.json").write_text(json.dumps({"stems": list(wavs), "wavs": wavs, "engine": info,
                                                        "syllables": [asdict(s) for s in result.syllables],
                                                        "details": result.details}, indent=1, default=str))

    entry = run.stage("vocals", inputs, produce)
    for warning in json.loads((entry.path / "vocals.json").read_text())["details"].get("warnings", []):
        run.progress("vocals", f"warning: {warning}")  # shown again on a cached run: it is still true
    return entry


def _save_stems(stems: dict[str, Audio], folder: Path) -> dict[str, dict]:
    """Each stem as a 24-bit FLAC (its WAV would hold no more: docs/cache.md), let go of once saved:
    `stems` is emptied (backing and vocals holding all their stems at once is a render's peak of
    memory). Returns name -> the record of the WAV publish will make of it (save_stem), for _stems,
    in name order.
    Two at a time: libsndfile and hashlib let go of the GIL (a lyric edit's 4 vocal stems: 1.9 -> 1.0 s)."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="millamusic-save") as pool:
        saving = {name: pool.submit(save_stem, stems.pop(name), folder / f"{name}.flac") for name in sorted(stems)}
        return {name: future.result() for name, future in saving.items()}


def check_stems(stems: dict[str, Audio], score: Score, who: str) -> None:
    """The engine contract, checked at the boundary: stereo, project rate, the score's length."""

    frames = score.total_frames(SAMPLE_RATE)
    for name, audio in stems.items():
        if audio.sample_rate != SAMPLE_RATE or audio.frames != frames or audio.channels != 2:
            raise RenderError(f"{who} returned stem {name!r} as {audio.channels} ch, {audio.frames} frames at "
                              f"{audio.sample_rate} Hz; the contract is 2 ch, {frames} frames at {SAMPLE_RATE} Hz")
        if not np.all(np.isfinite(audio.samples)):
            raise RenderError(f"{who} returned stem {name!r} with NaN or infinite samples")
        if audio.peak() > 1.0:  # stems are stored and published as 24-bit PCM: over full scale would clip
            raise RenderError(f"{who} returned stem {name!r} peaking at {audio.peak():.3f}, over full scale (1.0)")


def _stems(run: Run, score: Score, backing: Entry, vocals: Entry) -> Entry:
    """The song's MIDI (with the vocal track) and stems.json: which FLAC of the backing and vocals
    entries each published stem WAV is made from, and that WAV's sha256 and size. The WAVs themselves
    are written by publish (they would be the same samples as those FLACs, 3x their size: docs/cache.md)."""
    inputs = stems_inputs(backing.content_hash, vocals.content_hash, run.entries["compose"].content_hash, run.song.slug)

    def produce(folder: Path) -> None:
        # After a lyric edit only the vocals change: the backing's stems are the same FLACs as in this
        # song's last stems entry, so their WAVs' hashes are taken from it, not made again.
        # The stage that saved a stem recorded its WAV's hash (save_stem); entries older than that record,
        # or made with another libsndfile, have their FLACs decoded for it here. So does every stem once
        # publish found a WAV that did not match its record in this render (the entry is being redone).
        earlier = _earlier_stems(run)
        redoing = any(problem.startswith(f"{STEM_SOURCES} says ") for problem in run.cache.retired.values())
        wavs: dict[str, StemWav] = {}
        for entry in (backing, vocals):  # the vocals' names after the backing's, as Run.all_stems reads them
            listing = json.loads((entry.path / f"{entry.stage}.json").read_text())
            for name in listing["stems"]:
                file = f"{name}.flac"
                source = entry.files[file]["sha256"]
                known = earlier.get(name)
                if known is not None and (known.stage, known.file, known.source_sha256) == (entry.stage, file, source):
                    wavs[name] = replace(known, key=entry.key)  # the same FLAC bytes give the same WAV
                    continue
                record = listing.get("wavs", {}).get(name)
                if redoing or record is None or record["writer"] != wav_facts_writer():
                    record = stem_wav_record(entry.verified(file))
                wavs[name] = StemWav(name, entry.stage, entry.key, file, source, record["sha256"], record["bytes"])
        (folder / STEM_SOURCES).write_text(json.dumps(
            {"stems": {name: {k: v for k, v in asdict(wav).items() if k != "name"} for name, wav in wavs.items()}},
            indent=1, sort_keys=True))
        (folder / f"{run.song.slug}.mid").write_bytes(midi_with_vocal(backing.verified("backing.mid"), score))

    return run.stage("stems", inputs, produce)


def _earlier_stems(run: Run) -> dict[str, StemWav]:
    """The stem WAVs of this song's previous stems entry made by this stage version ({} if none)."""
    previous = run.cache.previous("stems", run.song.slug)
    inputs = (previous or {}).get("inputs") or {}
    entry = run.cache.lookup("stems", inputs) if inputs.get("version") == STAGE_VERSIONS["stems"] else None
    return {} if entry is None else StemWav.listed(entry)


def _mix(run: Run, backing: Entry, vocals: Entry) -> Entry:
    inputs = mix_inputs(backing.content_hash, vocals.content_hash, run.options.mix)

    def produce(folder: Path) -> None:
        mixed, report = mix(run.all_stems(), run.options.mix)
        save_npy(mixed, folder / "mix.npy")
        (folder / "mix.json").write_text(json.dumps(report.to_dict(), indent=1))

    return run.stage("mix", inputs, produce)


def _master(run: Run, mixed: Entry, profile) -> Entry:
    inputs = master_inputs(mixed.content_hash, profile, run.options.mastering)

    def produce(folder: Path) -> None:
        # master at the delivery rate: resampling after the limiter would bring back inter-sample peaks
        mix = resample(load_npy(mixed.verified("mix.npy")), profile.sample_rate)
        mastered, report = master(mix, profile, run.options.mastering)
        save_pcm24(mastered, folder / "master.flac")  # under its ceiling: 24 bits is what delivery holds
        (folder / "loudness.json").write_text(json.dumps({"target": profile.to_dict(), **report.to_dict()}, indent=1))

    return run.stage("master", inputs, produce, variant=profile.name)


def _lyrics(run: Run, score: Score, lines: list, seconds: float) -> Entry:
    """lyrics/<slug>.lrc (enhanced, word by word) and .ttml from the sung timing, and plain text."""

    song, spec = run.song, run.song.spec
    inputs = lyrics_inputs(song, lines, seconds)

    def produce(folder: Path) -> None:
        slug = song.slug
        write_lrc(lines, folder / f"{slug}.lrc", title=spec.title, artist=spec.artist, album=spec.release.album,
                  length_seconds=seconds)
        write_ttml(lines, folder / f"{slug}.ttml", title=spec.title, artist=spec.artist,
                   language=bcp47(song.language), length_seconds=seconds)
        (folder / "lyrics.txt").write_text("\n".join(line.text for line in score.lines) + "\n", encoding="utf-8")

    return run.stage("lyrics", inputs, produce)


@dataclass(frozen=True)
class Signing:
    """Who signs the masters' Content Credentials, and what they say (the render's credits)."""

    identity: SigningIdentity
    credits: list
    roles: AiRoles


def _export(run: Run, master_entry: Entry, tags, profile, signing: Signing) -> Entry:
    """One profile's delivery files, each decoded back and measured (files.json)."""

    slug = run.song.slug
    inputs = export_inputs(master_entry.content_hash, tags, profile, slug, signing.identity.fingerprint)

    def produce(folder: Path) -> None:
        mastered = load_pcm24(master_entry.verified("master.flac"))
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
        # Tagged first, signed last: the manifest binds every byte outside itself (audio and tags).
        sign_masters([name[role] for role in ("wav", "flac", "mp3_320", "mp3_v0")], tags=tags,
                     credits=signing.credits, roles=signing.roles, identity=signing.identity, version=__version__)
        identity = signing.identity
        (folder / "signature.json").write_text(json.dumps({"signer": identity.subject,
                                                           "self_signed": identity.self_signed,
                                                           "certificate_sha256": identity.fingerprint}, indent=1))
        (folder / "distributor.txt").write_text(distributor_text(tags.title, tags.artist, signing.roles,
                                                                 signer=identity.subject,
                                                                 self_signed=identity.self_signed))
        (folder / "files.json").write_text(json.dumps(measured, indent=1))

    return run.stage("export", inputs, produce, variant=profile.name)
