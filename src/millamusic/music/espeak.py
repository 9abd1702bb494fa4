"""A small ctypes binding to libespeak-ng from the `espeakng-loader` wheel.

What the singer needs and nothing more: speak a text with a voice, and get back the
mono samples (22050 Hz) together with the word and phoneme events in the order espeak
emitted them.

espeak-ng keeps one global state per process, so every call into the library holds
`_LOCK`, the library is initialised once, and the ctypes callback object lives in a
module global for the life of the process (espeak keeps its address).

espeak reads voice files from a data directory. We initialise it with a private copy
of the wheel's data (symlinks, so it is cheap) so that our own voice variants can be
written into ``voices/!v`` without touching the installed package.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import espeakng_loader
import numpy as np

# --- constants from speak_lib.h --------------------------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_PHONEME_IPA = 0x0002
INIT_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
SYNTH_PHONEMES = 0x100  # espeakPHONEMES: [[...]] in the text are phoneme mnemonics
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
PARAM_RATE = 1
PARAM_PITCH = 3
PARAM_RANGE = 4
EE_OK = 0


class EspeakError(RuntimeError):
    """libespeak-ng refused a call (bad voice name, failed initialisation...)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset into the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, code, NUL)*, then a NUL: not a C string
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Event:
    """A word or phoneme event, in emission order.

    For words `text` is the word's slice of the spoken text and `text_position` its
    0-based character offset; for phonemes `text` is the IPA string (stress marks kept).
    """

    kind: str  # "word" | "phoneme"
    text: str
    text_position: int
    sample: int  # sample index into Utterance.samples where espeak says it starts


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # float32, shape (frames,), mono at `sample_rate`
    sample_rate: int
    events: tuple[Event, ...]  # words and phonemes in the order espeak emitted them


# --- process-wide state ----------------------------------------------------------------
_LOCK = threading.RLock()


_STATE: dict = {}  # lib, rate, data_dir, callback (kept alive), sink (current collector)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    return lib


@lru_cache(maxsize=1)
def version() -> str:
    """espeak-ng's version string, e.g. '1.52.0'. Loads the library but does not initialise it."""
    with _LOCK:
        raw = _library().espeak_Info(None)
    return raw.decode("utf-8", "replace").split()[0] if raw else "unknown"


def _private_data_dir() -> Path:
    """A per-process copy of espeak-ng-data made of symlinks, with a writable voices/!v.

    espeak only looks for voice variants inside its data directory, and the installed
    one belongs to the wheel. Symlinks keep this to a few hundred inodes; if the file
    system refuses them we fall back to a real copy (about 20 MB).
    """

    source = Path(espeakng_loader.get_data_path())
    root = Path(tempfile.mkdtemp(prefix="millamusic-espeak-"))
    atexit.register(shutil.rmtree, root, True)
    data = root / "espeak-ng-data"
    data.mkdir()
    for entry in source.iterdir():
        if entry.name != "voices":
            _link_or_copy(entry, data / entry.name)
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            _link_or_copy(entry, data / "voices" / entry.name)
    for entry in (source / "voices" / "!v").iterdir():
        _link_or_copy(entry, variants / entry.name)
    return data


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst, target_is_directory=src.is_dir())
    except OSError:
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def _on_synth(wav, numsamples, events) -> int:
    """espeak's synth callback: append samples and events to the current sink.

    Runs inside espeak_Synth on the calling thread (synchronous mode), so the lock
    held by `speak` also covers it.
    """
    sink = _STATE.get("sink")
    if sink is None:
        return 0
    if numsamples > 0 and wav:
        sink["chunks"].append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    i = 0
    while events and events[i].type != EVENT_LIST_TERMINATED:
        ev = events[i]
        if ev.type in (EVENT_WORD, EVENT_PHONEME):
            # ev.sample counts from the start of this espeak_Synth call
            sink["events"].append((ev.type, ev.text_position, ev.length, ev.sample, bytes(ev.id.string)))
        i += 1
    return 0


def _ensure_initialised() -> dict:
    """Initialise espeak once per process (caller holds _LOCK)."""
    if "rate" in _STATE:
        return _STATE
    lib = _library()
    data = _private_data_dir()
    options = INIT_PHONEME_EVENTS | INIT_PHONEME_IPA | INIT_DONT_EXIT
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data.parent).encode(), options)
    if rate <= 0:
        raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data at {data}")
    callback = _CALLBACK_TYPE(_on_synth)
    lib.espeak_SetSynthCallback(callback)
    _STATE.update(lib=lib, rate=int(rate), data_dir=data, callback=callback, sink=None)
    return _STATE


def sample_rate() -> int:
    """espeak's output rate (22050 Hz for the bundled voices)."""
    with _LOCK:
        return _ensure_initialised()["rate"]


