"""Why does it re-run: what a render or album build would reuse from the stage cache, and why not.

`millamusic status SPEC` walks the same stages as a render, with the same cache inputs
(`pipeline.compose_inputs`, `backing_inputs`, ...), but computes nothing expensive: a stage is
"cached" when its entry exists, "runs" when it does not (with the reason: the song's files that
changed since the stage last ran, or the inputs that changed), and "waits" when its inputs
are another stage's output that has to be made first. Only composing (milliseconds) is done
in memory, so the stages that read the score are judged exactly.

Reasons come from the cache's memo of each stage's last run for a song, which holds the
inputs and the song's source files (`song_sources`) at that time.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from millamusic import SAMPLE_RATE
from millamusic.compose import compose
from millamusic.core.cache import Entry, StageCache, hash_folder
from millamusic.engines import load_engine
from millamusic.music.score import Score
from millamusic.pipeline.published import stage_label
from millamusic.pipeline.render import backing_request_for, delivery_profiles
from millamusic.pipeline.stages import (
    STAGE_VERSIONS,
    album_master_inputs,
    backing_inputs,
    compose_inputs,
    explain,
    export_inputs,
    lyrics_inputs,
    master_inputs,
    mix_inputs,
    song_sources,
    stems_inputs,
    vocals_inputs,
)
from millamusic.pipeline.tagging import credits_for, engine_used, release_tags, timed_lyrics
from millamusic.release.signing import load_identity
from millamusic.spec.song import Song


@dataclass(frozen=True)
class StageStatus:
    stage: str  # "vocals", "master[spotify]", "album_master[spotify]"
    state: str  # "cached" | "runs" | "waits"
    why: str  # "" when cached


class SongWalk:
    """One song's stages in render order, judged against the cache without running them."""

    def __init__(self, song: Song, options):
        self.song, self.options = song, options
        self.cache = StageCache(options.cache_dir)
        self.sources = song_sources(song)
        self.rows: list[StageStatus] = []
        self.score = self.backing = self.vocals = self.mix = None
        self.score_hash = ""

    def check(self, name: str, inputs: dict, variant: str | None = None) -> Entry | None:
        inputs = {"version": STAGE_VERSIONS[name], **inputs}
        label = stage_label(self.song.slug, variant)
        shown = name if variant is None else f"{name}[{variant}]"
        entry = None if self.options.force else self.cache.lookup(name, inputs)
        if entry is not None:
            self.rows.append(StageStatus(shown, "cached", ""))
        else:
            why = ("forced (--force)" if self.options.force
                   else explain(name, self.cache.previous(name, label), inputs, self.sources))
            self.rows.append(StageStatus(shown, "runs", why))
        return entry

    def waits(self, shown: str, *upstream: str) -> None:
        which = "which runs" if len(upstream) == 1 else "which run"
        self.rows.append(StageStatus(shown, "waits", f"reads {' and '.join(upstream)}, {which} first"))

    def to_mix(self) -> Entry | None:
        """compose, backing, vocals, stems, mix; the mix's entry if it is cached."""

        options = self.options
        song = self.song = self.song.with_vocals(options.vocals)  # as the render does
        composed = self.check("compose", compose_inputs(song))
        if composed is not None:
            self.score, self.score_hash = Score.from_json((composed.path / "score.json").read_text()), composed.content_hash
        else:
            self.score, self.score_hash = _compose_in_memory(song)
        backing_engine = load_engine("backing", options.backing or song.spec.engines.backing)
        vocal_engine = load_engine("vocals", song.vocal_engine)
        request = backing_request_for(song, options)
        self.backing_info = backing_engine.describe(request)
        self.backing = self.check("backing", backing_inputs(song, options, self.score, request, self.backing_info))
        self.vocals = self.check("vocals", vocals_inputs(song, self.score, vocal_engine)[1])
        missing = [name for name, entry in (("backing", self.backing), ("vocals", self.vocals)) if entry is None]
        if missing:
            self.waits("stems", *missing)
            self.waits("mix", *missing)
            return None
        self.check("stems", stems_inputs(self.backing.content_hash, self.vocals.content_hash, self.score_hash,
                                         song.slug))
        self.mix = self.check("mix", mix_inputs(self.backing.content_hash, self.vocals.content_hash,
                                                  self.options.mix))
        return self.mix

    def after_mix(self, album_masters: dict[str, str | None] | None = None) -> None:
        """lyrics, then master and export per profile. `album_masters` (album-loudness builds):
        profile -> this track's master hash from the album's master entry, None if not cached."""

        song = self.song
        lines = None
        if self.vocals is not None:
            lines = timed_lyrics(self.score, self.vocals)
            seconds = self.score.total_frames(SAMPLE_RATE) / SAMPLE_RATE
            self.check("lyrics", lyrics_inputs(song, lines, seconds))
        else:
            self.waits("lyrics", "vocals")
        tags = None
        if self.backing is not None and self.vocals is not None:
            credits = credits_for(song, self.score, self.backing_info, self.backing, engine_used(self.vocals, "vocals.json"))
            tags = release_tags(song, self.score, credits, lines)
        signer = load_identity().fingerprint  # who signs the masters is in the export key
        for profile in delivery_profiles(self.options.profiles or tuple(song.spec.master.profiles)):
            if album_masters is not None:
                master_hash, master_stage = album_masters.get(profile.name), f"album_master[{profile.name}]"
            elif self.mix is not None:
                master = self.check("master", master_inputs(self.mix.content_hash, profile, self.options.mastering), profile.name)
                master_hash, master_stage = (master.content_hash if master else None), f"master[{profile.name}]"
            else:
                self.waits(f"master[{profile.name}]", "mix")
                master_hash, master_stage = None, f"master[{profile.name}]"
            missing = [name for name, ready in ((master_stage, master_hash), ("backing", self.backing),
                                                ("vocals", self.vocals)) if ready is None]
            if missing:
                self.waits(f"export[{profile.name}]", *missing)
            else:
                self.check("export", export_inputs(master_hash, tags, profile, song.slug, signer),
                           profile.name)


