"""Loading DiffSinger voicebanks (OpenUtau format): a tiny bank built in code with the real
interface (tests/diffsinger_tiny.py), and malformed banks that must each say which file and what to do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import pytest

from millamusic.cli import exit_code_for
from millamusic.voice.diffsinger_bank import VoicebankError, load_voicebank
from tests import diffsinger_tiny as tiny


@pytest.fixture
def bank(tmp_path):
    return tiny.build_bank(tmp_path / "bank", speakers=("alto", "soprano"), dictionary={"hello": ["h", "e", "l", "o"]})


def test_a_bank_loads_with_its_parts_and_what_it_says_about_itself(bank):
    loaded = load_voicebank(bank)
    assert (loaded.name, loaded.author, loaded.version) == ("Tiny Test Singer", "millamusic tests", "0.1")
    assert "license=CC0" in loaded.character_text and list(loaded.licence_files) == ["LICENSE.txt"]
    assert loaded.speakers == ("alto", "soprano") and loaded.acoustic.speakers["alto"].shape == (tiny.HIDDEN,)
    assert loaded.acoustic.phonemes["SP"] == 2 and loaded.acoustic.frame_seconds == pytest.approx(512 / 44100)
    assert loaded.duration is not None and loaded.variance is not None and loaded.pitch is None
    assert loaded.dictionary.entries == {"hello": ("h", "e", "l", "o")}
    assert loaded.dictionary.kinds["e"] == "vowel" and loaded.dictionary.kinds["h"] == "consonant"
    assert loaded.acoustic_flag("spk_embed") and loaded.acoustic_flag("energy") and not loaded.acoustic_flag("gender")
    assert len(loaded.sha256) == 64


def test_the_bank_hash_follows_every_model_and_embedding(bank, tmp_path):
    first = load_voicebank(bank).sha256
    other = shutil.copytree(bank, tmp_path / "copy")
    assert load_voicebank(other).sha256 == first  # content, not where it lies
    (other / "alto.emb").write_bytes(np.ones(tiny.HIDDEN, "<f4").tobytes())
    assert load_voicebank(other).sha256 != first


def test_the_tiny_vocoder_sings_the_f0_it_is_given(bank):
    """The tiny models run in onnxruntime with the inputs the engine will feed (a check of the test bank itself)."""
    session = onnxruntime.InferenceSession(str(bank / "dsvocoder" / "vocoder.onnx"), providers=["CPUExecutionProvider"])
    frames = 200
    f0 = np.full((1, frames), 220.0, np.float32)
    silent = session.run(["waveform"], {"mel": np.zeros((1, frames, tiny.MEL_BINS), np.float32), "f0": f0})[0]
    assert silent.shape == (1, frames * tiny.HOP) and not silent.any()  # a zero mel is a pause
    waveform = session.run(["waveform"], {"mel": np.ones((1, frames, tiny.MEL_BINS), np.float32), "f0": f0})[0]
    spectrum = np.abs(np.fft.rfft(waveform[0]))
    assert np.fft.rfftfreq(waveform.shape[1], 1 / tiny.SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(220.0, abs=1.0)


def _break(bank, how):
    how(bank)
    with pytest.raises(VoicebankError) as caught:
        load_voicebank(bank)
    assert exit_code_for(caught.value) == 3
    return str(caught.value)


def test_not_a_bank(tmp_path):
    said = _break(tmp_path, lambda bank: None)
    assert "no dsconfig.yaml" in said and "Fix: point voice.diffsinger.voicebank at the folder" in said


def test_a_missing_model(bank):
    said = _break(bank, lambda b: (b / "acoustic.onnx").unlink())
    assert "acoustic 'acoustic.onnx' is missing" in said and "Fix: restore that file" in said


def test_a_zero_byte_model(bank):
    said = _break(bank, lambda b: (b / "dsdur" / "dur.onnx").write_bytes(b""))
    assert "dur.onnx: an empty file, not a model" in said and "Fix:" in said


def test_a_file_that_is_not_onnx(bank):
    said = _break(bank, lambda b: (b / "dsvocoder" / "vocoder.onnx").write_bytes(b"not a model at all"))
    assert "vocoder.onnx: not an ONNX model" in said


def test_wrong_input_names(bank):
    def rename(b):  # a vocoder exported with other names
        tiny.vocoder(b / "dsvocoder" / "vocoder.onnx")
        import onnx

        model = onnx.load(str(b / "dsvocoder" / "vocoder.onnx"))
        for node in model.graph.node:
            node.input[:] = ["pitch_hz" if name == "f0" else name for name in node.input]
        model.graph.input[1].name = "pitch_hz"
        onnx.save(model, str(b / "dsvocoder" / "vocoder.onnx"))

    said = _break(bank, rename)
    assert "the vocoder model lacks input(s) f0; has input(s) this engine cannot feed: pitch_hz" in said


def test_config_and_model_disagree_on_speakers(bank):
    def drop_speakers(b):
        config = json.loads((b / "dsconfig.yaml").read_text())
        del config["speakers"]
        (b / "dsconfig.yaml").write_text(json.dumps(config))

    said = _break(bank, drop_speakers)
    assert "takes spk_embed but `speakers` lists none" in said


def test_a_broken_speaker_embedding(bank):
    said = _break(bank, lambda b: (b / "alto.emb").write_bytes(b"\0" * 12))
    assert "alto.emb: 12 bytes" in said and f"{4 * tiny.HIDDEN} bytes of float32" in said


def test_a_dictionary_with_a_phoneme_the_bank_lacks(bank):
    def add_symbol(b):
        path = b / "dsdur" / "dsdict.yaml"
        values = json.loads(path.read_text())
        values["symbols"].append({"symbol": "zh", "type": "fricative"})
        path.write_text(json.dumps(values))

    said = _break(bank, add_symbol)
    assert "symbol(s) zh are not in the bank's phoneme table" in said


def test_a_vocoder_for_another_mel(bank):
    def other_mel(b):
        path = b / "dsvocoder" / "vocoder.yaml"
        values = json.loads(path.read_text())
        values["num_mel_bins"] = 128
        path.write_text(json.dumps(values))

    said = _break(bank, other_mel)
    assert "num_mel_bins is 128, the acoustic model's" in said and "the vocoder the acoustic model was trained for" in said


def test_a_bank_that_relies_on_openutaus_vocoder_package(bank):
    said = _break(bank, lambda b: shutil.rmtree(b / "dsvocoder"))
    assert "names vocoder 'tiny_vocoder'" in said and "copy that vocoder package" in said


def test_a_phoneme_table_without_sp(bank):
    said = _break(bank, lambda b: (b / "phonemes.json").write_text(json.dumps({"a": 1, "e": 2})))
    assert "no SP" in said


def test_legacy_speedup_banks_load_too(tmp_path):
    loaded = load_voicebank(tiny.build_bank(tmp_path / "legacy", continuous=False, with_variance=False))
    assert loaded.acoustic_flag("speedup") and not loaded.acoustic_flag("steps") and loaded.variance is None