def install_variant(name: str, text: str) -> None:
    """Write a voice variant file `name` into the private data dir (usable as 'en-us+name')."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad variant name {name!r}")
    with _LOCK:
        target = _ensure_initialised()["data_dir"] / "voices" / "!v" / name
        if target.is_symlink():
            target.unlink()
        if not target.exists() or target.read_text() != text:
            tmp = target.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, target)


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """Every language code the bundled voices answer to, lower case, sorted."""
    codes: set[str] = set()
    with _LOCK:
        _ensure_initialised()
        voices = _library().espeak_ListVoices(None)
        i = 0
        while voices[i]:
            raw = ctypes.string_at(voices[i].contents.languages, 512)
            pos = 0
            while pos < len(raw) and raw[pos] != 0:  # priority byte, then a NUL-terminated code
                end = raw.index(b"\0", pos + 1)
                codes.add(raw[pos + 1 : end].decode("ascii", "replace").lower())
                pos = end + 1
            i += 1
    return tuple(sorted(c for c in codes if c))


# IPA characters that make a phoneme a vowel (syllable nucleus), and the mark of a syllabic
# consonant (n̩): the singer, the syllable counter and the Piper source share these.
IPA_VOWELS = frozenset("aeiouyæɑɐɒɔəɘɚɛɜɝɞɤɨɪɯɵøœɶʉʊʌʏᵻ")


SYLLABIC_MARK = "\u0329"
PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode: IPA characters, no separator


def text_to_phonemes(text: str, voice: str, separator: str = "") -> str:
    """IPA of `text` as espeak would speak it with `voice` (e.g. 'fi'), stress marks kept.

    No audio is made. Clauses come back separated by spaces, words by spaces; espeak
    may join an unstressed word to its neighbour ("of the"), so callers that need one
    word's phonemes ask for that word alone. A one-character `separator` is put
    between phonemes, so a diphthong ('aɪ') stays one phoneme.
    """
    if len(separator) > 1:
        raise ValueError(f"separator must be one character, not {separator!r}")
    mode = PHONEMES_IPA | (ord(separator) << 8 if separator else 0)
    encoded = ctypes.create_string_buffer(text.encode("utf-8"))
    pointer = ctypes.c_void_p(ctypes.addressof(encoded))
    parts: list[str] = []
    with _LOCK:
        state = _ensure_initialised()
        lib = state["lib"]
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise EspeakError(f"espeak has no voice {voice!r}")
        # espeak advances `pointer` clause by clause and sets it to NULL at the end
        while pointer.value:
            raw = lib.espeak_TextToPhonemes(ctypes.byref(pointer), CHARS_UTF8, mode)
            if raw:
                parts.append(raw.decode("utf-8", "replace").strip())
        # each call queues a sample-rate event that the next espeak_Synth delivers; after a
        # few dozen they overflow that call's event list and push out its first word events
        state["stale_events"] = True
    return " ".join(p for p in parts if p)


def _drain_stale_events(state: dict) -> None:
    """Deliver events queued by text_to_phonemes into an empty synthesis (caller holds _LOCK)."""
    if state.pop("stale_events", False):
        state["sink"] = None
        state["lib"].espeak_Synth(ctypes.create_string_buffer(b" "), 2, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        state["lib"].espeak_Synchronize()


def language_fix(code: str) -> str | None:
    """None when espeak-ng speaks `code`; otherwise the fix to show the user."""
    known = languages()
    if code.strip().lower() in known:
        return None
    examples = ", ".join(c for c in ("en-us", "en-gb", "fi", "sv", "de", "fr", "es", "it") if c in known)
    return f"use an espeak-ng language code such as {examples} ({len(known)} available)"


def speak(text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50,
          phoneme_input: bool = False) -> Utterance:
    """Speak `text` with `voice` (e.g. 'en-us+f3'); return samples and events.

    With `phoneme_input`, text inside [[ ]] is read as espeak phoneme mnemonics
    ("[[m'Il@]]"): pronunciation overrides.

    `pitch` and `pitch_range` are espeak's 0-100 parameters; a small range gives a flat
    intonation, which WORLD analyses more reliably. The result repeats exactly only
    for voices without `flutter` (the stock voices carry flutter state across calls).
    """
    encoded = text.encode("utf-8")
    with _LOCK:
        state = _ensure_initialised()
        lib = state["lib"]
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise EspeakError(f"espeak has no voice {voice!r}")
        _drain_stale_events(state)
        for param, value in ((PARAM_RATE, rate_wpm), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
            lib.espeak_SetParameter(param, int(value), 0)
        sink = {"chunks": [], "events": []}
        state["sink"] = sink
        try:
            buf = ctypes.create_string_buffer(encoded)
            flags = CHARS_UTF8 | (SYNTH_PHONEMES if phoneme_input else 0)
            status = lib.espeak_Synth(buf, len(encoded) + 1, 0, POS_CHARACTER, 0, flags, None, None)
            lib.espeak_Synchronize()
        finally:
            state["sink"] = None
        if status != EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status} for {text!r}")
        rate = state["rate"]
    pcm = np.concatenate(sink["chunks"]) if sink["chunks"] else np.zeros(0, dtype=np.int16)
    samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    return Utterance(samples, rate, _decode_events(sink["events"], text, len(samples)))


def _decode_events(raw: list, text: str, n_samples: int) -> tuple[Event, ...]:
    """Turn raw event tuples into Events with 0-based text offsets and clamped samples."""
    out = []
    for kind, text_pos, length, sample, ident in raw:
        sample = int(min(max(sample, 0), n_samples))
        if kind == EVENT_WORD:
            start = max(text_pos - 1, 0)  # espeak counts characters from 1
            out.append(Event("word", text[start : start + max(length, 0)], start, sample))
        else:
            ipa = ident.split(b"\0", 1)[0].decode("utf-8", "replace")
            out.append(Event("phoneme", ipa, -1, sample))
    return tuple(out)
