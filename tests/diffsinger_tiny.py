"""A tiny DiffSinger voicebank in the OpenUtau format, built in code for the tests.

Its ONNX graphs have the input and output names, element types and ranks of real DiffSinger
exports (docs/diffsinger-format.md, section 3) and compute simple but measurable things: the
linguistic encoder looks tokens up in a table, the duration model gives every phoneme the same
length, the variance model a constant, the acoustic model a mel that is the f0 in every bin, and
the vocoder a sine at the given f0 (so pitch and timing can be measured end to end).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 8
MEL_BINS = 8
SAMPLE_RATE = 44100
HOP = 512
PHONEMES = ("AP", "SP", "a", "e", "i", "o", "u", "k", "l", "m", "n", "s", "t", "h", "r", "w", "y")
VOWELS = ("a", "e", "i", "o", "u")
ARPABET_VOWELS = ("aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw")
DUR_FRAMES = 5.0  # what the tiny duration model predicts for every phoneme
OPSET = [helper.make_opsetid("", 15)]

F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _io(name: str, kind: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, shape)


def _save(path: Path, nodes, inputs, outputs, initialisers=()) -> None:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initialisers))
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="millamusic-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def linguistic(path: Path, *, words: bool = True, languages: bool = False, tokens: int = len(PHONEMES)) -> None:
    table = numpy_helper.from_array(np.linspace(-1, 1, (tokens + 1) * HIDDEN, dtype=np.float32)
                                    .reshape(tokens + 1, HIDDEN), "table")
    inputs = [_io("tokens", I64, [1, "n_tokens"])]
    inputs += [_io("languages", I64, [1, "n_tokens"])] if languages else []
    inputs += ([_io("word_div", I64, [1, "n_words"]), _io("word_dur", I64, [1, "n_words"])] if words
               else [_io("ph_dur", I64, [1, "n_tokens"])])
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    nodes = [helper.make_node("Gather", ["table", "tokens"], ["encoder_out"], axis=0),
             helper.make_node("Equal", ["tokens", "zero"], ["x_masks"])]
    _save(path, nodes, inputs, [_io("encoder_out", F32, [1, "n_tokens", HIDDEN]), _io("x_masks", BOOL, [1, "n_tokens"])],
          [table, zero])


def duration(path: Path, *, speakers: bool = False) -> None:
    inputs = [_io("encoder_out", F32, [1, "n_tokens", HIDDEN]), _io("x_masks", BOOL, [1, "n_tokens"]),
              _io("ph_midi", I64, [1, "n_tokens"])]
    inputs += [_io("spk_embed", F32, [1, "n_tokens", HIDDEN])] if speakers else []
    consts = [numpy_helper.from_array(np.array(0.0, np.float32), "nothing"),
              numpy_helper.from_array(np.array(DUR_FRAMES, np.float32), "frames")]
    nodes = [helper.make_node("Cast", ["ph_midi"], ["midi_f"], to=F32),
             helper.make_node("Mul", ["midi_f", "nothing"], ["zeros"]),
             helper.make_node("Add", ["zeros", "frames"], ["ph_dur_pred"])]
    _save(path, nodes, inputs, [_io("ph_dur_pred", F32, [1, "n_tokens"])], consts)


def _held(values: str, durations: str, frames_like: str, out: str) -> tuple[list, list]:
    """(nodes, constants) that hold each of `values` [1, n] for its `durations` [1, n] frames:
    `out` [T] with T the length of `frames_like` [1, T] (each frame's index found from the
    cumulative durations; frames past the end keep the last value)."""
    consts = [numpy_helper.from_array(np.array(0, np.int64), "i0"), numpy_helper.from_array(np.array(1, np.int64), "i1"),
              numpy_helper.from_array(np.array([0], np.int64), "ax0"), numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    nodes = [helper.make_node("CumSum", [durations, "i1"], ["ends"]),
             helper.make_node("Squeeze", ["ends", "ax0"], ["ends_flat"]),
             helper.make_node("Shape", [frames_like], ["frames_shape"]),
             helper.make_node("Gather", ["frames_shape", "i1"], ["n_frames"], axis=0),
             helper.make_node("Range", ["i0", "n_frames", "i1"], ["frames"]),
             helper.make_node("Unsqueeze", ["frames", "ax1"], ["frame_col"]),
             helper.make_node("Unsqueeze", ["ends_flat", "ax0"], ["end_row"]),
             helper.make_node("GreaterOrEqual", ["frame_col", "end_row"], ["passed"]),
             helper.make_node("Cast", ["passed"], ["passed_i"], to=I64),
             helper.make_node("ReduceSum", ["passed_i", "ax1"], ["position"], keepdims=0),
             helper.make_node("Shape", [values], ["values_shape"]),
             helper.make_node("Gather", ["values_shape", "i1"], ["n_values"], axis=0),
             helper.make_node("Sub", ["n_values", "i1"], ["last_value"]),
             helper.make_node("Min", ["position", "last_value"], ["clipped"]),
             helper.make_node("Squeeze", [values, "ax0"], ["value_row"]),
             helper.make_node("Gather", ["value_row", "clipped"], [out], axis=0)]
    return nodes, consts


def pitch(path: Path, *, continuous: bool = True) -> None:
    """pitch_pred[1, T] = each frame's note (note_midi held for note_dur frames): no ornament."""
    inputs = [_io("encoder_out", F32, [1, "n_tokens", HIDDEN]), _io("ph_dur", I64, [1, "n_tokens"]),
              _io("note_midi", F32, [1, "n_notes"]), _io("note_rest", BOOL, [1, "n_notes"]),
              _io("note_dur", I64, [1, "n_notes"]), _io("pitch", F32, [1, "n_frames"]), _io("expr", F32, [1, "n_frames"]),
              _io("retake", BOOL, [1, "n_frames"]), _io("steps" if continuous else "speedup", I64, [])]
    nodes, consts = _held("note_midi", "note_dur", "pitch", "frame_midi")
    nodes.append(helper.make_node("Unsqueeze", ["frame_midi", "ax0"], ["pitch_pred"]))
    _save(path, nodes, inputs, [_io("pitch_pred", F32, [1, "n_frames"])], consts)


