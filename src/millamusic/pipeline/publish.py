"""Publishing a render: masters/, stems/, lyrics/ and release.json swapped in whole, never half."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from millamusic import SAMPLE_RATE, __version__
from millamusic.core.audio import pcm24_wav
from millamusic.core.cache import CorruptEntry, Entry, owner_tag, sha256_file, sweep_stale_temps
from millamusic.core.errors import ExportError, disk_fault, is_disk_fault
from millamusic.core.files import fsync_dir, fsync_file, replace_folder
from millamusic.pipeline.published import PublishedRelease
from millamusic.pipeline.run import STEM_SOURCES, Run, StemWav
from millamusic.pipeline.stages import DELIVERY_FILES
from millamusic.release.credits import contains_ai, digital_source_type
from millamusic.release.distributor import ai_roles
from millamusic.release.pcm import check_wav_delivery
from millamusic.release.watermark import WATERMARK_STATUS

# --- publishing -------------------------------------------------------------------------------

def publish(run: Run, deliveries: dict, lyrics_entry: Entry, credits, tags, backing_info,
            vocals_info, seconds: float) -> tuple[dict[str, str], dict]:
    """Copy cache entries into masters/<slug>/<profile>/, stems/<slug>/ and lyrics/, with
    masters/<slug>/release.json describing them. Returns (role -> published path, profile -> loudness report).
    The stem WAVs are written from the backing's and vocals' 24-bit FLACs (the stems entry's stems.json
    names them and each WAV's sha256: an unchanged stem is left alone without decoding it).

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


def _publish(run: Run, publication: _Publication, root: Path, masters: Path, stems: Path, lyrics: Path,
             deliveries: dict, lyrics_entry: Entry, credits, tags, backing_info, vocals_info,
             seconds: float) -> tuple[dict[str, str], dict]:
    slug = run.song.slug

    for folder in (masters.parent, stems.parent, lyrics):  # temp files and staging of killed earlier runs
        sweep_stale_temps(folder)
    # masters/<slug>/ becomes exactly this render: say so when that drops an earlier render's profile
    dropped = sorted(p.name for p in masters.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name not in deliveries) if masters.is_dir() else []
    if dropped:
        run.progress("publish", f"note: masters/{slug}/{', '.join(dropped)}/ replaced by this render's profiles "
                                f"({', '.join(deliveries)}); render with --profile {','.join([*deliveries, *dropped])} "
                                "to keep them (their stages are still cached)")
    plan = []  # what each published file is made from (_Planned)
    for name, (_, _, export_entry) in deliveries.items():
        folder = _inside(root, masters / name)
        for role, (suffix, _) in DELIVERY_FILES.items():
            plan.append(_Planned.copy(export_entry, f"{slug}{suffix}", folder / f"{slug}{suffix}", f"{name}:{role}"))
    first_export = next(iter(deliveries.values()))[2]  # every profile's export holds the same answers
    plan.append(_Planned.copy(first_export, "distributor.txt", masters / "distributor.txt", "distributor"))
    plan.append(_Planned.copy(lyrics_entry, "lyrics.txt", masters / "lyrics.txt", "lyrics:txt"))
    plan.append(_Planned.copy(lyrics_entry, f"{slug}.lrc", lyrics / f"{slug}.lrc", "lyrics:lrc"))
    plan.append(_Planned.copy(lyrics_entry, f"{slug}.ttml", lyrics / f"{slug}.ttml", "lyrics:ttml"))
    stems_entry = run.entries["stems"]
    stem_files = [_Planned.copy(stems_entry, f"{slug}.mid", stems / f"{slug}.mid", "midi")]
    for name, wav in StemWav.listed(stems_entry).items():  # written from the backing's and vocals' FLACs
        source = run.entries[wav.stage]
        # the stems entry's key holds the backing's and vocals' content hashes: another FLAC here is a bug
        if source.files.get(wav.file, {}).get("sha256") != wav.source_sha256:
            raise RuntimeError(f"stems entry {stems_entry.key[:16]} lists {wav.file} of {wav.stage} "
                               f"with sha256 {wav.source_sha256[:16]}; this render's {wav.stage} entry "
                               f"{source.key[:16]} has another")
        stem_files.append(_Planned(source, wav.file, stems / f"{name}.wav", f"stem:{name}",
                                   {"sha256": wav.sha256, "bytes": wav.bytes}, stems_entry))
    plan += sorted(stem_files, key=lambda item: item.destination.name)  # release.json lists them by name
    files: dict[str, str] = {item.role: str(item.destination) for item in plan}

    def relative(path: str | Path) -> str:
        return Path(os.path.relpath(path, root)).as_posix()

    # each file as it will be published: its sha256 and size, from entry.json (or stems.json for a stem WAV)
    file_records = {relative(item.destination): item.want for item in plan}
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
                  "original": release.original.model_dump() if release.original else None,
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
        "ai_roles": ai_roles(credits, release.artwork_ai).to_dict(),
        "provenance": {"standard": "C2PA Content Credentials (c2pa-python)", "signed_files": "every wav, flac and mp3",
                       "watermark": WATERMARK_STATUS,
                       **json.loads((first_export.path / "signature.json").read_text())},
        "files": file_records,
    }
    release_path = masters / "release.json"
    files["release"] = str(release_path)
    published = PublishedRelease.read(root, release_path)
    stems_names = {item.destination.name for item in plan if item.destination.parent == stems}
    if _same_release(published, record, masters, deliveries) and published.folder_is(stems, stems_names):
        run.progress("publish", f"unchanged: masters/{slug}/ already holds this release")
        return files, loudness  # an unchanged re-render writes nothing
    in_place = {item.destination for item in plan if published.holds(item.destination, item.want)}
    stems_stay = published.folder_is(stems, stems_names) and all(
        item.destination in in_place for item in plan if item.destination.parent == stems)
    # Stem WAVs (decoded from their FLACs) are made two at a time beside the rest: libsndfile,
    # hashlib and fsync let go of the GIL (a cold render's 9 stems: ~2 s one after another).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="millamusic-publish") as pool:
        making = []
        for item in plan:
            destination = item.destination
            if destination not in in_place:
                if item.listed_by is None:
                    publication.copy(item.entry, item.name, destination)
                else:
                    temp = publication.path(destination)
                    making.append((destination, pool.submit(publication.wav, item, destination, temp)))
            elif destination.parent == lyrics or (destination.parent == stems and stems_stay):
                continue  # already in place, as this render would write it: left alone
            else:  # into its folder's new staging, without copying the bytes again
                publication.link(destination, destination)
        for destination, made in making:
            try:
                made.result()
            except BaseException:
                publication.writing = destination  # what the error message names
                for _, other in making:
                    other.cancel()
                raise
    publication.write(release_path, json.dumps(record, indent=1, ensure_ascii=False).encode())
    publication.commit()
    return files, loudness


