"""The render stamp: an unchanged re-render answered in milliseconds (docs/performance.md, issue 24).

After a full render (not a preview) the CLI records here every fact that render's outcome rests on:
the command line's options, the environment variables a render reads, the installed code
(millamusic's own files and every installed distribution), the signing identity's files, the
song's files (spec, lyrics, melody, reference, artwork, soundfont, artist profile and the voice
files it names), the cache entries and re-run memos the release uses, and the published release
(release.json and, by publish's own rule, every file it lists). `millamusic render` with the same
command reads the stamp before it loads anything heavy: when every fact still holds, the normal
path would find every stage in the cache and publish nothing, so the stamp's result is replayed
as that render would report it (every stage cached), and the render record `cache gc` counts is
written as it would write it. Any fact that differs, or a stamp that cannot be read, sends the
command down the normal path, which is the truth: the stamp only ever skips work whose answer it
already holds. Stdlib and a few light modules only, so that checking it costs no start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import millamusic
from millamusic.core import cache as stage_cache
from millamusic.pipeline.published import PublishedRelease, stage_label
from millamusic.release.signing import CERT_ENV, DIR_ENV, KEY_ENV, identity_dir

if TYPE_CHECKING:  # typing only: the spec machinery is what the fast path must not load
    from millamusic.spec.song import Song

STAMP_VERSION = 1  # bump when what a stamp records, or how it is checked, changes
HASH_UP_TO = 8 << 20  # files up to this size are hashed on every check; larger ones compared by stat
RACY_NS = 2_000_000_000  # a file changed this close to the stamp could change again unseen in the same tick
# A file whose ctime is this close to the render's start, or later, may have changed while the render read it
# (file times come from a clock that lags by up to a tick): the render then leaves no stamp.
SETTLE_NS = 50_000_000
# Every environment variable a render reads (grep environ/getenv under src/): the cache, the signing
# identity, where the local identity lives, and where a hub checkpoint would be found.
ENV_READ = ("MILLAMUSIC_CACHE", CERT_ENV, KEY_ENV, DIR_ENV, "XDG_DATA_HOME", "HOME", "HF_HOME", "HF_HUB_CACHE",
            "HF_HUB_OFFLINE")
# Engines whose cache keys read something the stamp cannot see cheaply (MusicGen: the hub cache's checkpoint)
NOT_STAMPED_ENGINES = frozenset({"musicgen"})


@dataclass(frozen=True)
class RenderCall:
    """What the command line asked for, as far as it changes the outcome (not --json: how it is shown)."""

    spec: Path
    out_root: Path
    cache_dir: Path
    backing: str | None = None
    vocals: str | None = None
    profiles: tuple[str, ...] | None = None
    soundfont: Path | None = None
    model: str | None = None
    device: str | None = None
    acknowledge_noncommercial: bool = False
    catalogue: Path | None = None

    def facts(self) -> dict:
        def real(path: Path | None) -> str | None:
            return None if path is None else str(Path(path).resolve())

        # the spec's path as given too: release.json records it so (a new form is a new release.json)
        return {"spec": real(self.spec), "spec_as_given": str(self.spec), "out_root": real(self.out_root),
                "cache_dir": real(self.cache_dir),
                "backing": self.backing, "vocals": self.vocals,
                "profiles": list(self.profiles) if self.profiles is not None else None,
                "soundfont": real(self.soundfont), "model": self.model, "device": self.device,
                "acknowledge_noncommercial": self.acknowledge_noncommercial, "catalogue": real(self.catalogue)}

    @property
    def path(self) -> Path:
        """OUT/.millamusic/stamps/<hash of the spec's path>.json: one stamp per spec and output folder."""
        name = hashlib.sha256(str(Path(self.spec).resolve()).encode()).hexdigest()[:32]
        return Path(self.out_root).resolve() / ".millamusic" / "stamps" / f"{name}.json"


@dataclass(frozen=True)
class Replay:
    """An unchanged render's answer: what the CLI prints for it."""

    title: str
    result: dict  # RenderResult.to_dict() as the all-cached render reports it
    warnings: tuple[tuple[str, str], ...]  # (stage, "warning: ...") that a cached run shows again


# --- facts ------------------------------------------------------------------------------------

