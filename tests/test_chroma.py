"""Melody chroma: musical sanity on plain signals, and agreement with the HF extractor's own code."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from millamusic.analysis.chroma import (
    CHROMA_FRAMES_PER_SECOND,
    MELODY_HOP,
    MELODY_N_FFT,
    MELODY_SAMPLE_RATE,
    chroma_pitch_classes,
    chroma_window,
    melody_chroma,
)
from millamusic.core.audio import Audio, resample

SR = MELODY_SAMPLE_RATE


def hf_frames(samples_32k: int) -> int:
    """Frames the extractor gives: short input padded to n_fft, then a centred STFT."""
    return max(samples_32k, MELODY_N_FFT) // MELODY_HOP + 1


def tone(freq: float, seconds: float, rate: int = SR, harmonics: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return sum(0.5 / k * np.sin(2 * np.pi * k * freq * t) for k in range(1, harmonics + 1)).astype(np.float32)


def midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def mono(samples: np.ndarray) -> Audio:
    return Audio(samples[None, :], SR)


def test_a440_stereo_44k_is_all_a() -> None:
    left = tone(440.0, 2.0, rate=44100)
    audio = Audio(np.stack([left, 0.5 * left]), 44100)
    chroma = melody_chroma(audio)
    n = resample(audio, SR).frames
    assert chroma.shape == (hf_frames(n), 12) and chroma.dtype == np.float32
    assert np.all(chroma.sum(axis=1) == 1) and set(np.unique(chroma)) == {0.0, 1.0}
    assert np.all(chroma_pitch_classes(chroma) == 9)


def test_c_major_arpeggio_follows_in_time() -> None:
    notes = [60, 64, 67, 72, 67, 64]  # C E G C G E, one second each
    song = np.concatenate([tone(midi_hz(n), 1.0, harmonics=3) for n in notes])
    classes = chroma_pitch_classes(melody_chroma(mono(song)))
    centres = np.arange(len(classes)) / CHROMA_FRAMES_PER_SECOND
    away_from_edges = np.abs(centres - np.round(centres)) > 0.26  # a frame spans +-0.256 s
    away_from_edges &= centres < len(notes) - 0.26
    expected = np.array(notes)[np.floor(centres).astype(int).clip(0, len(notes) - 1)] % 12
    assert away_from_edges.sum() >= 3 * len(notes)
    assert np.array_equal(classes[away_from_edges], expected[away_from_edges])


@pytest.mark.parametrize("n", [1, 1000, MELODY_N_FFT - 1, MELODY_N_FFT, MELODY_N_FFT + 1, 3 * SR + 17])
def test_frame_count_matches_extractor_formula(n: int) -> None:
    chroma = melody_chroma(mono(tone(440.0, n / SR)))
    assert chroma.shape == (hf_frames(n), 12)


def test_chroma_window_index_mapping() -> None:
    chroma = np.eye(12, dtype=np.float32)[np.arange(100) % 12]  # row k has pitch class k % 12
    win = chroma_window(chroma, 64 / CHROMA_FRAMES_PER_SECOND, frames=235)  # 235 rows = 30 s
    classes = chroma_pitch_classes(win)
    assert win.shape == (235, 12) and win.dtype == np.float32
    assert np.array_equal(classes[:36], np.arange(64, 100) % 12)
    assert np.all(classes[36:] == 0) and win[36:].sum() == 235 - 36  # past the end: one-hot C, as silence

    before = chroma_pitch_classes(chroma_window(chroma, -1.0, frames=16))  # rows before the song are silence (C)
    assert np.array_equal(before, [0] * 8 + list(range(8)))

    short = chroma_pitch_classes(chroma_window(chroma, 0.0, frames=32))  # time rate kept: never stretched
    assert np.array_equal(short, np.arange(32) % 12)


def test_chroma_window_aligns_with_audio() -> None:
    song = np.concatenate([np.zeros(10 * SR, np.float32), tone(440.0, 4.0, harmonics=3)])  # A from 10 s to 14 s
    chroma = melody_chroma(mono(song))

    win = chroma_pitch_classes(chroma_window(chroma, 10.0, frames=235))
    inside = len(chroma) - round(10.0 * CHROMA_FRAMES_PER_SECOND)  # rows left in the song
    assert np.all(win[:inside] == 9)
    assert np.all(win[inside:] == 0)  # past the end: silence, which the extractor reads as C

    earlier = chroma_pitch_classes(chroma_window(chroma, 8.0, frames=235))
    onset = 2.0 * CHROMA_FRAMES_PER_SECOND  # 10 s is 15.6 rows into this window
    assert np.all(earlier[: int(onset) - 2] == 0)  # silence is C in the extractor (argmax of zeros)
    assert np.all(earlier[int(onset) + 2 : int(onset) + 20] == 9)


class _TorchaudioSpectrogram:
    """torchaudio.transforms.Spectrogram, as torchaudio.functional.spectrogram computes it."""

    def __init__(self, *, n_fft, win_length, hop_length, power, center, pad, normalized):
        import torch

        assert (win_length, power, center, pad, normalized) == (n_fft, 2, True, 0, True)
        self.n_fft, self.hop, self.window = n_fft, hop_length, torch.hann_window(win_length)  # periodic

    def __call__(self, waveform):
        import torch

        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:]) / self.window.pow(2.0).sum().sqrt()  # normalized="window"
        return spec.abs().pow(2)


@pytest.mark.parametrize("seconds", [0.3, 6.0])
def test_matches_hf_extractor_code(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Run the real MusicgenMelodyFeatureExtractor.__call__ with torchaudio's Spectrogram rebuilt on torch.stft."""
    pytest.importorskip("torch")
    module = importlib.import_module("transformers.models.musicgen_melody.feature_extraction_musicgen_melody")
    fake = SimpleNamespace(transforms=SimpleNamespace(Spectrogram=_TorchaudioSpectrogram))
    monkeypatch.setattr(module, "torchaudio", fake, raising=False)
    extractor = module.MusicgenMelodyFeatureExtractor()

    rng = np.random.default_rng(7)
    pieces = []
    for note in rng.integers(45, 80, size=int(np.ceil(seconds / 0.4))):
        t = np.arange(int(0.4 * SR)) / SR
        amps = rng.uniform(0.1, 1.0, size=5) / np.arange(1, 6)
        pieces.append(sum(a * np.sin(2 * np.pi * (k + 1) * midi_hz(note) * t) for k, a in enumerate(amps)))
    song = np.concatenate(pieces)[: int(seconds * SR)]
    song = (song + 0.01 * rng.standard_normal(song.size)).astype(np.float32)

    theirs = extractor(song, sampling_rate=SR, return_tensors="np")["input_features"][0]
    ours = melody_chroma(mono(song))
    assert theirs.shape == ours.shape == (hf_frames(song.size), 12)
    assert np.array_equal(chroma_pitch_classes(ours), chroma_pitch_classes(theirs))
