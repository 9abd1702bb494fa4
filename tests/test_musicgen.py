"""The MusicGen backing engine on tiny random checkpoints built in code (tests/musicgen_tiny.py).

They are saved to a temp folder and loaded through `from_pretrained`, the same path a real
checkpoint takes; nothing is downloaded. What random weights cannot show (that the music is
good) is measured in bench/musicgen.py and docs/musicgen.md; these check the machinery:
windows, exact lengths, reproducibility, melody conditioning, errors and the licence guard.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from millamusic.cli import main
from millamusic.core.errors import EngineUnavailable, RenderError
from tests.conftest import SHORT_SONG
from tests.musicgen_tiny import build_tiny_musicgen
from tests.signals import sine

torch = pytest.importorskip("torch")  # the [musicgen] extra; .ci/run installs it, so this runs in CI
pytestmark = pytest.mark.slow  # runs tiny MusicGen checkpoints: 2-7 s a test

WINDOWED = {"window_seconds": 4, "context_seconds": 2}  # a 10 s song takes several windows


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    base = tmp_path_factory.mktemp("checkpoints")
    return {
        "plain": build_tiny_musicgen(base / "plain"),
        "melody": build_tiny_musicgen(base / "melody", melody=True),
        "stereo": build_tiny_musicgen(base / "stereo", stereo=True),
        "unlicensed": build_tiny_musicgen(base / "unlicensed", licence=None),
        "mit": build_tiny_musicgen(base / "mit", licence="mit"),
    }


def _score_and_request(tmp_path: Path, options: dict, *, seed: int = 3, extra: str = ""):
    from millamusic.compose import compose
    from millamusic.engines.base import BackingRequest
    from millamusic.spec.song import load_song

    (tmp_path / "songs").mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "songs" / "tiny.yaml"
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=seed, extra=extra))
    song = load_song(spec)
    request = BackingRequest(seed=seed, genre="pop", style=("synth-pop",), sample_rate=44100, options=options,
                             reference=str(song.reference_path) if song.reference_path else None)
    return compose(song), request


def _render(tmp_path, options, **kwargs):
    from millamusic.engines.musicgen import MusicGen

    score, request = _score_and_request(tmp_path, options, **kwargs)
    return score, MusicGen().render(score, request)


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("total", [1, 100, 101, 250, 1234])
def test_windows_cover_the_song_once_each_full_length(total):
    from millamusic.engines.musicgen import plan_windows

    windows = plan_windows(total, 100, 40)
    assert windows[0].start == windows[0].new_start == 0
    assert windows[-1].end == total
    for previous, window in zip(windows, windows[1:]):
        assert window.new_start == previous.end  # new frames follow on without gap or overlap
        assert window.end - window.start == 100  # every continuation sees a full window
        assert window.new_start - window.start >= 40  # and at least the asked context
    if total <= 100:
        assert len(windows) == 1 and windows[0].end == total


def test_windowed_generation_has_exact_length_and_keeps_its_context(checkpoints):
    from millamusic.engines.musicgen import (
        choose_dtype,
        decode_codes,
        generate_codes,
        load_model,
        plan_windows,
        resolve_model,
    )

    source = resolve_model(str(checkpoints["plain"]))
    model, tokenizer = load_model(source, "cpu", choose_dtype("auto", "cpu"))
    settings = {"guidance_scale": 3.0, "temperature": 1.0, "top_k": 250, "top_p": 0.0}

    def run(frames, window, context):
        windows = plan_windows(frames, window, context)
        return generate_codes(model, tokenizer, frames=frames, windows=windows, texts=["pop song"] * len(windows),
                              chroma=None, settings=settings, seed=5, device="cpu"), windows

    long_codes, windows = run(260, 100, 40)
    assert len(windows) == 4 and tuple(long_codes.shape) == (4, 260)
    assert not (long_codes == model.generation_config.decoder_start_token_id).any()  # every frame generated
    # The first window alone, same seed: the continuations wrote their context back unchanged
    # (a prompt the model rewrote would differ here), and the start is reproducible.
    first, _ = run(100, 100, 40)
    assert torch.equal(long_codes[:, :100], first)
    audio = decode_codes(model, long_codes)
    assert audio.shape == (1, 260 * 640) and audio.dtype == np.float32 and np.isfinite(audio).all()


# --------------------------------------------------------------------------- the engine


def test_render_is_the_score_length_stereo_and_says_what_it_did(tmp_path, checkpoints):
    score, result = _render(tmp_path, {"model": str(checkpoints["melody"]), **WINDOWED})
    backing = result.stems["backing"]
    assert set(result.stems) == {"backing"}
    assert backing.frames == score.total_frames(44100) and backing.channels == 2
    assert np.isfinite(backing.samples).all()
    assert backing.peak() == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    details = result.details
    assert details["windows"] >= 3 and details["guide"] == "score" and details["device"] == "cpu"
    assert details["architecture"] == "musicgen_melody" and details["licence"] == "cc-by-nc-4.0"
    assert details["key"]["spec"] == "A minor" and details["tempo"]["spec"] == 120
    assert set(details["prompts"]) == {"verse", "chorus"}
    chorus = details["prompts"]["chorus"]
    assert "120 bpm" in chorus and "A minor" in chorus and "synth-pop" in chorus and "drums" in chorus
    assert "verse: " in result.prompt and "chorus: " in result.prompt
    json.dumps(details, allow_nan=False)  # the release record is strict JSON


def test_same_seed_same_backing_other_seed_other(tmp_path, checkpoints):
    options = {"model": str(checkpoints["plain"]), **WINDOWED}
    _, one = _render(tmp_path / "a", options, seed=3)
    _, again = _render(tmp_path / "b", options, seed=3)
    _, other = _render(tmp_path / "c", options, seed=4)
    assert np.array_equal(one.stems["backing"].samples, again.stems["backing"].samples)
    assert not np.allclose(one.stems["backing"].samples, other.stems["backing"].samples)


def test_melody_guide_conditions_the_output(tmp_path, checkpoints):
    options = {"model": str(checkpoints["melody"]), **WINDOWED}
    _, guided = _render(tmp_path / "a", options)
    _, unguided = _render(tmp_path / "b", {**options, "guide": "none"})
    assert unguided.details["guide"] == "none"
    assert not np.allclose(guided.stems["backing"].samples, unguided.stems["backing"].samples)


def test_score_guide_chroma_follows_the_chords(tmp_path, checkpoints):
    from millamusic.analysis.chroma import CHROMA_FRAMES_PER_SECOND, chroma_pitch_classes, melody_chroma
    from millamusic.engines.musicgen import guide_audio, resolve_model
    from millamusic.music.theory import parse_chord

    score, request = _score_and_request(tmp_path, {})
    guide, source = guide_audio(score, request, resolve_model(str(checkpoints["melody"])), "auto")
    assert source == "score"
    classes = chroma_pitch_classes(melody_chroma(guide))
    hits = total = 0
    for bar in score.bars:  # the middle of each bar: no chord changes, no attack smear
        start = score.beat_to_seconds(bar.start_beat + 1) * CHROMA_FRAMES_PER_SECOND
        end = score.beat_to_seconds(bar.start_beat + bar.beats - 1) * CHROMA_FRAMES_PER_SECOND
        tones = set(parse_chord(bar.chords[0]).pitch_classes)
        frames = classes[int(np.ceil(start)):int(end)]
        hits += int(np.isin(frames, list(tones)).sum())
        total += frames.size
    assert total > 20 and hits / total >= 0.9


def test_reference_recording_guides_a_cover(tmp_path, checkpoints):
    import soundfile as sf

    from millamusic.engines.musicgen import guide_audio, resolve_model

    sf.write(tmp_path / "reference.wav", sine(220.0, 10.0, rate=44100, amp=0.3), 44100)  # an A
    score, request = _score_and_request(tmp_path, {}, extra=f"reference: {tmp_path / 'reference.wav'}\n")
    from millamusic.analysis.chroma import chroma_pitch_classes, melody_chroma

    guide, source = guide_audio(score, request, resolve_model(str(checkpoints["melody"])), "auto")
    assert source == "reference"
    assert np.mean(chroma_pitch_classes(melody_chroma(guide)) == 9) > 0.9
    with pytest.raises(RenderError, match="needs a melody checkpoint"):
        guide_audio(score, request, resolve_model(str(checkpoints["plain"])), "reference")


def test_stereo_checkpoint_gives_two_different_channels(tmp_path, checkpoints):
    _, result = _render(tmp_path, {"model": str(checkpoints["stereo"]), "window_seconds": 6, "context_seconds": 2})
    left, right = result.stems["backing"].samples
    assert result.details["windows"] >= 2
    assert not np.allclose(left, right)


# --------------------------------------------------------------------------- device, checkpoints, errors


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from millamusic.engines.musicgen import choose_device, choose_dtype

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == "cpu" and choose_dtype("auto", "cpu") == torch.float32
    with pytest.raises(EngineUnavailable, match="sees no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(EngineUnavailable, match="no Apple GPU"):
        choose_device("mps")
    with pytest.raises(EngineUnavailable, match="float16 is not supported on the CPU"):
        choose_dtype("float16", "cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device("auto") == "mps" and choose_dtype("auto", "mps") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert choose_device("auto") == "cuda" and choose_device("cuda:0") == "cuda:0"
    with pytest.raises(EngineUnavailable, match="only 1 CUDA device"):
        choose_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_dtype("auto", "cuda") == torch.float16


def test_checkpoint_identity_is_its_content_and_licence_its_card(tmp_path, checkpoints):
    from millamusic.engines.musicgen import resolve_model

    moved = shutil.copytree(checkpoints["plain"], tmp_path / "elsewhere")
    assert resolve_model(str(moved)).identity == resolve_model(str(checkpoints["plain"])).identity
    assert resolve_model(str(checkpoints["melody"])).identity != resolve_model(str(moved)).identity
    # Under a hidden folder (~/.cache, ~/.models) the files still count: two models stay two identities.
    hidden = tmp_path / ".models"
    plain_hidden = shutil.copytree(checkpoints["plain"], hidden / "plain")
    melody_hidden = shutil.copytree(checkpoints["melody"], hidden / "melody")
    assert resolve_model(str(plain_hidden)).identity == resolve_model(str(moved)).identity
    assert resolve_model(str(plain_hidden)).identity != resolve_model(str(melody_hidden)).identity
    assert resolve_model(str(checkpoints["unlicensed"])).licence == "unknown"
    assert resolve_model(str(checkpoints["unlicensed"]), licence="apache-2.0").licence == "apache-2.0"
    assert resolve_model(str(checkpoints["mit"])).licence == "mit"


def test_loading_errors_say_what_to_do(tmp_path, monkeypatch, checkpoints):
    from millamusic.engines.musicgen import choose_dtype, load_model, resolve_model

    with pytest.raises(EngineUnavailable, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineUnavailable, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(EngineUnavailable, match="holds a 'bert' model, not MusicGen"):
        resolve_model(str(tmp_path / "bert"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    with pytest.raises(EngineUnavailable, match="not in the Hugging Face cache.*hf download facebook/musicgen-small"):
        resolve_model("facebook/musicgen-small")
    broken = shutil.copytree(checkpoints["plain"], tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(EngineUnavailable, match="could not load MusicGen weights"):
        load_model(resolve_model(str(broken)), "cpu", choose_dtype("auto", "cpu"))


# --------------------------------------------------------------------------- through the CLI


def _spec(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "songs").mkdir(exist_ok=True)
    spec = tmp_path / "songs" / "tiny.yaml"
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3, extra=extra))
    return spec


def _cli(*args: str):
    return CliRunner().invoke(main, ["render", *args])


OPTIONS_YAML = "engines:\n  backing: musicgen\n  backing_options: {window_seconds: 4, context_seconds: 2}\n"


def test_cli_render_with_musicgen_checkpoint(tmp_path, checkpoints):
    spec, out = _spec(tmp_path, OPTIONS_YAML), tmp_path / "out"
    result = _cli(str(spec), "--out", str(out), "--backing", "musicgen", "--model", str(checkpoints["melody"]),
                  "--acknowledge-noncommercial", "--json")
    assert result.exit_code == 0, result.output
    release = json.loads((out / "masters" / "tiny-test-song" / "release.json").read_text())
    assert release["engines"]["backing"]["name"] == "musicgen"
    assert release["engines"]["backing"]["licence"] == "cc-by-nc-4.0"
    assert release["engines"]["backing"]["weights_hash"].startswith("sha256:")
    assert release["settings"]["acknowledged_noncommercial"] is True
    assert set(release["backing"]["tempo"]) >= {"spec", "measured", "fitted", "stretch"}
    assert release["backing"]["key"]["spec"] == "A minor" and "measured" in release["backing"]["key"]
    backing_credit = next(c for c in release["credits"] if c["stage"] == "backing")
    assert backing_credit["licence"] == "cc-by-nc-4.0" and "120 bpm" in backing_credit["prompt"]
    assert release["digital_source_type"].endswith("TrainedAlgorithmicMedia")
    import soundfile as sf

    stems = out / "stems" / "tiny-test-song"
    assert sf.info(str(stems / "backing.wav")).frames == sf.info(str(stems / "lead.wav")).frames

    # The same checkpoint from another folder is the same model: the backing comes from the cache.
    moved = shutil.copytree(checkpoints["melody"], tmp_path / "moved")
    again = _cli(str(spec), "--out", str(out), "--backing", "musicgen", "--model", str(moved),
                 "--acknowledge-noncommercial", "--json")
    assert again.exit_code == 0, again.output
    stages = {stage["name"]: stage["cached"] for stage in json.loads(again.stdout)["stages"]}
    assert stages["backing"] is True


def test_licence_guard_refuses_a_commercial_release_until_acknowledged(tmp_path, checkpoints):
    spec, out = _spec(tmp_path, OPTIONS_YAML), tmp_path / "out"
    refused = _cli(str(spec), "--out", str(out), "--backing", "musicgen", "--model", str(checkpoints["plain"]))
    assert refused.exit_code == 2
    assert "cc-by-nc-4.0" in refused.output and "--acknowledge-noncommercial" in refused.output
    assert "release.commercial: false" in refused.output
    assert not (out / "masters").exists()  # refused before anything rendered
    unknown = _cli(str(spec), "--out", str(out), "--backing", "musicgen", "--model", str(checkpoints["unlicensed"]))
    assert unknown.exit_code == 2 and "licence is unknown" in unknown.output
    free = _cli(str(spec), "--out", str(out), "--backing", "musicgen", "--model", str(checkpoints["mit"]), "--json")
    assert free.exit_code == 0, free.output


def test_licence_guard_respects_a_non_commercial_release(tmp_path, checkpoints):
    spec = _spec(tmp_path, OPTIONS_YAML)
    spec.write_text(spec.read_text().replace("  label: millamusic\n", "  label: millamusic\n  commercial: false\n"))
    result = _cli(str(spec), "--out", str(tmp_path / "out"), "--backing", "musicgen", "--model",
                  str(checkpoints["plain"]), "--json")
    assert result.exit_code == 0, result.output
    release = json.loads((tmp_path / "out" / "masters" / "tiny-test-song" / "release.json").read_text())
    assert release["settings"]["commercial"] is False


def test_bad_options_are_spec_errors_with_their_line(tmp_path):
    spec = _spec(tmp_path, "engines:\n  backing: musicgen\n  backing_options:\n    top_k: -1\n    colour: blue\n")
    result = _cli(str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    lines = spec.read_text().splitlines()
    assert f"tiny.yaml:{lines.index('    top_k: -1') + 1}:" in result.output
    assert f"tiny.yaml:{lines.index('    colour: blue') + 1}:" in result.output
    assert "unknown musicgen option" in result.output


def test_cli_device_and_model_mistakes(tmp_path, checkpoints):
    spec = _spec(tmp_path)
    gpu = _cli(str(spec), "--out", str(tmp_path / "out"), "--backing", "musicgen", "--device", "tpu")
    assert gpu.exit_code == 2 and "--device" in gpu.output and "cuda:N" in gpu.output
    arranger = _cli(str(spec), "--out", str(tmp_path / "out"), "--model", "facebook/musicgen-small")
    assert arranger.exit_code == 2 and "unknown arranger option" in arranger.output
    if not torch.cuda.is_available():
        missing = _cli(str(spec), "--out", str(tmp_path / "out"), "--backing", "musicgen", "--device", "cuda",
                       "--model", str(checkpoints["mit"]))
        assert missing.exit_code == 3 and "sees no CUDA GPU" in missing.output and "--device auto" in missing.output
