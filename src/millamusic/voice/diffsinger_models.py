"""A DiffSinger voicebank's models run on one phrase: durations -> variances -> mel -> waveform.

Inputs are fed as OpenUtau feeds them (docs/diffsinger-format.md, section 4): token ids with an
SP at both ends, word divisions and durations in frames, f0 in Hz, speaker embeddings per token or
per frame, `steps`/`speedup` and `depth` as scalars.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from millamusic.voice.diffsinger_bank import INSTALL_FIX, ModelConfig, ModelIO, Voicebank, VoicebankError
from millamusic.voice.diffsinger_timing import Phrase, phrase_notes
from millamusic.voice.kokoro_model import providers_for

MEL_LN10 = 2.30259  # ln(10): a log10 mel times this is a natural-log mel (OpenUtau's conversion)


@dataclass(frozen=True)
class Settings:
    steps: int  # diffusion / flow steps of the acoustic and variance models
    depth: float  # shallow-diffusion depth, 0..1 (capped at the bank's max_depth)
    speaker: str | None
    energy_db: float  # added to the predicted energy (dB-like units, as OpenUtau's curve)
    breathiness_db: float
    device: str = "auto"  # cpu | cuda | auto (CUDA when onnxruntime-gpu has it)


@functools.lru_cache(maxsize=16)
def _session(path: str, threads: int, device: str):
    try:
        import onnxruntime  # onnxruntime: an optional extra (millamusic[diffsinger])
    except ImportError as error:
        raise VoicebankError(f"DiffSinger voicebanks need onnxruntime ({error}). Fix: {INSTALL_FIX}") from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=list(providers_for(onnxruntime, device)))


def run(model: ModelIO, feed: dict, outputs: list[str], device: str = "auto") -> list[np.ndarray]:
    """Run `model` with exactly the inputs it declares (the feed may hold more than it takes)."""
    session = _session(str(model.path), max(1, min(4, os.cpu_count() or 1)), device)
    return session.run(outputs, {name: value for name, value in feed.items() if name in model.inputs})


def token_ids(config: ModelConfig, tokens: tuple[str, ...]) -> np.ndarray:
    missing = sorted({t for t in tokens if t not in config.phonemes})
    if missing:
        raise VoicebankError(f"{config.path}: the phoneme table ({config.values['phonemes']}) has no "
                             f"{', '.join(missing)}. Fix: use the dictionary and tables that came with this bank")
    return np.array([[config.phonemes[t] for t in tokens]], dtype=np.int64)


def _languages(config: ModelConfig, tokens: tuple[str, ...]) -> np.ndarray:
    return np.array([[config.languages.get(t.split("/")[0], 0) if "/" in t else 0 for t in tokens]], dtype=np.int64)


def _steps(config: ModelConfig, steps: int) -> dict:
    if config.values["use_continuous_acceleration"]:
        return {"steps": np.array(steps, dtype=np.int64)}
    return {"speedup": np.array(max(1, 1000 // max(1, steps)), dtype=np.int64)}  # the legacy 1000-step schedule


def _speaker(config: ModelConfig, name: str | None, length: int) -> dict:
    """spk_embed for a multi-speaker model: its own embedding of `name`, `length` times (each model
    family has its own embeddings; a speaker one of them lacks is an error, never another voice)."""
    if not config.speakers:
        return {}
    if name not in config.speakers:
        raise VoicebankError(f"{config.path}: no speaker {name!r} among {', '.join(config.speakers)}. Fix: set "
                             "voice.diffsinger.speaker to a speaker every model of the bank lists")
    return {"spk_embed": np.tile(config.speakers[name].astype(np.float32), (1, length, 1))}


def predicted_durations(bank: Voicebank, phrase: Phrase, settings: Settings) -> np.ndarray | None:
    """The duration model's frames per token, or None when the bank has no duration model."""
    if bank.duration is None:
        return None
    config, linguistic, dur = bank.duration
    tokens = token_ids(config, phrase.tokens)
    feed = {"tokens": tokens, "languages": _languages(config, phrase.tokens),
            "word_div": np.array([phrase.groups], dtype=np.int64),
            "word_dur": np.array([phrase.group_frames], dtype=np.int64)}
    encoder_out, x_masks = run(linguistic, feed, ["encoder_out", "x_masks"], settings.device)
    feed = {"encoder_out": encoder_out, "x_masks": x_masks, "ph_midi": np.array([phrase.midi], dtype=np.int64),
            **_speaker(config, settings.speaker, len(phrase.tokens))}
    return run(dur, feed, ["ph_dur_pred"], settings.device)[0][0]