def installed_code(package: Path | None = None) -> str:
    """A fingerprint of the code a render runs: every file of the millamusic package (size, mtime)
    and every installed distribution on sys.path (its dist-info's name and mtime), plus Python's
    own version. Stats only: a few milliseconds."""
    digest = hashlib.sha256(f"{millamusic.__version__}\n{sys.version}\n{sys.executable}\n".encode())
    package = package or Path(millamusic.__file__).parent
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{os.path.relpath(os.path.join(folder, name), package)}:{stat.st_size}:"
                          f"{stat.st_mtime_ns}\n".encode())
    for entry in dict.fromkeys(os.path.abspath(p or ".") for p in sys.path):
        try:
            with os.scandir(entry) as listing:
                names = sorted((e.name, e.stat().st_mtime_ns) for e in listing
                               if e.name.endswith((".dist-info", ".egg-info", ".pth", ".egg-link")))
        except OSError:  # a zip or a folder that is gone: its own stat stands for it
            names = [(entry, _stat_of(entry))]
        digest.update(f"{entry}:{names}\n".encode())
    return digest.hexdigest()


def _stat_of(path: str | Path) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _sha256(path: str | Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _file_fact(path: Path, written: Path | None, now_ns: int) -> dict:
    """How a file is checked later: by content when small, by stat (device, inode, size, mtime, ctime)
    when large. ValueError when a large file changed too recently for its stat to be trusted."""
    stat = _stat_of(path)
    if stat is None:
        raise ValueError(f"{path} cannot be read")
    fact = {"written": str(written) if written is not None else None, "path": str(path)}
    if stat[2] <= HASH_UP_TO:
        return {**fact, "sha256": _sha256(path)}
    if now_ns - max(stat[3], stat[4]) < RACY_NS:
        raise ValueError(f"{path} changed less than {RACY_NS / 1e9:.0f} s ago")
    return {**fact, "stat": stat}


def _tree(folder: str | Path) -> list[list]:
    """[path relative to `folder`, *its stat (none when it cannot be read)] of every file under it, in order."""
    rows = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        rows += [[os.path.relpath(os.path.join(root, name), folder), *(_stat_of(os.path.join(root, name)) or [])]
                 for name in sorted(files)]
    return rows


def _folder_fact(folder: Path, written: Path | None, now_ns: int) -> dict:
    """A folder (a DiffSinger voicebank) by the stat of every file in it."""
    tree = _tree(folder)
    for path, *stat in tree:
        if not stat or now_ns - max(stat[3], stat[4]) < RACY_NS:
            raise ValueError(f"{os.path.join(folder, path)} changed less than {RACY_NS / 1e9:.0f} s ago")
    return {"written": str(written) if written is not None else None, "path": str(folder), "tree": tree}


def _fact_holds(fact: dict) -> str | None:
    """None when the file or folder is as recorded; else what differs."""
    path = fact["path"]
    if fact["written"] is not None and os.path.realpath(fact["written"]) != path:
        return f"{fact['written']} now points elsewhere"
    if "sha256" in fact:
        return None if _sha256(path) == fact["sha256"] else f"{path} changed"
    if "stat" in fact:
        return None if _stat_of(path) == fact["stat"] else f"{path} changed"
    return None if _tree(path) == fact["tree"] else f"{path} changed"


def song_files(song: Song, sources: dict, soundfont: Path | None) -> list[tuple[str, Path, Path | None, str | None]]:
    """(role, resolved path, path as the spec or profile writes it, sha256 the render read or None)
    of every file and folder the song's render reads. `sources`: pipeline.stages.song_sources(song)
    (passed in: that module loads the whole pipeline)."""
    base = Path(song.path).resolve().parent
    spec = song.spec
    written = {"melody": spec.melody, "reference": spec.reference, "artwork": spec.artwork,
               "soundfont": spec.soundfont, "artist_profile": spec.artist_profile,
               "lyrics": spec.lyrics if "\n" not in spec.lyrics else None}
    files = [("spec", Path(song.path).resolve(), Path(song.path).absolute(), song.spec_sha256)]
    for role, (path, sha256) in sources.items():
        if role == "spec":
            continue
        as_written = base / written[role] if written.get(role) else None
        files.append((role, Path(path), as_written, None if role == "artist_profile" else sha256))
    if song.artist is not None:
        voice, folder = song.artist.profile.voice, Path(song.artist.path).parent
        if song.artist.piper_model_path is not None:
            files.append(("piper_model", song.artist.piper_model_path, folder / voice.piper_model, None))
            config = Path(f"{song.artist.piper_model_path}.json")  # the voice's config, read beside it
            files.append(("piper_config", config, Path(f"{folder / voice.piper_model}.json"), None))
        if isinstance(song.artist.kokoro_pack, str) and Path(song.artist.kokoro_pack).is_absolute():
            files.append(("kokoro_pack", Path(song.artist.kokoro_pack), folder / voice.kokoro.pack, None))
        if song.artist.voicebank_path is not None:
            files.append(("voicebank", song.artist.voicebank_path, folder / voice.diffsinger.voicebank, None))
    if soundfont is not None:
        files.append(("--soundfont", Path(soundfont).resolve(), None, None))
    return files


def identity_facts(now_ns: int) -> list[dict]:
    """The signing identity's files, as load_identity would read them (a missing local identity is
    created by the next render: the stamp then no longer holds)."""
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    paths = [Path(cert), Path(key)] if cert and key else [identity_dir() / "chain.pem", identity_dir() / "key.pem"]
    return [_file_fact(path, None, now_ns) for path in paths]


# --- the stamp --------------------------------------------------------------------------------

def write_stamp(call: RenderCall, song: Song, sources: dict, result: dict, warnings: list[tuple[str, str]],
                code_before: str, started_ns: int, engines: tuple[str, str],
                artist_digest: Callable[[], str | None] | None) -> str:
    """Record the facts of the render just finished (`result`: its RenderResult.to_dict();
    `sources`: pipeline.stages.song_sources(song); `code_before` and `started_ns`: installed_code()
    and time.time_ns() taken before the render read anything;
    `engines`: the backing and vocal engines' names; `artist_digest`: the artist profile's content
    hash (with the voice files it names) read again now, None when it no longer loads).
    Each file's fact is taken first, then checked against what the render read: a file changed
    during the render, before or after its fact was taken, leaves no stamp, or one that fails.
    Returns what was done, in words, for --debug. Writes no stamp when a fact cannot be trusted:
    the next render then takes the normal path and writes one."""
    path = call.path
    now_ns = time.time_ns()
    if set(engines) & NOT_STAMPED_ENGINES:
        remove_stamp(call)
        return f"no stamp: the {'/'.join(sorted(set(engines) & NOT_STAMPED_ENGINES))} engine reads the hub cache"
    if installed_code() != code_before:
        remove_stamp(call)
        return "no stamp: millamusic's code or an installed package changed during the render"
    try:
        facts = []
        for role, resolved, written, sha256 in song_files(song, sources, call.soundfont):
            fact = (_folder_fact(resolved, written, now_ns) if resolved.is_dir()
                    else _file_fact(resolved, written, now_ns))
            # then, was it what the render read? Not written since the render began (a file may be read
            # more than once), and as the render hashed it, or as the artist profile's digest, read again
            # below, says
            stats = [row[1:] for row in fact["tree"]] if "tree" in fact else [_stat_of(resolved)]
            if any(stat is None or max(stat[3], stat[4]) >= started_ns - SETTLE_NS for stat in stats):
                raise ValueError(f"{resolved} changed during the render (or just before it)")
            if sha256 is not None and (fact.get("sha256") or _sha256(resolved)) != sha256:  # large: hashed here
                raise ValueError(f"{resolved} changed during the render")
            facts.append({"role": role, **fact})
        identity = identity_facts(now_ns)
        if artist_digest is not None and artist_digest() != song.artist.sha256:
            raise ValueError(f"{song.artist.path} or a voice file it names changed during the render")
    except ValueError as reason:
        remove_stamp(call)
        return f"no stamp: {reason}"
    release_path = Path(result["release_path"])
    release_bytes = release_path.read_bytes()
    release = json.loads(release_bytes)
    if identity[0].get("sha256") != release["provenance"].get("certificate_sha256"):
        remove_stamp(call)
        return "no stamp: the signing certificate changed during the render"
    root = Path(call.out_root).resolve()
    masters, stems = root / "masters" / song.slug, root / "stems" / song.slug
    folders = [masters, stems] + sorted(p for p in masters.iterdir() if p.is_dir() and not p.name.startswith("."))
    cache = Path(call.cache_dir).resolve()
    entries = [[name.split("[")[0], stage["key"]] for name, stage in release["stages"].items()]
    stamp = {
        "stamp": STAMP_VERSION, "call": call.facts(), "env": {name: os.environ.get(name) for name in ENV_READ},
        "code": code_before, "title": song.spec.title, "slug": song.slug,
        "result": result, "warnings": [list(w) for w in warnings],
        "files": facts, "identity": identity,
        "release": {"path": str(release_path), "sha256": hashlib.sha256(release_bytes).hexdigest(),
                    "folders": {str(f): _listing(f) for f in folders}},
        "entries": entries,
        "memos": {str(memo): _sha256(memo) for memo in _memos(cache, song.slug, release["stages"])},
    }
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:  # the render is done and published: a stamp that cannot be written only costs the next run its shortcut
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(stamp, indent=1))
        os.replace(temp, path)
    except OSError as error:
        return f"no stamp: cannot write {path} ({error})"
    finally:
        temp.unlink(missing_ok=True)
    return f"stamp written: {path}"