def variance(path: Path, *, predicted=("energy", "breathiness"), continuous: bool = True) -> None:
    inputs = [_io("encoder_out", F32, [1, "n_tokens", HIDDEN]), _io("ph_dur", I64, [1, "n_tokens"]),
              _io("pitch", F32, [1, "n_frames"])]
    inputs += [_io(name, F32, [1, "n_frames"]) for name in predicted]
    inputs += [_io("retake", BOOL, [1, "n_frames", len(predicted)]), _io("steps" if continuous else "speedup", I64, [])]
    consts = [numpy_helper.from_array(np.array(0.0, np.float32), "nothing"),
              numpy_helper.from_array(np.array(-20.0, np.float32), "level")]
    nodes = [helper.make_node("Mul", ["pitch", "nothing"], ["zeros"])]
    nodes += [helper.make_node("Add", ["zeros", "level"], [f"{name}_pred"]) for name in predicted]
    _save(path, nodes, inputs, [_io(f"{name}_pred", F32, [1, "n_frames"]) for name in predicted], consts)


def acoustic(path: Path, *, vowel_ids: list[int], tokens: int, variances=("energy", "breathiness"), speakers: bool = False,
             continuous: bool = True, gender: bool = False) -> None:
    """mel[1, T, bins] = f0 / 1000 in every bin on the frames of vowel tokens, 0 elsewhere (each
    frame's token found from the cumulative `durations`; T = the length of f0)."""
    inputs = [_io("tokens", I64, [1, "n_tokens"]), _io("durations", I64, [1, "n_tokens"]), _io("f0", F32, [1, "n_frames"])]
    inputs += [_io(name, F32, [1, "n_frames"]) for name in variances]
    inputs += [_io("gender", F32, [1, "n_frames"])] if gender else []
    inputs += [_io("spk_embed", F32, [1, "n_frames", HIDDEN])] if speakers else []
    inputs += [_io("depth", F32 if continuous else I64, []), _io("steps" if continuous else "speedup", I64, [])]
    table = np.zeros(tokens + 1, np.float32)
    table[list(vowel_ids)] = 1.0
    nodes, consts = _held("tokens", "durations", "f0", "frame_tokens")
    consts += [numpy_helper.from_array(table, "vowel_table"), numpy_helper.from_array(np.array([2], np.int64), "ax2"),
               numpy_helper.from_array(np.array([1, 1, MEL_BINS], np.int64), "bins"),
               numpy_helper.from_array(np.array(0.001, np.float32), "scale")]
    nodes += [helper.make_node("Gather", ["vowel_table", "frame_tokens"], ["vowel_flag"], axis=0),
              helper.make_node("Unsqueeze", ["vowel_flag", "ax0"], ["flag_row"]),
              helper.make_node("Mul", ["f0", "flag_row"], ["sung_f0"]),
              helper.make_node("Unsqueeze", ["sung_f0", "ax2"], ["f0_3d"]),
              helper.make_node("Tile", ["f0_3d", "bins"], ["tiled"]),
              helper.make_node("Mul", ["tiled", "scale"], ["mel"])]
    _save(path, nodes, inputs, [_io("mel", F32, [1, "n_frames", MEL_BINS])], consts)


