"""`millamusic cache` and `millamusic cache gc`: what is kept, what goes, and gc beside other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from millamusic.cli import main
from millamusic.core.cache import StageCache, owner_tag
from millamusic.core.errors import SpecError
from millamusic.pipeline.cache_admin import UNKNOWN, cache_usage, parse_size, plan_gc, run_gc

SLUG = "song-a"


def _take(cache: StageCache, n: int, *, size: int = 1000, stage: str = "mix", label: str = SLUG, record: bool = True):
    """One render of `label` whose only stage writes `size` bytes; its render record (if `record`)."""
    entry = cache.run(stage, {"take": n, "label": label}, lambda f: (f / "audio.bin").write_bytes(bytes([n]) * size),
                      label=label)
    if record:
        cache.record_render(label, [entry.key], None)
        time.sleep(0.002)  # records are ordered by their time
    return entry


def _release(out: Path, slug: str, keys: dict[str, str]) -> Path:
    path = out / "masters" / slug / "release.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"stages": {stage: {"key": key} for stage, key in keys.items()}}))
    return path


def _bytes(entry) -> int:
    """What an entry takes: its files and entry.json."""
    return sum(p.stat().st_size for p in entry.path.rglob("*") if p.is_file())


def _gc(*args: str):
    return CliRunner().invoke(main, ["cache", "gc", *args])


def test_keeps_the_last_renders_and_the_release_and_removes_the_rest(tmp_path):
    cache, out = StageCache(tmp_path / "cache"), tmp_path / "out"
    takes = [_take(cache, n) for n in range(4)]
    _release(out, SLUG, {"mix": takes[0].key})  # the published release is an old take
    plan = plan_gc(cache.root, out, keep_last=2)
    assert [e.key for e in plan.remove] == [takes[1].key]
    kept = {e.key: e.kept for e in plan.usage.entries}
    assert kept == {takes[0].key: "release", takes[1].key: "", takes[2].key: "last 2 render(s)",
                    takes[3].key: "last 2 render(s)"}
    assert plan.freed_bytes == _bytes(takes[1]) and plan.usage.total_bytes > 4000
    assert {e.song for e in plan.usage.entries} == {SLUG}

    dry = _gc("--cache-dir", str(cache.root), "--out", str(out), "--keep-last", "2")
    assert dry.exit_code == 0, dry.output
    assert f"would remove mix/{takes[1].key[:16]}" in dry.output and "dry run: nothing was deleted" in dry.output
    assert takes[1].path.is_dir(), "a dry run deleted"

    freed = _bytes(takes[1])
    done = _gc("--cache-dir", str(cache.root), "--out", str(out), "--keep-last", "2", "--delete", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert (summary["deleted"], summary["freed_bytes"], len(summary["remove"])) == (True, freed, 1)
    assert not takes[1].path.exists() and all(t.path.is_dir() for t in (takes[0], takes[2], takes[3]))
    assert sorted(p.name for p in (cache.root / "mix").iterdir()) == sorted(t.key for t in (takes[0], *takes[2:]))
    assert len(cache.render_records()[SLUG]) == 2, "records of removed takes stay"
    assert cache.run("mix", {"take": 3, "label": SLUG}, lambda f: None, label=SLUG).hit, "a kept entry is still a hit"


def test_latest_run_memo_keeps_an_unfinished_renders_entries(tmp_path):
    """A render that stopped after some stages wrote no record: the memo of each stage's last run keeps
    what a re-run will reuse."""
    cache = StageCache(tmp_path / "cache")
    old = _take(cache, 0)
    unfinished = _take(cache, 1, stage="backing", record=False)
    plan = plan_gc(cache.root, None)
    assert plan.remove == ()
    assert {e.key: e.kept for e in plan.usage.entries} == {old.key: "last 1 render(s)", unfinished.key: "last run"}


def test_entries_nothing_names_are_unknown_and_go(tmp_path):
    cache = StageCache(tmp_path / "cache")
    orphan = cache.run("mix", {"x": 1}, lambda f: (f / "a").write_bytes(b"12345"), label="")
    (cache.root / "last").joinpath("_", "mix.json").unlink()  # as from a cache written before records and memos
    usage = cache_usage(cache.root, None)
    assert [(e.song, e.kept, e.needed) for e in usage.entries] == [(UNKNOWN, "", False)]
    assert usage.rows()[0]["song"] == UNKNOWN and usage.needed_bytes == 0
    run_gc(cache.root, None)
    assert not orphan.path.exists()


def test_max_size_removes_oldest_first_and_says_when_kept_entries_are_over(tmp_path):
    cache = StageCache(tmp_path / "cache")
    takes = [_take(cache, n, size=100_000) for n in range(4)]  # takes 0-2 may go, oldest first
    total = plan_gc(cache.root, None).usage.total_bytes
    plan = plan_gc(cache.root, None, max_size=total - 150_000)
    assert [e.key for e in plan.remove] == [takes[0].key, takes[1].key] and not plan.over_max_size
    tight = plan_gc(cache.root, None, max_size=50_000)
    assert [e.key for e in tight.remove] == [t.key for t in takes[:3]] and tight.over_max_size
    said = _gc("--cache-dir", str(cache.root), "--max-size", "50kB")
    assert said.exit_code == 0, said.output
    assert "over --max-size 50kB" in said.output and "last 1 render(s)" in said.output
    roomy = plan_gc(cache.root, None, max_size=10 * total)
    assert roomy.remove == () and roomy.freed_bytes == 0


def test_a_file_also_linked_outside_the_cache_frees_nothing(tmp_path):
    cache = StageCache(tmp_path / "cache")
    old = _take(cache, 0, size=5000)
    _take(cache, 1, size=7000)
    published = tmp_path / "stems" / "audio.bin"
    published.parent.mkdir()
    os.link(old.path / "audio.bin", published)  # publish hard-links stems and masters to their entries
    plan = plan_gc(cache.root, None)
    assert [e.key for e in plan.remove] == [old.key] and plan.freed_bytes == _bytes(old) - 5000
    assert [(e.linked, e.freeable) for e in plan.remove] == [(5000, _bytes(old) - 5000)]
    assert plan.usage.to_dict()["linked_bytes"] == 5000
    assert run_gc(cache.root, None) == plan
    assert published.read_bytes() == bytes([0]) * 5000


def test_hard_links_inside_the_cache_are_counted_once(tmp_path):
    cache = StageCache(tmp_path / "cache")
    a = cache.run("backing", {"a": 1}, lambda f: (f / "drums.wav").write_bytes(b"x" * 4000), label=SLUG)
    b = cache.run("stems", {"b": 1}, lambda f: os.link(a.path / "drums.wav", f / "drums.wav"), label=SLUG)
    usage = cache_usage(cache.root, None)
    by_stage = {e.stage: e for e in usage.entries}
    assert by_stage["backing"].bytes + by_stage["stems"].bytes < 4000 + 4000 and b.path.is_dir()
    assert 4000 <= sum(e.bytes for e in usage.entries) < 8000


def test_preview_memos_count_under_their_song_and_keep_its_entries(tmp_path):
    """A preview's stages are remembered as "<slug>.<range>" (last/<slug>.<range>/): listed under the song,
    kept as its last run; an older preview of the same range (no record names it) may go."""
    cache = StageCache(tmp_path / "cache")
    old = cache.run("preview", {"take": 0}, lambda f: (f / "preview.npy").write_bytes(b"0" * 100),
                    label=f"{SLUG}.chorus-2")
    time.sleep(0.002)
    new = cache.run("preview", {"take": 1}, lambda f: (f / "preview.npy").write_bytes(b"1" * 100),
                    label=f"{SLUG}.chorus-2")
    bars = cache.run("preview_vocals", {"take": 0}, lambda f: (f / "lead.flac").write_bytes(b"2" * 100),
                     label=f"{SLUG}.bars-33-48")
    usage = cache_usage(cache.root, None)
    assert {(e.key, e.song, e.kept, e.needed) for e in usage.entries} == {
        (old.key, UNKNOWN, "", False), (new.key, SLUG, "last run", True), (bars.key, SLUG, "last run", True)}
    assert {(r["song"], r["stage"], r["entries"]) for r in usage.rows()} == {
        (SLUG, "preview", 1), (SLUG, "preview_vocals", 1), (UNKNOWN, "preview", 1)}
    run_gc(cache.root, None)
    assert not old.path.exists() and new.path.is_dir() and bars.path.is_dir()


def test_listing_per_song_and_stage(tmp_path):
    cache, out = StageCache(tmp_path / "cache"), tmp_path / "out"
    _take(cache, 0)
    latest = _take(cache, 1)
    _take(cache, 2, label="song-b", stage="backing")
    result = CliRunner().invoke(main, ["cache", "--cache-dir", str(cache.root), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    rows = {(r["song"], r["stage"]): r for r in shown["rows"]}
    assert set(rows) == {(SLUG, "mix"), ("song-b", "backing")}
    assert rows[(SLUG, "mix")]["entries"] == 2 and rows[(SLUG, "mix")]["needed_bytes"] == _bytes(latest)
    assert shown["needed_bytes"] == _bytes(latest) + rows[("song-b", "backing")]["bytes"]
    assert shown["total_bytes"] > 3000
    table = CliRunner().invoke(main, ["cache", "--cache-dir", str(cache.root), "--out", str(out)])
    assert table.exit_code == 0 and "song-b" in table.output and "needed by latest renders" in table.output


# --- hostile cases --------------------------------------------------------------------------------


@pytest.mark.parametrize("made", [False, True], ids=["missing", "empty"])
def test_gc_and_listing_of_a_missing_or_empty_cache(tmp_path, made):
    root = tmp_path / "cache"
    if made:
        root.mkdir()
    for args in (["cache"], ["cache", "gc"], ["cache", "gc", "--delete"]):
        result = CliRunner().invoke(main, [*args, "--cache-dir", str(root), "--out", str(tmp_path / "out")])
        assert result.exit_code == 0, result.output
    assert root.exists() == made, "looking at a missing cache created it"
    assert "0 entries" in _gc("--cache-dir", str(root)).output


@pytest.mark.parametrize("text", ["", "abc", "-1GB", "0", "2 XB", "1e9", "GB", "1..5GB"])
def test_bad_max_size_is_exit_2_with_a_fix(tmp_path, text):
    result = _gc("--cache-dir", str(tmp_path), "--max-size", text)
    assert result.exit_code == 2, result.output
    assert "--max-size" in result.output and "Fix: give bytes with a unit" in result.output
    assert "in the command line" in result.output and "song spec" not in result.output


def test_sizes_parse():
    assert [parse_size(t) for t in ("2GB", "500MB", "1.5GiB", "123", "10 kb", "3g")] == \
        [2_000_000_000, 500_000_000, int(1.5 * 2**30), 123, 10_000, 3_000_000_000]


@pytest.mark.parametrize("n", ["0", "-1"])
def test_keep_last_below_one_is_exit_2(tmp_path, n):
    result = _gc("--cache-dir", str(tmp_path), "--keep-last", n, "--delete")
    assert result.exit_code == 2, result.output
    assert "--keep-last" in result.output and "Fix: give 1 or more" in result.output
    assert "in the command line" in result.output and "song spec" not in result.output
    with pytest.raises(SpecError):
        plan_gc(tmp_path, None, keep_last=int(n))


HOLD = """
import sys, time
from millamusic.core.cache import StageCache
with StageCache(sys.argv[1]).in_use():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_gc_deletes_nothing_while_a_render_holds_the_cache(tmp_path):
    """Another process in a render (StageCache.in_use, as render and album builds hold it): gc --delete
    exits 4 and deletes nothing; once it is gone, gc goes ahead."""
    cache = StageCache(tmp_path / "cache")
    old = _take(cache, 0)
    _take(cache, 1)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cache.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        busy = _gc("--cache-dir", str(cache.root), "--delete")
        assert busy.exit_code == 4, busy.output
        assert "is using the cache" in busy.output and "Fix: run `millamusic cache gc --delete` again" in busy.output
        assert old.path.is_dir()
        dry = _gc("--cache-dir", str(cache.root))  # a dry run only reads: it still lists
        assert dry.exit_code == 0 and f"would remove mix/{old.key[:16]}" in dry.output
    finally:
        holder.kill()
        holder.wait()
    assert _gc("--cache-dir", str(cache.root), "--delete").exit_code == 0
    assert not old.path.exists()