def _compose_in_memory(song: Song):
    """The score and the compose entry's content hash, without writing to the cache."""

    text = compose(song).to_json()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "score.json").write_text(text)
        return Score.from_json(text), hash_folder(Path(folder))


def song_status(song: Song, options) -> list[StageStatus]:
    walk = SongWalk(song, options)
    walk.to_mix()
    walk.after_mix()
    return walk.rows


@dataclass(frozen=True)
class AlbumStatus:
    album: list[StageStatus]  # the album's own stages (album_master per profile, album-loudness mode)
    tracks: list[tuple[int, str, list[StageStatus]]]  # (number, title, that track's stages)


def album_status(album, options) -> AlbumStatus:
    """Every track's stages, as `millamusic album` with these options would run them."""

    walks = [SongWalk(track.song, options) for track in album.tracks]
    mixes = [walk.to_mix() for walk in walks]
    album_rows: list[StageStatus] = []
    per_track: list[dict | None] = [None] * len(walks)
    if album.spec.master.loudness == "album":
        per_track = [{} for _ in walks]
        cache = StageCache(options.cache_dir)
        for profile in delivery_profiles(album.spec.master.profiles):
            shown = f"album_master[{profile.name}]"
            if any(mix is None for mix in mixes):
                waiting = [f"{track.number} {track.song.spec.title}" for track, mix in zip(album.tracks, mixes) if mix is None]
                album_rows.append(StageStatus(shown, "waits", f"reads the mix of track {', '.join(waiting)}, which runs first"))
                entry = None
            else:
                inputs = {"version": STAGE_VERSIONS["master"],
                          **album_master_inputs(profile, [(w.song.slug, m.content_hash) for w, m in zip(walks, mixes)],
                                               options.mastering)}
                entry = None if options.force else cache.lookup("album_master", inputs)
                why = "" if entry else ("forced (--force)" if options.force else explain(
                    "album_master", cache.previous("album_master", f"{album.slug}.{profile.name}"), inputs, None))
                album_rows.append(StageStatus(shown, "cached" if entry else "runs", why))
            for walk, masters in zip(walks, per_track):
                masters[profile.name] = f"{entry.content_hash}:{walk.song.slug}" if entry else None
    for walk, masters in zip(walks, per_track):
        walk.after_mix(masters)
    return AlbumStatus(album_rows, [(track.number, track.song.spec.title, walk.rows)
                                    for track, walk in zip(album.tracks, walks)])


def rows_json(rows: list[StageStatus]) -> list[dict]:
    return [{"stage": row.stage, "state": row.state, "why": row.why} for row in rows]


def status_json(result) -> str:
    if isinstance(result, AlbumStatus):
        return json.dumps({"album": rows_json(result.album),
                           "tracks": [{"number": n, "title": t, "stages": rows_json(rows)}
                                      for n, t, rows in result.tracks]}, indent=1)
    return json.dumps({"stages": rows_json(result)}, indent=1)