def vocoder(path: Path) -> None:
    """waveform[1, T * hop]: six harmonics of f0 (f0 held for each frame's hop, phase = 2 pi cumsum /
    rate), 1/k in level, silent on frames whose mel is 0 (the tiny acoustic model's consonants and
    pauses). Harmonics, not a pure sine: WORLD's Harvest, which measures the pitch, finds no f0 in a
    pure sine."""
    consts = [numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
              numpy_helper.from_array(np.array([1, 1, HOP], np.int64), "hop"),
              numpy_helper.from_array(np.array([1, -1], np.int64), "flat"),
              numpy_helper.from_array(np.array(1, np.int64), "time_axis"),
              numpy_helper.from_array(np.array(2 * np.pi / SAMPLE_RATE, np.float32), "radians"),
              numpy_helper.from_array(np.array(0.0, np.float32), "nothing"),
              numpy_helper.from_array(np.array(0.15, np.float32), "amplitude"),
              numpy_helper.from_array(np.arange(1, 7, dtype=np.float32).reshape(6, 1), "harmonics"),
              numpy_helper.from_array((1.0 / np.arange(1, 7, dtype=np.float32)).reshape(6, 1), "harmonic_levels"),
              numpy_helper.from_array(np.array([0], np.int64), "harmonic_axis")]
    nodes = [helper.make_node("Unsqueeze", ["f0", "last_axis"], ["f0_3d"]),
             helper.make_node("Tile", ["f0_3d", "hop"], ["held"]),
             helper.make_node("Reshape", ["held", "flat"], ["f0_samples"]),
             helper.make_node("CumSum", ["f0_samples", "time_axis"], ["cycles"]),
             helper.make_node("Mul", ["cycles", "radians"], ["phase"]),
             helper.make_node("Mul", ["phase", "harmonics"], ["harmonic_phase"]),
             helper.make_node("Sin", ["harmonic_phase"], ["partials"]),
             helper.make_node("Mul", ["partials", "harmonic_levels"], ["weighted"]),
             helper.make_node("ReduceSum", ["weighted", "harmonic_axis"], ["sine"], keepdims=1),
             helper.make_node("ReduceMax", ["mel"], ["level"], axes=[2], keepdims=0),
             helper.make_node("Greater", ["level", "nothing"], ["voiced"]),
             helper.make_node("Cast", ["voiced"], ["gate_frames"], to=F32),
             helper.make_node("Unsqueeze", ["gate_frames", "last_axis"], ["gate_3d"]),
             helper.make_node("Tile", ["gate_3d", "hop"], ["gate_held"]),
             helper.make_node("Reshape", ["gate_held", "flat"], ["gate"]),
             helper.make_node("Mul", ["sine", "gate"], ["gated"]),
             helper.make_node("Mul", ["gated", "amplitude"], ["waveform"])]
    _save(path, nodes, [_io("mel", F32, [1, "n_frames", MEL_BINS]), _io("f0", F32, [1, "n_frames"])],
          [_io("waveform", F32, [1, "n_samples"])], consts)


