"""Album builds: every track of an album spec through the stage cache, in parallel, resumable.

Each track is an ordinary render (`pipeline.render`): in this process, in one of `--jobs` worker
processes, or as a task on a Ray cluster (`album_ray.py`); the stage cache makes
the build resumable (a killed build restarts and redoes only the stages that had not been
published) and lets two builds share one cache (entries are published by rename; the same
key gives the same files). In album-loudness mode the tracks are rendered up to their mixes,
mastered together with one gain (`master.master_album`, an `album_master` cache entry per
profile), then exported. The album's record and report go to `album/<album-slug>/`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from millamusic import __version__
from millamusic.core.audio import load_npy, resample, save_pcm24
from millamusic.core.cache import Entry, StageCache, sweep_stale_temps
from millamusic.core.files import atomic_write_bytes
from millamusic.mastering.album import master_album
from millamusic.mastering.config import MasteringConfig
from millamusic.pipeline.ray import ray_cluster, run_on_ray
from millamusic.pipeline.render import delivery_profiles
from millamusic.pipeline.stages import STAGE_VERSIONS, RenderOptions, album_master_inputs, explain
from millamusic.pipeline.tracks import QueueProgress, drain, render_track
from millamusic.qa.album_report import write_album_report

AlbumProgress = Callable[[int, str, str, str], None]  # (track number, title, stage, state)


@dataclass(frozen=True)
class AlbumOptions:
    out_root: Path
    cache_dir: Path
    jobs: int = 1  # songs rendered at once, each in its own process (1: in this process); local executor
    force: bool = False
    acknowledge_noncommercial: bool = False
    executor: str = "local"  # "local" (this machine, `jobs` processes) | "ray" (tasks on a Ray cluster)
    address: str | None = None  # the Ray cluster ("ray://host:10001", "host:6379", "auto"); None: start a local one


@dataclass(frozen=True)
class TrackResult:
    number: int
    title: str
    slug: str
    seconds: float  # duration of the track
    loudness: dict  # profile -> the master's loudness report
    engines: dict  # {"backing": name, "vocals": name}
    cache_hits: int
    stages: int
    release_path: str


@dataclass(frozen=True)
class AlbumResult:
    title: str
    tracks: tuple[TrackResult, ...]
    album_lufs: dict  # profile -> album loudness (album mode) or None
    record_path: str
    report_path: str
    seconds: float


# --- the build ------------------------------------------------------------------------------------


def build_album(album, options: AlbumOptions, progress: AlbumProgress | None = None) -> AlbumResult:
    """Render, master and publish every track of `album` (millamusic.spec.album.Album)."""

    started = time.perf_counter()
    say = progress or (lambda *_: None)
    # absolute: worker processes (on other machines, for Ray) need not share our working folder
    render_options = RenderOptions(out_root=Path(options.out_root).resolve(), cache_dir=Path(options.cache_dir).resolve(),
                                   force=options.force, acknowledge_noncommercial=options.acknowledge_noncommercial)

    cache = StageCache(options.cache_dir)
    cache.sweep()  # half-built entries and temp files of a killed earlier build
    for name in ("masters", "stems", "lyrics", "album"):
        sweep_stale_temps(Path(options.out_root) / name)
    # held for the whole build (the album masters are made between the tracks' two renders): `cache gc` waits
    with cache.in_use(), _executor(album, options, say) as runner:
        results, album_lufs = _render_album(album, render_options, say, runner)
    tracks = album.tracks
    releases = [json.loads(Path(result.release_path).read_text()) for result in results]
    track_results = tuple(_track_result(track, result, release, options.out_root)
                          for track, result, release in zip(tracks, results, releases))
    record = album_record(album, track_results, releases, album_lufs, options.out_root)
    folder = Path(options.out_root).resolve() / "album" / album.slug

    record_path = atomic_write_bytes(folder / "release.json", json.dumps(record, indent=1, ensure_ascii=False).encode())
    report_path = write_album_report(folder / "report.html", record, root=Path(options.out_root).resolve())
    return AlbumResult(album.spec.title, track_results, album_lufs, str(record_path), str(report_path),
                       time.perf_counter() - started)


# A runner renders a list of calls (song, render options, until, album masters, earlier reports)
# and returns their results in order; report(index, stage, state) hears every finished stage.
Runner = Callable[[list, Callable[[int, str, str], None]], list]


@contextmanager
def _executor(album, options: AlbumOptions, say: AlbumProgress) -> Iterator[Runner]:
    """The build's runner, set up once for the whole build (album mode renders in two rounds):
    this process, one pool of `jobs` worker processes, or a connection to a Ray cluster."""
    if options.executor == "ray":

        def note(state: str) -> None:
            say(0, album.spec.title, "ray", state)

        with ray_cluster(options.address, note):
            yield lambda calls, report: run_on_ray(calls, report, note)
    elif options.executor != "local":
        raise ValueError(f"AlbumOptions.executor {options.executor!r}: use 'local' or 'ray'")
    elif options.jobs <= 1:
        yield _run_here
    else:

        context = multiprocessing.get_context("spawn")  # a clean interpreter per worker (espeak has global state)
        with context.Manager() as manager, ProcessPoolExecutor(max_workers=options.jobs, mp_context=context) as pool:
            queue = manager.Queue()
            yield lambda calls, report: _run_in_pool(pool, queue, calls, report)


def _render_album(album, render_options, say: AlbumProgress, runner: Runner) -> tuple[list, dict]:
    """Every track rendered and published: (their RenderResults, profile -> album loudness or None)."""
    album_lufs: dict = {name: None for name in album.spec.master.profiles}
    if album.spec.master.loudness != "album":
        return _run_tracks(album, render_options, say, runner, until=None, per_track=None), album_lufs
    mixes = _run_tracks(album, render_options, say, runner, until="mix", per_track=None)
    masters, album_lufs = _album_masters(album, render_options.cache_dir, render_options.force, mixes, say,
                                           render_options.mastering)
    again = replace(render_options, force=False)  # the mixes were just (re)made when forced
    results = _run_tracks(album, again, say, runner, until=None, per_track=masters,
                          earlier=[mix.stages for mix in mixes])
    return results, album_lufs


def _run_tracks(album, render_options, say: AlbumProgress, runner: Runner, *, until: str | None,
                per_track: list[dict] | None, earlier: list[tuple] | None = None) -> list:
    """Every track's render (or render up to the mix), in track order."""
    tracks = album.tracks

    def report(index: int, stage: str, state: str) -> None:
        say(tracks[index].number, tracks[index].song.spec.title, stage, state)

    return runner([(track.song, render_options, until, None if per_track is None else per_track[index],
                    earlier[index] if earlier else ()) for index, track in enumerate(tracks)], report)