@dataclass(frozen=True)
class _Planned:
    """One file to publish: `name` of cache entry `entry`, to `destination`; `want`: the published file's
    sha256 and size. A stem WAV (`listed_by`: the stems entry whose stems.json lists it) is written from
    the FLAC `name` (core.audio.pcm24_wav); every other file is the entry's own bytes."""

    entry: Entry
    name: str
    destination: Path
    role: str
    want: dict
    listed_by: Entry | None = None

    @classmethod
    def copy(cls, entry: Entry, name: str, destination: Path, role: str) -> "_Planned":
        return cls(entry, name, destination, role, {"sha256": entry.files[name]["sha256"],
                                                    "bytes": entry.files[name]["bytes"]})


def _same_release(published: PublishedRelease, record: dict, masters: Path, deliveries: dict) -> bool:
    """Whether the published release.json already describes `record` (its timestamp and stage timings
    aside), every file it lists is in place and masters/<slug>/ holds exactly its files."""
    if not published.record or _comparable(published.record) != _comparable(record):
        return False
    if published.first_moved() is not None:  # record["files"] is what release.json lists (compared above)
        return False
    return published.folder_is(masters, {*deliveries, "lyrics.txt", "distributor.txt", "release.json"}) and all(
        published.folder_is(masters / name, {f"{record['slug']}{suffix}" for suffix, _ in DELIVERY_FILES.values()})
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
        fsync_file(temp)  # one file at a time, as it is written: ~3x faster than a pile of dirty pages at the end

    def wav(self, item: _Planned, final: Path, temp: Path) -> None:
        """A stem WAV made from its FLAC (checked first, CorruptEntry) at `temp` (self.path(final), taken
        by the caller: this runs on publish's threads), then checked against the sha256 and size
        stems.json recorded for it: a mismatch (another libsndfile writing other header bytes, say)
        retires the stems entry, whose recomputation records what this machine writes."""
        pcm24_wav(item.entry.verified(item.name), temp)
        problems = check_wav_delivery(temp, bit_depth=24)
        if problems:
            raise ExportError(f"{final}: the WAV writer produced a non-delivery file: " + "; ".join(problems))
        wrote = {"sha256": sha256_file(temp), "bytes": temp.stat().st_size}
        if wrote != item.want:
            raise CorruptEntry(item.listed_by, f"{STEM_SOURCES} says {final.name} is {item.want['bytes']} bytes, "
                                               f"sha256 {item.want['sha256'][:16]}; made from {item.name} it is "
                                               f"{wrote['bytes']} bytes, sha256 {wrote['sha256'][:16]}")
        fsync_file(temp)

    def link(self, published: Path, final: Path) -> None:
        """A file already published (and unchanged) into its folder's new staging: a hard link where
        the file system has them (no bytes copied), else a copy."""
        self.writing = final
        temp = self.path(final)
        try:
            os.link(published, temp)
        except OSError:
            shutil.copyfile(published, temp)
            fsync_file(temp)

    def write(self, final: Path, data: bytes) -> None:
        self.writing = final
        temp = self.path(final)
        temp.write_bytes(data)
        fsync_file(temp)

    def commit(self) -> None:
        self.writing = None
        for staging in filter(None, self.folders.values()):  # the files are on disk: now the folders naming them
            for folder, _, _ in os.walk(staging, topdown=False):
                fsync_dir(Path(folder))
        for final in self.loose:
            self.writing = final
            os.replace(self.staged.pop(final), final)
            fsync_dir(final.parent)
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
