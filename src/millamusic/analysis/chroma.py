"""Melody chroma for conditioning MusicGen-Melody, computed without torch.

We write this ourselves because transformers' ``MusicgenMelodyFeatureExtractor``
(transformers/models/musicgen_melody/feature_extraction_musicgen_melody.py) imports torchaudio,
which we cannot install. ``melody_chroma`` reproduces its ``_torch_extract_fbank_features`` with the
default config (32 kHz, n_fft 16384, hop 4096, 12 chroma):

* inputs shorter than n_fft are zero-padded to n_fft, split evenly (the odd sample goes right);
* ``torchaudio.transforms.Spectrogram(n_fft, win_length=n_fft, hop_length, power=2, center=True,
  pad=0, normalized=True)``: periodic Hann window, reflect padding of n_fft // 2 each side,
  ``|STFT|**2`` and ``normalized=True`` means "window": the STFT is divided by the window's L2 norm;
* the librosa chroma filter bank (tuning 0, ctroct 5, octwidth 2, L2 norm, starting at C), as float32;
* ``torch.nn.functional.normalize(p=inf, dim=chroma, eps=1e-6)``, then argmax -> one-hot.

Unlike the extractor we do not truncate to ``chunk_length`` (30 s): we take the whole song and cut
windows out of it with ``chroma_window``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from millamusic.core.audio import Audio, resample

MELODY_SAMPLE_RATE = 32000
MELODY_N_FFT = 16384
MELODY_HOP = 4096
N_CHROMA = 12
CHROMA_FRAMES_PER_SECOND = MELODY_SAMPLE_RATE / MELODY_HOP  # 7.8125


@lru_cache(maxsize=1)
def _chroma_filters() -> np.ndarray:
    """(12, n_fft // 2 + 1) float32, equal to transformers.audio_utils.chroma_filter_bank(...).float()."""
    import librosa  # librosa: ~1 s with its numba/scipy imports

    return librosa.filters.chroma(sr=MELODY_SAMPLE_RATE, n_fft=MELODY_N_FFT, tuning=0.0, n_chroma=N_CHROMA)


def melody_chroma(audio: Audio) -> np.ndarray:
    """One-hot melody chroma, as MusicGen-Melody's feature extractor computes it.

    Parameters
    ----------
    audio : Audio
        Any sample rate and channel count: mixed to mono, resampled to 32 kHz
        (``millamusic.audio.resample``; the extractor uses torchaudio's resampler instead).

    Returns
    -------
    np.ndarray, float32, shape (frames, 12)
        Exactly one 1 per row (silent frames give pitch class 0, C, like the extractor).
        ``frames = max(n, 16384) // 4096 + 1`` for ``n`` samples at 32 kHz; row ``i`` is centred at
        ``i / CHROMA_FRAMES_PER_SECOND`` seconds.
    """
    import librosa  # librosa: ~1 s with its numba/scipy imports

    mono = Audio(audio.samples.mean(axis=0, keepdims=True), audio.sample_rate)
    wav = resample(mono, MELODY_SAMPLE_RATE).samples[0]
    if wav.size < MELODY_N_FFT:
        pad = MELODY_N_FFT - wav.size
        wav = np.pad(wav, (pad // 2, pad - pad // 2))

    window = librosa.filters.get_window("hann", MELODY_N_FFT)  # periodic, like torch.hann_window
    stft = librosa.stft(wav, n_fft=MELODY_N_FFT, hop_length=MELODY_HOP, window=window, center=True, pad_mode="reflect")
    spec = np.abs(stft) ** 2 / np.sum(window**2)  # (freq, frames); normalized=True: STFT / ||window||

    raw = _chroma_filters() @ spec  # (12, frames)
    norm = raw / np.maximum(np.abs(raw).max(axis=0, keepdims=True), 1e-6)  # never changes the argmax
    out = np.zeros((norm.shape[1], N_CHROMA), dtype=np.float32)
    out[np.arange(norm.shape[1]), norm.argmax(axis=0)] = 1.0
    return out


def chroma_window(chroma: np.ndarray, start_seconds: float, *, frames: int) -> np.ndarray:
    """The rows of a whole-song chroma that condition one generation window.

    Parameters
    ----------
    chroma : np.ndarray, shape (frames_total, 12)
        From ``melody_chroma``.
    start_seconds : float
        Where the window starts in the song.
    frames : int
        Rows wanted: the model config's ``chroma_length`` (235 rows = 30 s).

    Returns
    -------
    np.ndarray, float32, shape (frames, 12)
        Row ``i`` is the song frame nearest ``start_seconds + i / CHROMA_FRAMES_PER_SECOND``: the
        model reads the chroma at its own time rate, so a window is never stretched to fill the
        rows. Rows outside the song are what the extractor gives for silence (one-hot C), the
        only "nothing" the model saw in training.
    """
    index = round(start_seconds * CHROMA_FRAMES_PER_SECOND) + np.arange(frames)
    inside = (index >= 0) & (index < len(chroma))
    out = np.zeros((frames, chroma.shape[1]), dtype=np.float32)
    out[:, 0] = 1.0
    out[inside] = chroma[index[inside]]
    return out


def chroma_pitch_classes(chroma: np.ndarray) -> np.ndarray:
    """Pitch class per frame.

    Parameters
    ----------
    chroma : np.ndarray, shape (frames, 12)

    Returns
    -------
    np.ndarray, int, shape (frames,)
        Argmax of each row (0 = C ... 11 = B), -1 where the row is all zero.
    """
    classes = np.argmax(chroma, axis=1)
    return np.where(np.any(chroma != 0, axis=1), classes, -1)