def _run_here(calls: list, report) -> list:
    return [render_track(song, options, lambda stage, state, i=index: report(i, stage, state), *rest)
            for index, (song, options, *rest) in enumerate(calls)]


def _run_in_pool(pool: ProcessPoolExecutor, queue, calls: list, report) -> list:
    futures: dict[Future, int] = {pool.submit(render_track, song, options, QueueProgress(queue, index), *rest): index
                                  for index, (song, options, *rest) in enumerate(calls)}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        drain(queue, report)
        for future in done:
            if future.exception() is not None:
                for other in pending:
                    other.cancel()
                raise future.exception()
    drain(queue, report)
    return [future.result() for future in sorted(futures, key=futures.get)]


def _album_masters(album, cache_dir: Path, force: bool, mixes: list, say: AlbumProgress,
                   config: MasteringConfig) -> tuple[list[dict], dict]:
    """Master every profile's tracks together (one `album_master` cache entry per profile).

    Returns, per track, profile -> an Entry for that track's master (as `pipeline.render._master` would
    make), and profile -> the album's loudness."""

    cache = StageCache(cache_dir)
    per_track: list[dict] = [{} for _ in album.tracks]
    album_lufs = {}
    for profile in delivery_profiles(album.spec.master.profiles):
        inputs = {"version": STAGE_VERSIONS["master"],
                  **album_master_inputs(profile, [(mix.slug, mix.mix_hash) for mix in mixes], config)}

        def produce(folder: Path, profile=profile) -> None:
            audio = [resample(load_npy(Path(mix.mix_path)), profile.sample_rate) for mix in mixes]
            mastered = master_album(audio, profile, config)
            for mix, (track_audio, report) in zip(mixes, mastered.tracks):
                (folder / mix.slug).mkdir()
                save_pcm24(track_audio, folder / mix.slug / "master.flac")  # as pipeline.render._master
                (folder / mix.slug / "loudness.json").write_text(json.dumps(
                    {"target": profile.to_dict(), **report.to_dict(), "album_lufs": round(mastered.album_lufs, 2),
                     "album_gain_db": round(mastered.gain_db, 2)}, indent=1))

        say(0, album.spec.title, f"album_master[{profile.name}]", "start")
        entry = cache.run("album_master", inputs, produce, force=force, label=f"{album.slug}.{profile.name}",
                          explain=lambda previous, inputs=inputs: explain("album_master", previous, inputs, None))
        say(0, album.spec.title, f"album_master[{profile.name}]", "cached" if entry.hit else f"done ({entry.why})")
        for index, mix in enumerate(mixes):
            folder, prefix = entry.path / mix.slug, f"{mix.slug}/"
            files = {name[len(prefix):]: record for name, record in entry.files.items() if name.startswith(prefix)}
            checked = {name[len(prefix):] for name in entry.checked if name.startswith(prefix)}
            per_track[index][profile.name] = Entry("master", entry.key, folder, f"{entry.content_hash}:{mix.slug}",
                                                   entry.hit, entry.why, files, checked)
        album_lufs[profile.name] = json.loads((entry.path / mixes[0].slug / "loudness.json").read_text())["album_lufs"]
    return per_track, album_lufs


