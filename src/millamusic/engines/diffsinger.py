"""The `diffsinger` vocal engine: a DiffSinger voicebank in the OpenUtau format sings the score.

The artist profile names the bank (`voice.diffsinger.voicebank`), the speaker of a multi-speaker
bank, and the bank's terms (`licence`). Per phrase: the bank's duration model places each phoneme
(every vowel on its beat), the notes with the profile's vibrato and glides give the f0, the
variance model the energy and breathiness, the acoustic model the mel and the vocoder the audio.
The internals are in voice/diffsinger_*.py; the interface facts in docs/diffsinger-format.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic.core.audio import mono_stem
from millamusic.core.errors import RenderError
from millamusic.core.files import atomic_path
from millamusic.engines import singer
from millamusic.engines.base import EngineInfo, VocalEngine, VocalRequest, VocalResult
from millamusic.music.score import Score, SungSyllable
from millamusic.voice.diffsinger_bank import Voicebank, load_voicebank
from millamusic.voice.diffsinger_models import Settings, pitch_curve, predicted_durations, sing, variances
from millamusic.voice.diffsinger_phonemes import PhonemeSet, attach_phonemes, sung_syllables
from millamusic.voice.diffsinger_timing import Phrase, f0_curve, fit_durations, phrases
from millamusic.voice.melody import drift, vibrato

VERSION = "0.2.1"  # 0.2: a backing-vocal part as the stem backing_vocals (by the embedded singer); 0.2.1: singer 0.5
PEAK_DBFS = -6.0  # the lead stem's peak: headroom for the mix
# The melody's shape, shared with the singer (same names, same ranges, same defaults)
SHARED_OPTIONS = ("vibrato_rate_hz", "vibrato_depth_cents", "vibrato_delay_s", "portamento_s", "drift_cents")
DEFAULT_OPTIONS = {**{key: singer.DEFAULT_OPTIONS[key] for key in SHARED_OPTIONS},
                   "steps": 20,  # the acoustic and variance models' sampling steps (OpenUtau's default)
                   "depth": 1.0,  # shallow-diffusion depth, capped at the bank's max_depth
                   "energy_db": 0.0, "breathiness_db": 0.0,  # added to what the variance model predicts
                   "device": "auto"}  # cpu | cuda | auto: onnxruntime's CUDA provider when it is there (kokoro's option)
_OWN_RANGES = {"steps": (1, 1000), "depth": (0.0, 1.0), "energy_db": (-24.0, 24.0), "breathiness_db": (-24.0, 24.0)}
# From the artist profile (pipeline), not written by hand: this engine's, and the other voices' it ignores
PROFILE_OPTIONS = {"diffsinger_voicebank": None, "diffsinger_speaker": None, "diffsinger_licence": None}
OTHER_VOICES = (*singer.SOURCE_OPTIONS, *singer.KOKORO_PROFILE_OPTIONS)


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for every bad singing option; the singer's and kokoro's options are
    accepted (a song can switch engines) and listed as unused."""
    own = {k: v for k, v in options.items() if k in _OWN_RANGES}
    problems = singer.option_problems({k: v for k, v in options.items() if k not in own and k not in PROFILE_OPTIONS})
    for key, (low, high) in _OWN_RANGES.items():
        if key in own:
            value = own[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                problems.append((key, f"must be a number from {low} to {high}", f"write a number from {low} to {high}"))
    if options.get("device", "auto") not in ("cpu", "cuda", "auto"):
        problems.append(("device", "unknown device", "use cpu, cuda or auto"))
    return problems


def bank_of(options: dict) -> Voicebank:
    path = options.get("diffsinger_voicebank")
    if not path:
        raise RenderError("diffsinger: no voicebank. Fix: set voice.diffsinger.voicebank in the artist profile "
                          "(the folder of an OpenUtau DiffSinger voicebank)")
    return load_voicebank(path)


def licence_text(options: dict) -> str:
    """The bank's terms as the artist profile states them ("unknown" when it does not)."""
    licence = options.get("diffsinger_licence") or {}
    name = str(licence.get("name") or "").strip()
    if not name or name.lower() == "unknown":
        return "unknown"
    return name if licence.get("commercial") else f"{name} (non-commercial)"


class DiffSinger(VocalEngine):
    info: ClassVar[EngineInfo] = EngineInfo(
        name="diffsinger", kind="vocals", version=VERSION,
        model="a DiffSinger voicebank (OpenUtau format, onnxruntime) named in the artist profile",
        licence="unknown", generator="trained",
    )

    def describe(self, request: VocalRequest) -> EngineInfo:
        """The credits' entry: the bank's name, version and author, its terms, its content hash."""
        opts = {**PROFILE_OPTIONS, **request.options}
        bank = bank_of(opts)
        speaker = f", speaker {opts['diffsinger_speaker']}" if opts["diffsinger_speaker"] else ""
        model = (f"DiffSinger voicebank {bank.name}" + (f" {bank.version}" if bank.version else "")
                 + (f" by {bank.author}" if bank.author else "") + f"{speaker} (OpenUtau format, onnxruntime)")
        return EngineInfo(name="diffsinger", kind="vocals", version=VERSION, model=model, licence=licence_text(opts),
                          generator="trained", weights_hash=bank.sha256)

    def render(self, score: Score, request: VocalRequest) -> VocalResult:
        problems = option_problems({k: v for k, v in request.options.items()
                                    if k not in PROFILE_OPTIONS and k not in OTHER_VOICES})
        if problems:
            raise RenderError("diffsinger: " + "; ".join(f"option {k}: {m} ({f})" for k, m, f in problems))
        opts = {**DEFAULT_OPTIONS, **PROFILE_OPTIONS, **request.options}
        bank = bank_of(opts)
        speaker = opts["diffsinger_speaker"]
        if bank.speakers and speaker not in bank.speakers:
            raise RenderError(f"diffsinger: the voicebank {bank.name!r} has no speaker {speaker!r}. Fix: set "
                              f"voice.diffsinger.speaker to one of {', '.join(bank.speakers)}")
        settings = Settings(steps=int(opts["steps"]), depth=float(opts["depth"]), speaker=speaker,
                            energy_db=float(opts["energy_db"]), breathiness_db=float(opts["breathiness_db"]),
                            device=str(opts["device"]))
        phonemes = PhonemeSet(bank, request.language)
        syllables = sung_syllables(score)
        spelled = attach_phonemes(score, syllables, phonemes)
        frame_s = bank.acoustic.frame_seconds
        rate = int(bank.vocoder.values["sample_rate"])
        notes_hz = _melody(syllables, opts, np.random.default_rng(request.seed))
        buffer = np.zeros(int(np.ceil(score.total_seconds * rate)) + rate, dtype=np.float32)
        sung: list[SungSyllable] = []
        cached = 0
        found = phrases(syllables, frame_s)
        for phrase in found:
            durations = fit_durations(phrase, predicted_durations(bank, phrase, settings), phonemes.is_vowel)
            modelled = pitch_curve(bank, phrase, durations, settings)  # the bank's own pitch model, when it has one
            f0 = (f0_curve(phrase, frame_s, notes_hz) if modelled is None
                  else (440.0 * 2.0 ** ((modelled - 69.0) / 12.0)).astype(np.float32))
            audio, hit = self._phrase_audio(bank, phrase, durations, f0, settings, request.reuse_dir)
            cached += hit
            start = int(round(phrase.start_frame * frame_s * rate))
            a, b = max(start, 0), min(start + len(audio), len(buffer))
            if b > a:
                buffer[a:b] += audio[a - start : b - start]
            sung.extend(_syllable_times(phrase, durations, frame_s))
        stem = mono_stem(buffer, rate, request.sample_rate, score.total_frames(request.sample_rate), PEAK_DBFS)
        details = {
            "voicebank": bank.name, "voicebank_version": bank.version, "voicebank_author": bank.author,
            "voicebank_sha256": bank.sha256, "speaker": speaker, "licence": licence_text(opts),
            "licence_files": bank.licence_files, "character_txt": bank.character_text, "phrases": len(found), "phrases_from_cache": cached,
            "words_spelled_by_espeak": spelled, "f0": "the bank's pitch model" if bank.pitch else "the notes, vibrato, glides", "sung_syllables": len(sung), "notes": len(score.notes),
            "options": {k: v for k, v in opts.items() if k in DEFAULT_OPTIONS},
            "options_not_used": sorted(set(request.options) - set(DEFAULT_OPTIONS) - set(PROFILE_OPTIONS)
                                       - set(OTHER_VOICES)),
        }
        stems, info = {"lead": stem}, self.describe(request)
        if score.backing_notes:
            # the voicebank sings the lead; the backing part ("(hold on)") is the embedded singer's
            # backing voice, and the credits say so
            stems["backing_vocals"] = singer.sing_backing(score, request)
            details["backing_vocals"] = f"embedded singer {singer.Singer.info.version} ({singer.Singer.info.model})"
            info = replace(info, model=f"{info.model}; backing vocals: embedded singer ({singer.Singer.info.model})")
        return VocalResult(stems=stems, syllables=tuple(sung), details=details, engine_info=info)

    @staticmethod
    def _phrase_audio(bank: Voicebank, phrase: Phrase, durations: np.ndarray, f0: np.ndarray, settings: Settings,
                      reuse_dir: Path | None) -> tuple[np.ndarray, bool]:
        """The phrase sung (from the phrase cache beside the stage cache when it was sung before)."""
        key = hashlib.sha256(json.dumps({
            "engine": VERSION, "bank": bank.sha256, "tokens": phrase.tokens, "durations": durations.tolist(),
            "f0": hashlib.sha256(f0.astype(np.float32).tobytes()).hexdigest(), "settings": settings.__dict__,
        }, sort_keys=True).encode()).hexdigest()
        path = reuse_dir / "diffsinger" / f"{key}.npy" if reuse_dir is not None else None
        if path is not None and path.is_file():
            try:
                return np.load(path), True
            except (OSError, ValueError):
                pass  # a damaged entry is sung again and replaced
        pitch_midi = 69.0 + 12.0 * np.log2(np.maximum(f0, 1e-3) / 440.0)
        curves = variances(bank, phrase, durations, pitch_midi, settings)
        audio = sing(bank, phrase, durations, f0, curves, settings)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temp, open(temp, "wb") as handle:
                np.save(handle, audio)
        return audio, False


def _melody(syllables, opts: dict, rng: np.random.Generator):
    """times (s) -> Hz: each note's pitch held to the next, glided over `portamento_s`, with the
    profile's vibrato and slow drift (the singer's own shaping, voice/melody.py)."""
    notes = [(start, end, midi) for syl in syllables for start, end, midi in syl.pitches]
    starts = np.array([n[0] for n in notes])
    pitches = np.array([n[2] for n in notes], dtype=np.float64)
    glide = max(float(opts["portamento_s"]), 1e-3)
    phases = rng.integers(0, 2**31)

    def notes_hz(times: np.ndarray) -> np.ndarray:
        index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(notes) - 1)
        semitones = pitches[index]
        previous = pitches[np.maximum(index - 1, 0)]
        into = times - starts[index]
        ramp = np.clip(into / glide, 0.0, 1.0)  # glide from the previous note over the note's first `glide` s
        semitones = previous + (semitones - previous) * (0.5 - 0.5 * np.cos(np.pi * ramp))
        local = np.random.default_rng(phases)
        semitones = semitones + vibrato([(s, e) for s, e, _ in notes], times, opts, local)
        semitones = semitones + drift(times, opts, np.random.default_rng(phases + 1)) / 100.0
        return 440.0 * 2.0 ** ((semitones - 69.0) / 12.0)

    return notes_hz


def _syllable_times(phrase: Phrase, durations: np.ndarray, frame_s: float) -> list[SungSyllable]:
    """Where each syllable was sung: from its first onset consonant, vowel on the note, to its end."""
    starts = phrase.start_frame + np.concatenate([[0], np.cumsum(durations)[:-1]])
    out = []
    vowel = phrase.groups[0]
    for k, syl in enumerate(phrase.syllables):
        onset = len(syl.onset)
        first = vowel - onset if k else 1  # the first syllable's onset follows the opening SP
        begin = float(starts[first] if onset else starts[vowel]) * frame_s
        vowel_s = float(starts[vowel]) * frame_s
        out.append(SungSyllable(syl.notes[0], round(begin, 4), round(max(syl.end, vowel_s + frame_s), 4), round(vowel_s, 4)))
        vowel += phrase.groups[k + 1]
    return out