WRITE = """
import sys, time
from pathlib import Path
from millamusic.core.cache import owner_tag
temp = Path(sys.argv[1]) / "mix" / f".tmp-0123456789abcdef-{owner_tag()}-aaaa0000"
temp.mkdir(parents=True)
(temp / "audio.bin").write_bytes(b"half")
print("writing", flush=True)
time.sleep(60)
"""


def test_gc_leaves_an_entry_another_process_is_writing(tmp_path):
    cache = StageCache(tmp_path / "cache")
    old = _take(cache, 0)
    _take(cache, 1)
    dead = tmp_path / "cache" / "mix" / ".tmp-fedcba9876543210-999999999@" f"{owner_tag().split('@')[1]}-bbbb0000"
    dead.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITE, str(cache.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        live = next((cache.root / "mix").glob(f".tmp-*-{writer.pid}@*"))
        plan = run_gc(cache.root, None)
        assert [e.key for e in plan.remove] == [old.key], "a temp is never an entry to remove"
        assert (live / "audio.bin").read_bytes() == b"half", "the live writer's temp was touched"
        assert not dead.exists(), "a dead writer's temp stays"
        assert not old.path.exists()
    finally:
        writer.kill()
        writer.wait()


# --- real renders ---------------------------------------------------------------------------------


def _render(spec: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow  # three renders of a short song
def test_renders_record_their_entries_gc_drops_the_old_take_and_a_re_render_reuses_the_rest(write_spec, tmp_path):
    import numpy as np

    from millamusic.core.audio import load_npy, resample
    from millamusic.mastering.chain import master
    from millamusic.mastering.config import MASTERING
    from millamusic.release.pcm import decode, quantize
    from millamusic.release.provenance import unsigned_bytes
    from millamusic.spec.profiles import PROFILES

    out = tmp_path / "out"
    cache = StageCache(out / ".millamusic" / "cache")
    _render(write_spec(seed=3), out)
    spec = write_spec(seed=4)  # a new take of the same song: every stage but none of the first's entries
    second = _render(spec, out)
    slug = second["slug"]
    records = cache.render_records()[slug]
    assert len(records) == 2 and records[0].release == second["release_path"]
    assert set(records[0].keys) == {s["key"] for s in json.loads(Path(second["release_path"]).read_text())
                                    ["stages"].values()}

    plan = plan_gc(cache.root, out)
    first_only = set(records[1].keys) - set(records[0].keys)
    assert {e.key for e in plan.remove} == first_only and plan.freed_bytes > 0
    result = CliRunner().invoke(main, ["cache", "gc", "--out", str(out), "--delete"])
    assert result.exit_code == 0, result.output
    stems_before = {p.name: p.read_bytes() for p in (out / "stems" / slug).iterdir()}
    again = _render(spec, out)
    assert all(stage["cached"] for stage in again["stages"]), again["stages"]
    # the stems entry holds the MIDI and which FLAC each stem WAV is made from, no audio of its own
    stems_entry = next(Path(e.path) for e in cache_usage(cache.root, out).entries if e.stage == "stems" and e.needed)
    assert sorted(p.name for p in stems_entry.iterdir()) == sorted(["entry.json", "stems.json", f"{slug}.mid"])
    assert {p.name: p.read_bytes() for p in (out / "stems" / slug).iterdir()} == stems_before

    # the master is stored as 24-bit FLAC: the 24-bit delivery WAV holds exactly what the float master
    # would have given, and the same again from a fresh render (--force) as from the cache
    entry = next(e for e in cache_usage(cache.root, out).entries if e.stage == "master" and e.needed)
    mix_entry = next(e for e in cache_usage(cache.root, out).entries if e.stage == "mix" and e.needed)
    profile = PROFILES["spotify"]
    mastered, _ = master(resample(load_npy(Path(mix_entry.path) / "mix.npy"), profile.sample_rate), profile, MASTERING)
    wav = Path(again["files"]["spotify:wav"])
    assert np.array_equal(quantize(decode(wav), 24), quantize(mastered, 24))
    assert Path(entry.path, "master.flac").is_file() and not Path(entry.path, "master.npy").exists()
    cached = unsigned_bytes(wav)
    _render(spec, out, "--force")
    assert unsigned_bytes(wav) == cached, "a fresh render gave another master"
    assert {p.name: p.read_bytes() for p in (out / "stems" / slug).iterdir()} == stems_before


def test_gc_keeps_the_newest_record_of_each_release_still_there(tmp_path):
    """Records past --keep-last go, except each song's newest record of a release that still exists
    (rendered into another --out, say): its entries stay known to the next gc."""
    cache = StageCache(tmp_path / "cache")
    takes = [cache.run("mix", {"take": n}, lambda f, n=n: (f / "a").write_bytes(bytes([n])), label=SLUG)
             for n in range(4)]
    elsewhere = _release(tmp_path / "other-out", SLUG, {"mix": takes[0].key})
    gone = tmp_path / "deleted-out" / "masters" / SLUG / "release.json"
    here = _release(tmp_path / "out", SLUG, {"mix": takes[3].key})
    for take, release in zip(takes, [elsewhere, gone, here, here]):
        cache.record_render(SLUG, [take.key], str(release))
        time.sleep(0.002)
    run_gc(cache.root, tmp_path / "out")
    assert [r.release for r in cache.render_records()[SLUG]] == [str(here), str(elsewhere)]
    kept = {e.key for e in cache_usage(cache.root, tmp_path / "out").entries}
    assert kept == {takes[0].key, takes[3].key}, "the take behind the release in other-out went"
    run_gc(cache.root, tmp_path / "out")  # and the next gc still knows it
    assert {e.key for e in cache_usage(cache.root, tmp_path / "out").entries} == kept
