import os
from pathlib import Path

import pytest

from millamusic.core.cache import StageCache


def test_miss_then_hit_and_why(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def produce(folder):
        calls.append(1)
        (folder / "out.txt").write_text("hello")

    first = cache.run("mix", {"a": 1, "b": 2}, produce, label="song")
    second = cache.run("mix", {"a": 1, "b": 2}, produce, label="song")
    assert (first.hit, second.hit, len(calls)) == (False, True, 1)
    assert first.key == second.key and first.content_hash == second.content_hash
    assert first.why == "not rendered before"
    third = cache.run("mix", {"a": 1, "b": 3}, produce, label="song")
    assert not third.hit and third.why == "changed: b"
    forced = cache.run("mix", {"a": 1, "b": 3}, produce, force=True, label="song")
    assert not forced.hit and forced.why.startswith("forced") and len(calls) == 3


def test_failed_stage_leaves_no_entry_and_no_temp(tmp_path):
    cache = StageCache(tmp_path)

    def explode(folder):
        (folder / "half.npy").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.run("master", {"x": 1}, explode)
    assert os.listdir(tmp_path / "master") == []


def test_content_hash_ignores_location(tmp_path):
    a = StageCache(tmp_path / "a").run("s", {"k": 1}, lambda f: (f / "x").write_text("same"))
    b = StageCache(tmp_path / "b").run("s", {"k": 1}, lambda f: (f / "x").write_text("same"))
    assert a.content_hash == b.content_hash


def test_sweep_removes_only_dead_writers_temps(tmp_path):
    import subprocess
    import sys

    from millamusic.core.cache import owner_tag, sweep_stale_temps

    dead = subprocess.run([sys.executable, "-c", "from millamusic.core.cache import owner_tag; print(owner_tag())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / f".tmp-0123456789abcdef-{dead}-aaaa0000").mkdir()
    (tmp_path / f".song.wav.{dead}.beef.tmp.wav").write_bytes(b"half")
    live = tmp_path / f".song.flac.{owner_tag()}.cafe.tmp.flac"
    live.write_bytes(b"being written")
    other_host = tmp_path / ".song.mp3.1@some_other_host.f00d.tmp.mp3"
    other_host.write_bytes(b"?")
    kept = tmp_path / "song.wav"
    kept.write_bytes(b"master")
    assert sweep_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([live.name, other_host.name, "song.wav", "stage"])


def test_sweep_walks_past_a_folder_that_vanishes_and_never_into_a_live_temp(tmp_path, monkeypatch):
    """Another process publishes beside the sweep (an album's tracks on Ray): a folder it swaps
    away while the sweep walks is skipped, not an error; what a live writer's temp holds is its own."""
    from millamusic.core import cache
    from millamusic.core.cache import owner_tag, sweep_stale_temps

    live = tmp_path / "masters" / f".track-one.tmp-{owner_tag()}-a3c7"
    (live / "spotify").mkdir(parents=True)
    (live / "spotify" / f".x.{owner_tag()}.tmp.wav").write_bytes(b"mine")
    (tmp_path / "masters" / "track-two" / "spotify").mkdir(parents=True)
    real_scandir = os.scandir

    def vanishing(path):
        if Path(path).name == "track-two":  # swapped away by its publisher between listing and walking
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr(cache.os, "scandir", vanishing)
    assert sweep_stale_temps(tmp_path) == 0
    assert (live / "spotify" / f".x.{owner_tag()}.tmp.wav").is_file()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombie detection reads /proc")
def test_a_zombie_writer_counts_as_dead(tmp_path):
    """A killed build's orphaned workers stay zombies until reaped: their temps must be swept."""
    import subprocess
    import time

    from millamusic.core.cache import owner_alive, owner_tag

    child = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        tag = owner_tag().replace(str(os.getpid()), str(child.pid), 1)
        assert not owner_alive(tag)
        assert owner_alive(owner_tag())  # this process is alive
    finally:
        child.wait()
    assert not owner_alive(tag)  # reaped: gone


# --- compact audio in cache entries (core.audio.save_pcm24) ----------------------------------------


def _noise(frames: int = 44100, peak: float = 0.9):
    import numpy as np

    from millamusic.core.audio import Audio

    samples = np.random.default_rng(7).uniform(-peak, peak, (2, frames)).astype(np.float32)
    samples[0, :3] = (peak, -peak, 0.5 / (1 << 23))  # the extremes, and a value on a rounding boundary
    return Audio(samples, 44100)


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_pcm24_reads_back_as_its_24_bit_steps_and_stores_again_to_the_same_bytes(tmp_path, suffix):
    import numpy as np

    from millamusic.core.audio import load_pcm24, save_pcm24
    from millamusic.release.pcm import quantize

    audio = _noise()
    save_pcm24(audio, tmp_path / f"a{suffix}")
    back = load_pcm24(tmp_path / f"a{suffix}")
    assert back.sample_rate == 44100 and back.samples.dtype == np.float32
    steps = np.rint(audio.samples.astype(np.float64) * (1 << 23)) / (1 << 23)
    assert np.array_equal(back.samples, steps.astype(np.float32))
    # a 24-bit delivery file made from what was stored holds what the float audio gave it
    assert np.array_equal(quantize(back, 24), quantize(audio, 24))
    save_pcm24(back, tmp_path / f"b{suffix}")
    assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_pcm24_wav_is_the_delivery_writers_bytes(tmp_path):
    from millamusic.core.audio import save_pcm24
    from millamusic.release.pcm import write_wav

    audio = _noise(peak=0.5)
    save_pcm24(audio, tmp_path / "cache.wav")
    write_wav(audio, tmp_path / "delivery.wav", bit_depth=24)
    assert (tmp_path / "cache.wav").read_bytes() == (tmp_path / "delivery.wav").read_bytes()


@pytest.mark.parametrize("bad", [1.0001, float("nan"), float("inf")])
def test_pcm24_refuses_what_it_would_clip(tmp_path, bad):
    from millamusic.core.audio import save_pcm24

    audio = _noise()
    audio.samples[1, 100] = bad
    with pytest.raises(ValueError, match="over full scale"):
        save_pcm24(audio, tmp_path / "a.flac")
    assert not (tmp_path / "a.flac").exists()


def test_pcm24_full_scale_plus_one_is_the_top_step(tmp_path):
    import numpy as np

    from millamusic.core.audio import Audio, load_pcm24, save_pcm24

    save_pcm24(Audio(np.array([[1.0, -1.0]], np.float32), 48000), tmp_path / "a.flac")
    back = load_pcm24(tmp_path / "a.flac")
    assert back.samples.tolist() == [[((1 << 23) - 1) / (1 << 23), -1.0]] and back.sample_rate == 48000


@pytest.mark.parametrize("peak", [0.5, 1.0])
def test_pcm24_wav_of_the_flac_is_the_delivery_writers_bytes_of_the_float_audio(tmp_path, peak):
    """publish writes a stem WAV from its cached FLAC (integer to integer): the same bytes write_wav gives
    the engine's float stem, full scale (+1.0, one step over the top) included."""
    import io

    from millamusic.core.audio import pcm24_wav, save_pcm24
    from millamusic.release.pcm import write_wav

    audio = _noise(peak=peak)
    save_pcm24(audio, tmp_path / "stem.flac")
    pcm24_wav(tmp_path / "stem.flac", tmp_path / "published.wav")
    write_wav(audio, tmp_path / "today.wav", bit_depth=24)
    in_memory = io.BytesIO()
    pcm24_wav(tmp_path / "stem.flac", in_memory)  # what the stems stage hashes
    assert (tmp_path / "published.wav").read_bytes() == (tmp_path / "today.wav").read_bytes() == in_memory.getvalue()


@pytest.mark.parametrize("peak", [0.5, 1.0])
def test_save_stem_knows_the_wav_publish_will_make(tmp_path, peak):
    """save_stem stores what save_pcm24 stores and returns the sha256 and size of the WAV pcm24_wav makes
    of that FLAC (what the stems stage lists), naming the writer; it leaves no file but the FLAC."""
    import hashlib

    from millamusic.core.audio import pcm24_wav, save_pcm24, save_stem, wav_facts_writer

    audio = _noise(peak=peak)
    facts = save_stem(audio, tmp_path / "stem.flac")
    save_pcm24(audio, tmp_path / "plain.flac")
    assert (tmp_path / "stem.flac").read_bytes() == (tmp_path / "plain.flac").read_bytes()
    pcm24_wav(tmp_path / "stem.flac", tmp_path / "published.wav")
    data = (tmp_path / "published.wav").read_bytes()
    assert facts == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "writer": wav_facts_writer()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.flac", "published.wav", "stem.flac"]
    assert wav_facts_writer().startswith("libsndfile ") and " probe " in wav_facts_writer()


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_S8"])
def test_pcm24_wav_refuses_a_flac_that_is_not_24_bit(tmp_path, subtype):
    import soundfile

    from millamusic.core.audio import pcm24_wav

    soundfile.write(str(tmp_path / "stem.flac"), _noise(peak=0.5).samples.T, 44100, subtype=subtype)
    with pytest.raises(ValueError, match=f"stem.flac is {subtype}, not the 24-bit PCM"):
        pcm24_wav(tmp_path / "stem.flac", tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("peak", [1.0001, 4.0])
def test_a_stem_over_full_scale_is_refused_at_the_engine_boundary(peak):
    """Stems are stored and published as 24-bit PCM: an engine's stem over full scale is an error naming
    the engine and the stem, never clipped on the way into the cache."""
    import numpy as np

    from millamusic import SAMPLE_RATE
    from millamusic.core.audio import Audio
    from millamusic.core.errors import RenderError
    from millamusic.pipeline.render import check_stems

    class Score:  # check_stems asks the score only for its length
        def total_frames(self, rate):
            return 1000

    ok = Audio(np.full((2, 1000), 0.5, np.float32), SAMPLE_RATE)
    loud = Audio(ok.samples.copy(), SAMPLE_RATE)
    loud.samples[1, 500] = -peak
    check_stems({"pad": ok, "top": Audio(np.full((2, 1000), 1.0, np.float32), SAMPLE_RATE)}, Score(), "x")
    with pytest.raises(RenderError, match=f"backing engine 'e' returned stem 'drums' peaking at {peak:.3f}, over full"):
        check_stems({"pad": ok, "drums": loud}, Score(), "backing engine 'e'")


def test_peak_of_is_max_abs_without_a_copy():
    import numpy as np

    from millamusic.core.audio import Audio, peak_of

    x = np.array([[0.25, -0.75, 0.5], [0.1, 0.2, -0.3]], np.float32)
    assert peak_of(x) == float(np.max(np.abs(x))) == 0.75 and Audio(x, 44100).peak() == 0.75
    assert peak_of(np.zeros((2, 0), np.float32)) == 0.0
    x[1, 2] = np.nan
    assert np.isnan(peak_of(x)), "a NaN must not hide: save_pcm24 refuses it"
