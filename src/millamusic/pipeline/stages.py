"""The stages of a render, declared in one place: their versions, and the inputs that key each one's cache entry."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from millamusic import SAMPLE_RATE
from millamusic.compose import COMPOSER_VERSION
from millamusic.core.cache import changed_keys, sha256_file
from millamusic.engines.base import VocalRequest
from millamusic.instruments.soundfont import synthesizer
from millamusic.mastering.config import MASTERING, MasteringConfig
from millamusic.mix import MIX, MIX_VERSION, MixConfig
from millamusic.music.score import Score
from millamusic.spec.song import Song

# Bump a stage's version when its code changes what it writes: old entries stop matching.
# backing 2, vocals 2, preview_vocals 2: <stem>.flac (24-bit); mix 2: made from them; master 3: master.flac;
# stems 2: stems.json naming each stem WAV's FLAC (publish writes the WAVs), no WAVs (docs/cache.md).
STAGE_VERSIONS = {"compose": "1", "backing": "2", "vocals": "2", "stems": "2", "mix": "2", "master": "3",
                  "lyrics": "1", "export": "2",
                  "preview_vocals": "2", "preview": "1"}
PREVIEW_STAGES = ("preview_vocals", "preview")  # a range of a song heard alone (pipeline.preview), never published


STAGES = tuple(name for name in STAGE_VERSIONS if name not in PREVIEW_STAGES)  # a release render's, in order


# --- stages ---------------------------------------------------------------------------------

# Each stage's cache inputs come from one function, shared by render and `millamusic status`.

def compose_inputs(song: Song) -> dict:
    spec = song.spec
    return {
        "composer": COMPOSER_VERSION,
        "spec": spec.model_dump(include={"title", "tempo", "key", "transpose", "time_signature", "seed", "structure"}),
        "language": song.language, "voice_range": song.voice_range,
        "lyrics": [[block.header, [line.text for line in block.lines]] for block in song.lyric_blocks],
        "melody": song.input_hashes.get("melody"),
    }


def backing_inputs(song: Song, options: RenderOptions, score: Score, request, info) -> dict:
    keyed = asdict(request)  # the cache key holds files' content, not where they lie
    soundfont = request.options.get("soundfont")
    if soundfont is not None:
        keyed["options"]["soundfont"] = (sha256_file(Path(soundfont)) if options.soundfont
                                         else song.input_hashes["soundfont"])  # hashed when the spec loaded
        keyed["options"]["synthesizer"] = synthesizer()  # another TinySoundFont may play the same font differently
    engine_key = asdict(info)
    if info.weights_hash is not None:  # the model is named by its content, not by the folder it lies in
        keyed["options"].pop("model", None)
        engine_key["model"] = None
    keyed["options"].pop("device", None)  # where it ran is recorded, but a render from any device will do
    keyed["reference"] = song.input_hashes.get("reference")
    return {"engine": engine_key, "harmony": score.harmony_dict(), "request": keyed}


def vocal_request_for(song: Song, reuse_dir: Path | None = None) -> VocalRequest:
    """What the song asks of its vocal engine. `reuse_dir`: where an engine may keep reusable work
    (kokoro, diffsinger: their phrases), shared by every song rendered with this stage cache."""
    return VocalRequest(seed=song.spec.seed, language=song.language, voice=song.voice,
                        sample_rate=SAMPLE_RATE, options=song.vocal_options, reuse_dir=reuse_dir)


def vocals_inputs(song: Song, score: Score, engine, reuse_dir: Path | None = None) -> tuple:
    """(the VocalRequest, the vocals stage's cache inputs)."""
    request = vocal_request_for(song, reuse_dir)
    sung = {"tempo": score.tempo_bpm, "total_seconds": score.total_seconds,
            "notes": [asdict(n) for n in score.notes], "words": [asdict(w) for w in score.words],
            "lines": [asdict(line) for line in score.lines],
            "backing_notes": [asdict(n) for n in score.backing_notes],  # the backing part follows the chords too
            "backing_words": [asdict(w) for w in score.backing_words],
            "sections": [[s.name, s.kind] + ([s.key] if s.key is not None else []) for s in score.sections],
            "key": score.key}
    if score.tempo_changes:  # the notes' seconds follow the tempo map (a song in one tempo keeps its key)
        sung["tempo_changes"] = [asdict(change) for change in score.tempo_changes]
    keyed = asdict(request)  # the cache key holds the voice model's content, not where it lies
    del keyed["reuse_dir"]  # where reusable work is kept is not what is sung
    for option in ("piper_model", "kokoro_pack", "diffsinger_voicebank"):
        if isinstance(keyed["options"].get(option), str) and song.artist is not None:
            keyed["options"][option] = song.artist.sha256  # profile + model/pack file, hashed when it loaded
    return request, {"engine": asdict(engine.describe(request)), "score": sung, "request": keyed}


def stems_inputs(backing_hash: str, vocals_hash: str, score_hash: str, slug: str) -> dict:
    return {"backing": backing_hash, "vocals": vocals_hash, "score": score_hash, "slug": slug}  # slug: <slug>.mid


def mix_inputs(backing_hash: str, vocals_hash: str, config: MixConfig) -> dict:
    return {"backing": backing_hash, "vocals": vocals_hash, "mix": MIX_VERSION, "settings": config.key()}


def master_inputs(mix_hash: str, profile, config: MasteringConfig) -> dict:
    return {"mix": mix_hash, "profile": profile.to_dict(), "chain": config.key()}


def _tag_inputs(tags) -> dict:
    """The tags as cache inputs: the cover by its hash, not its bytes."""
    inputs = {k: v for k, v in asdict(tags).items() if k != "cover_image"}
    inputs["cover_sha256"] = hashlib.sha256(tags.cover_image).hexdigest() if tags.cover_image else None
    return inputs


def lyrics_inputs(song: Song, lines: list, seconds: float) -> dict:
    spec = song.spec
    return {"lines": [asdict(line) for line in lines], "title": spec.title, "artist": spec.artist,
            "album": spec.release.album, "language": song.language, "seconds": round(seconds, 3), "slug": song.slug}


# Each profile's files, by role: (file name after the slug, what it is)
DELIVERY_FILES = {
    "wav": (".wav", "PCM WAV, plain header, no tags"),
    "flac": (".flac", "FLAC, fully tagged"),
    "mp3_320": (".320.mp3", "MP3 320 kbps CBR, ID3v2.4"),
    "mp3_v0": (".v0.mp3", "MP3 LAME V0 VBR, ID3v2.4"),
    "report": (".report.png", "waveform, short-term loudness and spectrum"),
}


def export_inputs(master_hash: str, tags, profile, slug: str, signer: str) -> dict:
    # the slug names the entry's files: a new slug (slugify's rules changed) is a new entry; `signer`
    # is the signing identity's certificate fingerprint (who signs the Content Credentials)
    return {"master": master_hash, "tags": _tag_inputs(tags), "profile": profile.to_dict(), "slug": slug,
            "signer": signer}


# Which of a song's source files each stage's inputs come from (directly or through the score).
# Stages that read only other stages' outputs (stems, mix, master) are explained by those.
STAGE_READS = {
    "compose": ("spec", "lyrics", "melody", "artist_profile"),
    "backing": ("spec", "reference", "soundfont"),
    "vocals": ("spec", "lyrics", "melody", "artist_profile"),
    "lyrics": ("spec", "lyrics", "melody", "artist_profile", "album"),
    "export": ("spec", "lyrics", "melody", "artist_profile", "album", "artwork"),
}


# An input's name in words, for reasons that no source file explains.
INPUT_WORDS = {
    "version": "millamusic's {stage} code changed", "composer": "the composer's code changed",
    "engine": "the engine or its model changed", "request": "the engine's settings changed",
    "harmony": "the chords changed", "score": "the score changed", "backing": "the backing's output changed",
    "vocals": "the vocals' output changed", "mix": "the mix changed", "settings": "the mix settings changed",
    "profile": "the delivery profile changed", "chain": "the mastering chain's settings changed", "master": "the master changed", "tags": "the tags changed",
    "lines": "the sung lyric timing changed", "mixes": "a track's mix changed", "slug": "the file names changed",
    "window": "the preview's bars changed", "source": "what the preview is cut or mixed from changed",
}


def song_sources(song: Song) -> dict[str, list[str]]:
    """role -> [path, sha256] of every file the song is made from (remembered with each stage's
    inputs, so a later re-run can name the file that changed)."""
    sources = {"spec": [str(Path(song.path).resolve()), song.spec_sha256]}
    lyrics = Path(song.lyrics_file)
    if lyrics.is_file() and lyrics.resolve() != Path(song.path).resolve():
        sources["lyrics"] = [str(lyrics.resolve()), sha256_file(lyrics)]
    for role, path in (("melody", song.melody_path), ("reference", song.reference_path),
                       ("artwork", song.artwork_path), ("soundfont", song.soundfont_path),
                       ("album", song.album_path)):
        if path is not None and role in song.input_hashes:
            sources[role] = [str(Path(path).resolve()), song.input_hashes[role]]
    if song.artist is not None:
        sources["artist_profile"] = [str(Path(song.artist.path).resolve()), song.artist.sha256]
    return sources


def explain(stage: str, previous: dict | None, inputs: dict, sources: dict | None) -> str:
    """Why `stage` runs: the song's files (among those it reads) that changed since its last run,
    else the inputs that changed, in words."""
    if previous is None:
        return "not rendered before"
    keys = changed_keys(previous["inputs"], inputs)
    if not keys:
        return "not in the cache (cleared, or its last run did not finish)"
    before = previous.get("context") or {}
    files = [_shown(sources[role][0]) for role in STAGE_READS.get(stage, ())
             if sources and role in sources and before.get(role) != sources[role]]
    if files:
        return f"{', '.join(files)} changed ({', '.join(keys)})"
    return "; ".join(INPUT_WORDS.get(key, f"{key} changed").format(stage=stage) for key in keys)


def _shown(path: str) -> str:
    """A path as the user typed it, more or less: relative to the working folder when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else Path(relative).as_posix()


def album_master_inputs(profile, mixes: list[tuple[str, str]], config: MasteringConfig) -> dict:
    """The album_master stage's cache inputs: the profile, the chain's settings and every track's (slug, mix hash)."""
    return {"profile": profile.to_dict(), "chain": config.key(), "mixes": [list(mix) for mix in mixes]}


@dataclass(frozen=True)
class RenderOptions:
    out_root: Path
    cache_dir: Path
    force: bool = False
    backing: str | None = None  # engine overrides from the CLI
    vocals: str | None = None
    profiles: tuple[str, ...] | None = None  # delivery profiles (millamusic.profiles), overriding the spec
    soundfont: Path | None = None  # the arranger plays its parts with this .sf2 (through TinySoundFont)
    model: str | None = None  # the backing engine's checkpoint (MusicGen: hub id or folder), overriding the spec
    device: str | None = None  # where a neural backing engine runs (auto, cpu, cuda, mps), overriding the spec
    acknowledge_noncommercial: bool = False  # release with a non-commercial model on purpose (licence guard)
    mix: MixConfig = MIX  # the mix's settings (keyed into the mix stage)
    mastering: MasteringConfig = MASTERING  # the mastering chain's settings (keyed into the master stage)