def pitch_curve(bank: Voicebank, phrase: Phrase, durations: np.ndarray, settings: Settings) -> np.ndarray | None:
    """The bank's pitch model's curve (MIDI semitones per frame) for the phrase's notes, or None
    when the bank has no pitch model (the notes with the profile's vibrato sing instead)."""
    if bank.pitch is None:
        return None
    config, linguistic, model = bank.pitch
    frame_s = config.frame_seconds
    note_midi, note_rest, note_dur = phrase_notes(phrase, frame_s)
    frames = int(durations.sum())
    feed = {"tokens": token_ids(config, phrase.tokens), "languages": _languages(config, phrase.tokens),
            "word_div": np.array([phrase.groups], dtype=np.int64), "word_dur": np.array([phrase.group_frames], dtype=np.int64),
            "ph_dur": durations[None, :].astype(np.int64)}
    encoder_out, _ = run(linguistic, feed, ["encoder_out", "x_masks"], settings.device)
    feed = {"encoder_out": encoder_out, "ph_dur": durations[None, :].astype(np.int64), "note_midi": note_midi[None, :],
            "note_rest": note_rest[None, :], "note_dur": note_dur[None, :], "pitch": np.full((1, frames), 60.0, np.float32),
            "expr": np.ones((1, frames), np.float32), "retake": np.ones((1, frames), dtype=bool),
            **_steps(config, settings.steps), **_speaker(config, settings.speaker, frames)}
    return run(model, feed, ["pitch_pred"], settings.device)[0][0].astype(np.float64)


def variances(bank: Voicebank, phrase: Phrase, durations: np.ndarray, pitch_midi: np.ndarray,
              settings: Settings) -> dict[str, np.ndarray]:
    """The variance model's curves the acoustic model takes ({name: (1, frames)}), with the offsets."""
    wanted = [name for name in ("energy", "breathiness", "voicing", "tension") if bank.acoustic_flag(name)]
    if not wanted:
        return {}
    if bank.variance is None:
        raise VoicebankError(f"{bank.acoustic_model.path}: the acoustic model takes {', '.join(wanted)} but the bank "
                             "has no dsvariance/ model to predict them. Fix: use the bank's full release")
    config, linguistic, model = bank.variance
    frames = pitch_midi.shape[0]
    predicted = [name for name in ("energy", "breathiness", "voicing", "tension") if f"{name}_pred" in model.outputs]
    words = {"word_div": np.array([phrase.groups], dtype=np.int64), "word_dur": np.array([phrase.group_frames], dtype=np.int64),
             "ph_dur": durations[None, :].astype(np.int64)}
    feed = {"tokens": token_ids(config, phrase.tokens), "languages": _languages(config, phrase.tokens), **words}
    encoder_out, _ = run(linguistic, feed, ["encoder_out", "x_masks"], settings.device)
    feed = {"encoder_out": encoder_out, "ph_dur": durations[None, :].astype(np.int64),
            "pitch": pitch_midi[None, :].astype(np.float32),
            **{name: np.zeros((1, frames), np.float32) for name in predicted},
            "retake": np.ones((1, frames, len(predicted)), dtype=bool),
            **_steps(config, settings.steps), **_speaker(config, settings.speaker, frames)}
    curves = dict(zip(predicted, run(model, feed, [f"{name}_pred" for name in predicted], settings.device)))
    offsets = {"energy": settings.energy_db, "breathiness": settings.breathiness_db}
    out = {}
    for name in wanted:
        if name not in curves:
            raise VoicebankError(f"{model.path}: the variance model does not predict {name}, which the acoustic model "
                                 "takes. Fix: use the variance model that came with the acoustic model")
        low, high = (-10.0, 10.0) if name == "tension" else (-96.0, 0.0)  # OpenUtau's clamps
        out[name] = np.clip(curves[name] + offsets.get(name, 0.0), low, high).astype(np.float32)
    return out


def sing(bank: Voicebank, phrase: Phrase, durations: np.ndarray, f0_hz: np.ndarray, curves: dict,
         settings: Settings) -> np.ndarray:
    """The phrase's waveform at the vocoder's rate (float32, (samples,)), starting at its head SP."""
    config = bank.acoustic
    frames = f0_hz.shape[0]
    # max_depth is a share (0..1) in continuous banks, legacy diffusion steps of 1000 in older ones; 0: not set
    max_depth = float(config.values["max_depth"]) / (1.0 if config.values["use_continuous_acceleration"] else 1000.0)
    depth = min(settings.depth, max_depth) if max_depth > 0 else settings.depth
    feed = {"tokens": token_ids(config, phrase.tokens), "languages": _languages(config, phrase.tokens),
            "durations": durations[None, :].astype(np.int64), "f0": f0_hz[None, :].astype(np.float32), **curves,
            "gender": np.zeros((1, frames), np.float32), "velocity": np.ones((1, frames), np.float32),
            **_speaker(config, settings.speaker, frames), **_steps(config, settings.steps)}
    if "depth" in bank.acoustic_model.inputs:
        kind = bank.acoustic_model.inputs["depth"]
        feed["depth"] = (np.array(depth, np.float32) if kind == "float32"
                         else np.array(int(round(depth * 1000)), np.int64))
    mel = run(bank.acoustic_model, feed, ["mel"], settings.device)[0]
    ours, theirs = str(config.values["mel_base"]), str(bank.vocoder.values["mel_base"])
    if ours != theirs:
        mel = mel * (MEL_LN10 if theirs == "e" else 1.0 / MEL_LN10)
    waveform = run(bank.vocoder_model, {"mel": mel.astype(np.float32), "f0": f0_hz[None, :].astype(np.float32)},
                   ["waveform"], settings.device)[0]
    return np.asarray(waveform, dtype=np.float32).reshape(-1)