def _yaml(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1, ensure_ascii=False))  # JSON is YAML


def build_bank(root: Path, *, speakers: tuple[str, ...] = (), continuous: bool = True, with_duration: bool = True,
               with_variance: bool = True, dictionary: dict[str, list[str]] | None = None,
               phonemes: tuple[str, ...] = PHONEMES, with_pitch: bool = False) -> Path:
    """Write the tiny bank into `root` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "character.txt").write_text("name=Tiny Test Singer\nauthor=millamusic tests\nversion=0.1\n"
                                        "license=CC0 (made in code for the tests)\n")
    (root / "LICENSE.txt").write_text("CC0 1.0: made in code by the millamusic tests.\n")
    (root / "phonemes.json").write_text(json.dumps({p: i + 1 for i, p in enumerate(phonemes)}))
    mel = {"sample_rate": SAMPLE_RATE, "hop_size": HOP, "win_size": 2048, "fft_size": 2048, "num_mel_bins": MEL_BINS,
           "mel_fmin": 40, "mel_fmax": 16000, "mel_base": "e", "mel_scale": "slaney"}
    variances = ("energy", "breathiness") if with_variance else ()
    root_config = {"phonemes": "phonemes.json", "acoustic": "acoustic.onnx", "vocoder": "tiny_vocoder",
                   "hidden_size": HIDDEN, "use_continuous_acceleration": continuous, "use_variable_depth": True,
                   "max_depth": 1.0 if continuous else 1000, **{f"use_{v}_embed": True for v in variances}, **mel}
    for name in speakers:
        rng = np.random.default_rng(len(name))
        (root / f"{name}.emb").write_bytes(rng.standard_normal(HIDDEN).astype("<f4").tobytes())
    if speakers:
        root_config["speakers"] = list(speakers)
    _yaml(root / "dsconfig.yaml", root_config)
    vowel_ids = [i + 1 for i, p in enumerate(phonemes) if p in VOWELS or p in ARPABET_VOWELS]
    acoustic(root / "acoustic.onnx", vowel_ids=vowel_ids, tokens=len(phonemes), variances=variances,
             speakers=bool(speakers), continuous=continuous)
    _yaml(root / "dsvocoder" / "vocoder.yaml", {"name": "tiny_vocoder", "model": "vocoder.onnx", **mel})
    vocoder(root / "dsvocoder" / "vocoder.onnx")
    shared = {"phonemes": "../phonemes.json", "linguistic": "linguistic.onnx", "hidden_size": HIDDEN,
              "predict_dur": True, "use_continuous_acceleration": continuous, "sample_rate": SAMPLE_RATE, "hop_size": HOP}
    if with_duration:
        _yaml(root / "dsdur" / "dsconfig.yaml", {**shared, "dur": "dur.onnx"})
        linguistic(root / "dsdur" / "linguistic.onnx", tokens=len(phonemes))
        duration(root / "dsdur" / "dur.onnx")
    if with_pitch:
        _yaml(root / "dspitch" / "dsconfig.yaml", {**shared, "pitch": "pitch.onnx", "use_expr": True, "use_note_rest": True})
        linguistic(root / "dspitch" / "linguistic.onnx", tokens=len(phonemes))
        pitch(root / "dspitch" / "pitch.onnx", continuous=continuous)
    if with_variance:
        _yaml(root / "dsvariance" / "dsconfig.yaml", {**shared, "variance": "variance.onnx", "predict_energy": True,
                                                       "predict_breathiness": True})
        linguistic(root / "dsvariance" / "linguistic.onnx", tokens=len(phonemes))
        variance(root / "dsvariance" / "variance.onnx", continuous=continuous)
    if dictionary is not None:
        folder = root / "dsdur" if with_duration else root
        _yaml(folder / "dsdict.yaml", {
            "symbols": [{"symbol": p, "type": "vowel" if p in VOWELS else "stop"} for p in phonemes if p not in ("SP", "AP")],
            "entries": [{"grapheme": word, "phonemes": phones} for word, phones in dictionary.items()]})
    return root