def _track_result(track, result, release: dict, out_root: Path) -> TrackResult:
    return TrackResult(
        number=track.number, title=track.song.spec.title, slug=track.song.slug,
        seconds=release["track"]["duration_seconds"], loudness=result.loudness,
        engines={kind: release["engines"][kind]["name"] for kind in ("backing", "vocals")},
        cache_hits=sum(1 for stage in result.stages if stage.cached), stages=len(result.stages),
        release_path=os.path.relpath(result.release_path, Path(out_root).resolve()),
    )


def album_record(album, tracks: tuple[TrackResult, ...], releases: list[dict], album_lufs: dict,
                 out_root: Path) -> dict:
    """The album's release.json: album data, per-track loudness, files, credits and disclosure
    (`releases`: each track's own release.json, in track order)."""
    root = Path(out_root).resolve()
    spec = album.spec
    rows = []
    disclosures = []
    for track, release in zip(tracks, releases):
        disclosures.append(release["disclosure"])
        rows.append({
            "number": track.number, "title": track.title, "slug": track.slug, "isrc": release["track"]["isrc"],
            "duration_seconds": track.seconds, "engines": track.engines,
            "cache_hits": track.cache_hits, "stages": track.stages,
            "contains_ai": release["contains_ai"], "digital_source_type": release["digital_source_type"],
            "credits": release["credits"], "release": track.release_path,
            "ai_roles": {role: answer["answer"] for role, answer in release["ai_roles"]["distrokid"].items()},
            "signed_by": release["provenance"]["signer"],
            "masters": {name: {
                "integrated_lufs": delivered["master"]["integrated_lufs"],
                "true_peak_dbtp": delivered["master"]["true_peak_dbtp"],
                "lra_lu": delivered["master"]["lra_lu"],
                "files": {record["role"]: relative for relative, record in delivered["files"].items()},
            } for name, delivered in release["masters"].items()},
        })
    artwork = os.path.relpath(album.artwork_path, root) if album.artwork_path else None
    return {
        "millamusic_version": __version__,
        "title": spec.title, "artist": spec.artist, "year": spec.year, "upc": spec.upc, "label": spec.label,
        "copyright": spec.copyright, "profiles": list(spec.master.profiles), "loudness_mode": spec.master.loudness,
        "album_lufs": album_lufs, "artwork": artwork,
        "disclosure": _album_disclosure(disclosures),
        "provenance": _album_provenance(releases),
        "spec": {"path": str(album.path), "sha256": album.sha256},
        "tracks": rows,
    }


def _album_provenance(releases: list[dict]) -> dict:
    """Who signed the tracks' Content Credentials, and whether any track's AI answers differ: the
    album-level summary a release manager reads before the upload form (each master is signed
    on its own; an album has no file of its own to carry a manifest)."""
    signers = sorted({release["provenance"]["signer"] for release in releases})
    roles = {}
    for release in releases:
        for role, answer in release["ai_roles"]["distrokid"].items():
            roles.setdefault(role, set()).add(answer["answer"])
    return {"signed_by": signers, "self_signed": any(r["provenance"]["self_signed"] for r in releases),
            "tracks_signed": len(releases),
            "ai_roles": {role: "Yes" if answers == {"Yes"} else "No" if answers == {"No"} else "Some tracks"
                         for role, answers in roles.items()}}


def _album_disclosure(texts: list[str]) -> str:
    """The tracks' disclosure when they agree; otherwise each track's, numbered."""
    if len(set(texts)) == 1:
        return texts[0]
    return " ".join(f"Track {n}: {text}" for n, text in enumerate(texts, start=1))