def remove_stamp(call: RenderCall) -> None:
    """A render is about to change (or has changed) what the stamp describes."""
    try:
        call.path.unlink(missing_ok=True)
    except IsADirectoryError:  # not a stamp: never read as one
        pass


def _listing(folder: Path) -> list[str] | None:
    try:
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return None


def _memos(cache: Path, slug: str, stages: dict) -> list[Path]:
    """The re-run memos each stage rewrites on a hit (core.cache: last/<label>/<stage>.json; release.json
    names a profile's run of a stage "master[apple]")."""
    memos = []
    for name in stages:
        stage, _, variant = name.partition("[")
        memos.append(cache / "last" / stage_label(slug, variant.rstrip("]") or None) / f"{stage}.json")
    return memos


def replay(call: RenderCall) -> tuple[Replay | None, str]:
    """(the replayed answer, "") when the stamp for `call` still holds, else (None, why not)."""
    started = time.perf_counter()
    try:
        stamp = json.loads(call.path.read_bytes())
    except FileNotFoundError:
        return None, "no stamp (not rendered with this command before, or the last render changed something)"
    except (OSError, ValueError) as error:
        return None, f"stamp unreadable ({error})"
    try:
        why = _differs(call, stamp)
        if why:
            return None, why
        cache = stage_cache.StageCache(Path(call.cache_dir))
        with cache.in_use():  # as a render holds it: `cache gc --delete` removes nothing meanwhile
            for stage, key in stamp["entries"]:  # the stage cache's own hit check, as the normal path makes it
                record, _ = stage_cache.read_entry(cache.root / stage / key,
                                                   hash_up_to=stage_cache.EAGER_VERIFY_BYTES)
                if record is None or "record_sha256" not in record:
                    return None, f"cache entry {stage}/{key[:16]} is missing, damaged or from an older version"
            result = stamp["result"]
            stages = [{**stage, "cached": True, "seconds": 0.0, "why": ""} for stage in result["stages"]]
            warnings = tuple((str(stage), str(text)) for stage, text in stamp["warnings"])
            cache.record_render(stamp["slug"], [key for _, key in stamp["entries"]], result["release_path"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:  # not a stamp we wrote
        return None, f"stamp unreadable ({type(error).__name__}: {error})"
    except OSError as error:  # a file it names cannot be read: the normal path says what is wrong, if anything
        return None, f"cannot check the stamp ({error})"
    answer = {**result, "stages": stages, "seconds": time.perf_counter() - started}
    return Replay(stamp["title"], answer, warnings), ""


def _differs(call: RenderCall, stamp: dict) -> str:
    """What no longer holds, cheapest first; "" when everything does."""
    if stamp.get("stamp") != STAMP_VERSION:
        return "stamp from another millamusic version"
    if stamp["call"] != call.facts():
        changed = [k for k, v in call.facts().items() if stamp["call"].get(k) != v]
        return f"the command line differs ({', '.join(changed)})"
    env = {name: os.environ.get(name) for name in ENV_READ}
    if stamp["env"] != env:
        return f"environment differs ({', '.join(k for k in env if stamp['env'].get(k) != env[k])})"
    if stamp["code"] != installed_code():
        return "millamusic's code or an installed package changed"
    for fact in [*stamp["identity"], *stamp["files"]]:
        why = _fact_holds(fact)
        if why:
            return why
    release = stamp["release"]
    for folder, names in release["folders"].items():
        if _listing(Path(folder)) != names:
            return f"{folder} holds other files than the release"
    why = _published(Path(release["path"]), release["sha256"], Path(call.out_root).resolve())
    if why:
        return why
    for memo, sha256 in stamp["memos"].items():
        if _sha256(memo) != sha256:
            return f"re-run memo {memo} changed (another render of this song)"
    return ""


def _published(release_path: Path, sha256: str, root: Path) -> str:
    """Whether the release is still in place, by publish's own rule (pipeline.published.PublishedRelease):
    release.json as written, and every file it lists at its size, modified no later than it."""
    published = PublishedRelease.read(root, release_path)
    if published.sha256 is None:
        return f"{release_path} is gone"
    if published.sha256 != sha256:
        return f"{release_path} changed"
    moved = published.first_moved()
    if moved is not None:
        return f"{root / moved} {'changed since it was published' if (root / moved).exists() else 'is gone'}"
    return ""
