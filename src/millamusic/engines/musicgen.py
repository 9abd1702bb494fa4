"""MusicGen backing engine on Hugging Face `transformers`: whole songs, in key and in time.

MusicGen alone writes at most 30 s, drifts in tempo and knows nothing of the song's chords.
This engine
  * prompts each window with the song's genre, style, tempo, key and the instrumentation of
    the section it is in (the arranger's preset says who plays where), plus the spec's prompt;
  * conditions the melody checkpoints on a 12-bin chroma of a harmonic guide the arranger
    renders from the score (no drums), or of the spec's reference recording;
  * continues window after window with the last seconds of tokens as the prompt, then decodes
    the whole token stream in one pass, so there is no seam to hide;
  * beat-tracks the result and fits it onto the bar grid (millamusic.grid_fit), and measures
    its key.

torch and transformers are imported inside functions: `import millamusic` stays light, and
spec checks (option_problems) run without them. Real checkpoints (hub id or local folder) and
the tiny test checkpoints load through the same `from_pretrained` call.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic.analysis.chroma import chroma_window, melody_chroma
from millamusic.analysis.grid_fit import fit_to_grid
from millamusic.core.audio import Audio, read_audio, resample
from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.engines.arranger import arrange, resolve_preset
from millamusic.engines.base import BackingEngine, BackingRequest, BackingResult, EngineInfo
from millamusic.instruments.rendering import fade_tail, render_arrangement, sum_stems
from millamusic.music.score import Score

ENGINE_VERSION = "0.1.0"
MUSICGEN_RATE = 32000  # EnCodec 32 kHz
FRAME_RATE = 50  # codec frames (decoding steps) per second of audio
TEMPO_MARGIN = 0.04  # generate this much extra: a slow take stretched onto the grid must still fill the song
BACKING_PEAK_DBFS = -1.0  # like the arranger's stem sum: the mix stage sets the balance

# The published checkpoints (all CC-BY-NC 4.0, per their model cards).
KNOWN_MODELS = (
    "facebook/musicgen-small", "facebook/musicgen-medium", "facebook/musicgen-large",
    "facebook/musicgen-melody", "facebook/musicgen-melody-large",
    "facebook/musicgen-stereo-small", "facebook/musicgen-stereo-medium", "facebook/musicgen-stereo-large",
    "facebook/musicgen-stereo-melody", "facebook/musicgen-stereo-melody-large",
)
KNOWN_LICENCE = "cc-by-nc-4.0"
ARCHITECTURES = ("musicgen", "musicgen_melody")

DEFAULT_OPTIONS: dict = {
    "model": "facebook/musicgen-melody",  # hub id or a local checkpoint folder
    "device": "auto",  # auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps
    "dtype": "auto",  # auto (bf16/fp16 on GPU, fp32 on CPU) | float32 | float16 | bfloat16
    "guidance_scale": 3.0,  # classifier-free guidance: how closely to follow the text
    "temperature": 1.0,
    "top_k": 250,
    "top_p": 0.0,  # 0: off (top-k sampling, as MusicGen was tuned)
    "window_seconds": 30.0,  # what one generate call sees (MusicGen was trained on 30 s)
    "context_seconds": 10.0,  # how much of the previous window each next one continues from
    "prompt": "",  # the producer's own words, appended to every section's prompt
    "guide": "auto",  # melody chroma from: auto (reference if the spec has one, else score) | score | reference | none
    "fit_tempo": True,  # time-stretch onto the bar grid when the tempo is off by more than tempo_tolerance
    "tempo_tolerance": 0.01,
    "fit_key": "warn",  # warn | shift (pitch-shift by up to max_key_shift semitones)
    "max_key_shift": 2,
    "licence": None,  # the checkpoint's licence, when its model card does not say
}
_RANGES = {"guidance_scale": (1.0, 15.0), "temperature": (0.05, 3.0), "top_k": (0, 2048), "top_p": (0.0, 1.0),
           "window_seconds": (2.0, 30.0), "context_seconds": (0.5, 25.0), "tempo_tolerance": (0.001, 0.25),
           "max_key_shift": (0, 2)}
_CHOICES = {"dtype": ("auto", "float32", "float16", "bfloat16"), "guide": ("auto", "score", "reference", "none"),
            "fit_key": ("warn", "shift")}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for every bad musicgen option a person wrote; [] when all are fine."""
    problems = []
    for key in sorted(set(options) - set(DEFAULT_OPTIONS)):
        problems.append((key, "unknown musicgen option", f"use one of: {', '.join(DEFAULT_OPTIONS)}"))
    for key, (lo, hi) in _RANGES.items():
        value = options.get(key)
        if key in options and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
            problems.append((key, f"must be a number from {lo} to {hi}", f"write a number from {lo} to {hi}"))
    for key, choices in _CHOICES.items():
        if key in options and options[key] not in choices:
            problems.append((key, f"must be one of {', '.join(choices)}", f"write one of: {', '.join(choices)}"))
    if "device" in options and not (isinstance(options["device"], str) and _DEVICE.match(options["device"])):
        problems.append(("device", "not a device", "write auto, cpu, cuda, cuda:N or mps"))
    if "fit_tempo" in options and not isinstance(options["fit_tempo"], bool):
        problems.append(("fit_tempo", "must be true or false", "write true or false"))
    for key in ("model", "prompt", "licence"):
        if options.get(key) is not None and not isinstance(options[key], str):
            problems.append((key, "must be text", f"write the {key} as a string"))
    window = options.get("window_seconds", DEFAULT_OPTIONS["window_seconds"])
    context = options.get("context_seconds", DEFAULT_OPTIONS["context_seconds"])
    if not problems and context > window - 1.0:
        problems.append(("context_seconds", f"must be at least 1 s shorter than window_seconds ({window})",
                         "shorten context_seconds or lengthen window_seconds"))
    return problems


def _settings(options: dict) -> dict:
    problems = option_problems(options)
    if problems:
        key, message, fix = problems[0]
        raise RenderError(f"musicgen option {key!r}: {message}; fix: {fix}")
    return {**DEFAULT_OPTIONS, **options}


# --------------------------------------------------------------------------- the checkpoint


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint found on disk, before any weights are loaded."""

    model_id: str  # as written: hub id or folder
    folder: Path
    architecture: str  # "musicgen" | "musicgen_melody"
    audio_channels: int  # 1, or 2 for the stereo checkpoints
    licence: str  # from the model card, the `licence` option, or what the published ids carry; "unknown"
    identity: str  # content identity for the cache: hub commit, or sha256 of a folder's files

    @property
    def melody(self) -> bool:
        return self.architecture == "musicgen_melody"


_FOLDER_HASHES: dict[tuple, str] = {}


def _folder_sha256(folder: Path) -> str:
    """sha256 of every file's name and bytes: a moved folder is the same model, an edited one is not.

    Remembered per process by (path, size, mtime) so an album hashes a multi-GB checkpoint once.
    """
    files = sorted(p for p in folder.rglob("*")  # hidden entries inside it (.git, .cache) are not the model
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    stamp = (str(folder.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FOLDER_HASHES:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
        _FOLDER_HASHES[stamp] = digest.hexdigest()
    return _FOLDER_HASHES[stamp]


def _card_licence(folder: Path) -> str | None:
    """The `license:` of a Hugging Face model card's YAML front matter (README.md)."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    match = re.match(r"---\s*\n(.*?)\n---", card.read_text(errors="replace"), re.S)
    if not match:
        return None
    found = re.search(r"^license:\s*['\"]?([^'\"\n]+)", match.group(1), re.M)
    return found.group(1).strip() if found else None


def _hub_folder(model_id: str) -> tuple[Path, str]:
    """The local snapshot of a hub checkpoint (downloading it when the network allows)."""
    from huggingface_hub import snapshot_download  # huggingface_hub: only for hub checkpoints
    from huggingface_hub.errors import (  # huggingface_hub: only for hub checkpoints
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    known = f"published ids: {', '.join(KNOWN_MODELS)}"
    try:
        folder = Path(snapshot_download(model_id, local_files_only=True))
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise EngineUnavailable(
                f"MusicGen checkpoint {model_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set. "
                f"Fix: on a machine with network run `hf download {model_id}` and copy the cache "
                "(~/.cache/huggingface), or pass a local checkpoint folder with --model") from None
        try:
            folder = Path(snapshot_download(model_id))
        except GatedRepoError as error:  # a RepositoryNotFoundError too: it exists, behind a login and its terms
            raise EngineUnavailable(f"MusicGen model {model_id!r} is gated on the Hugging Face hub. Fix: accept its "
                                    "terms on huggingface.co and run `hf auth login`, or pass a local checkpoint "
                                    "folder") from error
        except RepositoryNotFoundError as error:  # the cause has the hub's answer (status, URL, request id)
            raise EngineUnavailable(f"unknown MusicGen model {model_id!r} on the Hugging Face hub; {known}; "
                                    "or pass a local checkpoint folder") from error
        except Exception as error:  # no network, proxy, disk: the library's own words plus the fix
            raise EngineUnavailable(
                f"MusicGen checkpoint {model_id!r} is not downloaded and could not be fetched "
                f"({type(error).__name__}: {error}). Fix: on a machine with network run `hf download {model_id}` "
                "and copy ~/.cache/huggingface here, or pass a local checkpoint folder with --model") from error
    except (ValueError, OSError) as error:  # a malformed id, or a cache that cannot be read
        raise EngineUnavailable(f"{model_id!r} is neither a local folder nor a hub model id ({error}); {known}") from error
    return folder, f"hub:{model_id}@{folder.name}"


def resolve_model(model_id: str, *, licence: str | None = None) -> ModelSource:
    """Find the checkpoint and say what it is, without loading weights. Raises EngineUnavailable."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        folder, identity = path, None
    elif model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id:  # hub ids: owner/name
        raise EngineUnavailable(f"MusicGen model folder {model_id} does not exist. "
                                "Fix: pass a folder holding config.json and the weights, or a hub id")
    else:
        folder, identity = _hub_folder(model_id)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise EngineUnavailable(f"{folder} has no config.json: not a Hugging Face checkpoint folder. "
                                "Fix: point --model at the folder `save_pretrained` wrote (or a hub id)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EngineUnavailable(f"{config_path} is not valid JSON ({error}); the checkpoint is damaged") from None
    architecture = config.get("model_type")
    if architecture not in ARCHITECTURES:
        raise EngineUnavailable(f"{folder} holds a {architecture!r} model, not MusicGen "
                                f"(model_type must be one of {', '.join(ARCHITECTURES)})")
    channels = int(config.get("decoder", {}).get("audio_channels", 1))
    found = licence or _card_licence(folder) or (KNOWN_LICENCE if model_id in KNOWN_MODELS else "unknown")
    return ModelSource(model_id, folder, architecture, channels, found, identity or f"sha256:{_folder_sha256(folder)}")


def choose_device(requested: str = "auto") -> str:
    """auto: CUDA, then Apple MPS, then CPU. An explicit GPU that is not there is an error, not a fallback."""
    import torch  # torch: ~2 s to import

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise EngineUnavailable(f"device {requested!r} was asked for but torch {torch.__version__} ({build}) sees "
                                    "no CUDA GPU. Fix: use --device auto or cpu, or install a CUDA build of torch")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise EngineUnavailable(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if requested == "mps" and not has_mps:
        raise EngineUnavailable("device 'mps' was asked for but this torch sees no Apple GPU. Fix: use --device auto or cpu")
    return requested


def choose_dtype(requested: str, device: str):
    """bf16 on CUDA GPUs that have it (fp16 otherwise), fp16 on MPS, fp32 on CPU."""
    import torch  # torch: ~2 s to import

    if requested == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    if requested == "float16" and device == "cpu":
        raise EngineUnavailable("dtype float16 is not supported on the CPU. Fix: dtype auto, float32 or bfloat16")
    return getattr(torch, requested)


_LOADED: dict[tuple, tuple] = {}  # one model at a time: an album reuses it, two would not fit a GPU


def load_model(source: ModelSource, device: str, dtype):
    """(model, tokenizer) on `device`, through `from_pretrained` like any checkpoint. Clear errors."""
    key = (source.identity, device, str(dtype))
    if key in _LOADED:
        return _LOADED[key]
    _LOADED.clear()
    import torch  # torch: ~2 s to import
    import transformers  # transformers: seconds to import
    from transformers import AutoTokenizer  # transformers: seconds to import

    transformers.utils.logging.set_verbosity_error()  # its progress bars would interleave with ours
    transformers.utils.logging.disable_progress_bar()
    model_class = (transformers.MusicgenMelodyForConditionalGeneration if source.melody
                   else transformers.MusicgenForConditionalGeneration)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder)
        model = model_class.from_pretrained(source.folder, dtype=dtype).to(device).eval()
    except torch.cuda.OutOfMemoryError as error:  # the cause says how much was asked for and how much was free
        raise RenderError(f"out of GPU memory loading {source.model_id} in {str(dtype).split('.')[-1]} on {device}. "
                          "Fix: a smaller checkpoint (facebook/musicgen-small), dtype float16, or --device cpu") from error
    except Exception as error:  # safetensors, tokenizers and torch raise their own types for a damaged folder
        raise EngineUnavailable(f"could not load MusicGen weights from {source.folder}: {type(error).__name__}: "
                                f"{error}. Fix: the folder "
                                "needs config.json, the weights (*.safetensors) and the tokenizer files; "
                                "re-download or re-save it") from error
    _LOADED[key] = (model, tokenizer)
    return model, tokenizer


# --------------------------------------------------------------------------- prompts

# How the arranger's instruments are described to the model (by part name, then by voice).
_PART_WORDS = {"guitar": "distorted electric guitars", "clean_guitar": "clean electric guitar", "arp": "synth arpeggio",
               "keys": "electric piano", "pad": "warm pad", "piano": "piano"}
_VOICE_WORDS = {"synth_bass": "synth bass", "bass": "bass guitar", "epiano": "electric piano", "pluck": "plucked synth",
                "piano": "piano", "pad": "warm pad", "string": "electric guitar"}
_DRUM_WORDS = {"intro": "light drums", "verse": "steady drums", "lift": "building drums", "chorus": "big punchy drums",
               "breakdown": "sparse drums", "outro": "drums"}


def prompt_name(score: Score, section_index: int) -> str:
    """Which prompt a section is played from: its kind, and the tempo and key it starts in where
    they are not the song's (a last chorus up a tone at 110 bpm: "chorus, 110 bpm, B minor")."""
    section = score.sections[section_index]
    beat = score.bars[section.start_bar].start_beat
    tempo, key = score.tempo_at(beat), score.section_key(section_index).name
    if round(tempo) == round(score.tempo_bpm) and key == score.key:
        return section.kind
    return f"{section.kind}, {round(tempo)} bpm, {key}"


def section_prompts(score: Score, request: BackingRequest, extra: str) -> dict[str, str]:
    """One text prompt per section kind (and tempo and key, where a section changes them): genre,
    style, who plays (the arranger's preset), tempo, key. A window is prompted with the tempo and
    key of the section it starts in: the model is told one tempo a window, so a ritardando is not
    in its prompt."""

    _, preset, _ = resolve_preset(request.genre, request.style)
    style = ", ".join(request.style)
    prompts = {}
    names = {prompt_name(score, i): i for i in range(len(score.sections))}
    for prompt, index in names.items():
        kind = score.sections[index].kind
        tempo = score.tempo_at(score.bars[score.sections[index].start_bar].start_beat)
        plan = preset["sections"].get(kind, preset["sections"]["other"])
        level = plan["level"]
        players = [_DRUM_WORDS.get(level, "drums")] if preset["drums"]["grooves"].get(level) else []
        for name, part in preset["instruments"].items():
            if part and level in part.get("patterns", {}):
                players.append(_PART_WORDS.get(name) or _VOICE_WORDS.get(part["voice"], name.replace("_", " ")))
        band = ", ".join(dict.fromkeys(players)) or "sparse"
        text = (f"{style + ' ' if style else ''}{request.genre} instrumental backing track, {kind}: {band}, "
                f"{round(tempo)} bpm, {score.section_key(index).name}")
        prompts[prompt] = f"{text}. {extra.strip()}" if extra.strip() else text
    return prompts


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """One generate call, in codec frames: [start, new_start) is the context it continues from."""

    start: int
    new_start: int
    end: int


def plan_windows(total: int, window: int, context: int) -> list[Window]:
    """Cover `total` frames with windows of `window` frames, each after the first continuing from
    at least `context` frames of the previous ones. Every window is full length (the last one
    takes more context instead of being short), so each prompt sees what the model trained on."""
    if total <= window:
        return [Window(0, 0, total)]
    windows = [Window(0, 0, window)]
    while windows[-1].end < total:
        end = min(windows[-1].end + window - context, total)
        windows.append(Window(end - window, windows[-1].end, end))
    return windows


def generate_codes(model, tokenizer, *, frames: int, windows: list[Window], texts: list[str],
                   chroma: list | None, settings: dict, seed: int, device: str):
    """(codebooks, frames) codec tokens for the whole song, window after window.

    Each window's prompt is the text for its section plus the tokens of its context; a
    StoppingCriteria that never stops hands us the token stream (generate itself returns only
    decoded audio, and its streamer is not wired through MusicGen's sampling loop).
    """
    import torch  # torch: ~2 s to import
    from transformers import StoppingCriteria, StoppingCriteriaList  # transformers: seconds to import

    class _Tokens(StoppingCriteria):
        ids = None

        def __call__(self, input_ids, scores, **kwargs):  # noqa: ARG002 (the StoppingCriteria signature)
            self.ids = input_ids
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    decoder = model.decoder
    codebooks = decoder.num_codebooks
    stereo = decoder.config.audio_channels == 2
    delays = [k // 2 if stereo else k for k in range(codebooks)]
    start_token = model.generation_config.decoder_start_token_id
    codes = torch.full((codebooks, frames), start_token, dtype=torch.long)
    torch.manual_seed(seed)  # seeds CUDA too; same device + same seed -> same tokens
    for index, window in enumerate(windows):
        tokens = _Tokens()
        prompt = codes[:, window.start:window.new_start]
        decoder_ids = torch.cat([torch.full((codebooks, 1), start_token, dtype=torch.long), prompt], dim=1)
        inputs = tokenizer([texts[index]], return_tensors="pt")
        extra = {}
        if chroma is not None:
            extra["input_features"] = torch.from_numpy(chroma[index])[None].to(device, model.dtype)
        with torch.inference_mode():
            model.generate(
                input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
                decoder_input_ids=decoder_ids.to(device), max_new_tokens=window.end - window.new_start + max(delays),
                do_sample=True, guidance_scale=settings["guidance_scale"], temperature=settings["temperature"],
                top_k=settings["top_k"] or None, top_p=settings["top_p"] or None,
                stopping_criteria=StoppingCriteriaList([tokens]), **extra)
            _, mask = decoder.build_delay_pattern_mask(decoder_ids.to(device), pad_token_id=start_token,
                                                       max_length=tokens.ids.shape[1])
            stream = decoder.apply_delay_pattern_mask(tokens.ids, mask).cpu()
        length = window.end - window.start  # undo the delay pattern: codebook k runs delays[k] steps late
        codes[:, window.start:window.end] = torch.stack([stream[k, 1 + d: 1 + d + length]
                                                         for k, d in enumerate(delays)])
    return codes


def decode_codes(model, codes) -> np.ndarray:
    """(codebooks, frames) tokens -> float32 (channels, frames * 640) at 32 kHz, in one pass."""
    import torch  # torch: ~2 s to import

    with torch.inference_mode():
        device = next(model.audio_encoder.parameters()).device
        codes = codes.to(device)
        if model.decoder.config.audio_channels == 2:  # left and right codebooks are interleaved
            parts = [codes[0::2], codes[1::2]]
        else:
            parts = [codes]
        audio = [model.audio_encoder.decode(part[None, None], audio_scales=[None]).audio_values[0] for part in parts]
        return torch.cat(audio, dim=0).float().cpu().numpy()


# --------------------------------------------------------------------------- melody guide


def guide_audio(score: Score, request: BackingRequest, source: ModelSource, guide: str) -> tuple[Audio | None, str]:
    """The audio whose chroma the melody checkpoints follow, and where it came from."""
    if guide == "auto":
        guide = ("reference" if request.reference else "score") if source.melody else "none"
    if guide != "none" and not source.melody:
        raise RenderError(f"musicgen guide {guide!r} needs a melody checkpoint (e.g. facebook/musicgen-melody); "
                          f"{source.model_id} is a {source.architecture} model. Fix: guide: none, or a melody model")
    if guide == "none":
        return None, "none"
    if guide == "reference":
        if not request.reference:
            raise RenderError("musicgen guide 'reference' needs the spec's `reference:` recording. "
                              "Fix: add `reference: <file>` to the spec, or use guide: score")
        return read_audio(Path(request.reference)), "reference"

    arrangement = arrange(score, BackingRequest(seed=request.seed, genre=request.genre, style=request.style,
                                                sample_rate=MUSICGEN_RATE))
    pitched = [part for part in arrangement.parts if part.name != "drums"]  # chroma of harmony, not of drums
    stems = render_arrangement(score, replace(arrangement, parts=tuple(pitched)), request.seed, MUSICGEN_RATE)
    return Audio(sum_stems(stems), MUSICGEN_RATE), "score"


def guide_chroma(guide: Audio, guide_from: str, request: BackingRequest) -> tuple[np.ndarray, float]:
    """(whole-song melody chroma, seconds into it where bar 1 starts). A reference recording is
    in its own key and bar 1 starts `reference_start` into it: its chroma moves with the song's
    `transpose` (a pitch-class rotation) and its windows are read from that point."""
    whole = melody_chroma(guide)
    if guide_from != "reference":
        return whole, 0.0
    return np.roll(whole, request.transpose, axis=1), request.reference_start


# --------------------------------------------------------------------------- the engine


class MusicGen(BackingEngine):
    """MusicGen (Meta) through transformers: one stereo stem, `backing`, fitted to the bar grid."""

    info: ClassVar[EngineInfo] = EngineInfo(name="musicgen", kind="backing", version=ENGINE_VERSION,
                                            model=DEFAULT_OPTIONS["model"], licence=KNOWN_LICENCE, generator="trained")

    def source(self, request: BackingRequest) -> ModelSource:
        settings = _settings(request.options)
        return resolve_model(settings["model"], licence=settings["licence"])

    def describe(self, request: BackingRequest) -> EngineInfo:
        source = self.source(request)
        return EngineInfo(name="musicgen", kind="backing", version=ENGINE_VERSION, model=source.model_id,
                          licence=source.licence, generator="trained", weights_hash=source.identity)

    def render(self, score: Score, request: BackingRequest) -> BackingResult:
        settings = _settings(request.options)
        source = self.source(request)
        device = choose_device(settings["device"])
        dtype = choose_dtype(settings["dtype"], device)
        guide, guide_from = guide_audio(score, request, source, settings["guide"])
        started = time.perf_counter()
        model, tokenizer = load_model(source, device, dtype)
        loaded = time.perf_counter()

        frames = math.ceil(score.total_seconds * (1 + TEMPO_MARGIN) * FRAME_RATE)
        window = round(settings["window_seconds"] * FRAME_RATE)
        windows = plan_windows(frames, window, round(settings["context_seconds"] * FRAME_RATE))
        prompts = section_prompts(score, request, settings["prompt"])
        texts = [prompts[_section_prompt(score, w.new_start / FRAME_RATE)] for w in windows]
        chroma = None
        if guide is not None:
            whole, offset = guide_chroma(guide, guide_from, request)
            chroma = [chroma_window(whole, offset + w.start / FRAME_RATE, frames=model.config.chroma_length)
                      for w in windows]
        try:
            codes = generate_codes(model, tokenizer, frames=frames, windows=windows, texts=texts, chroma=chroma,
                                   settings=settings, seed=request.seed, device=device)
            generated = time.perf_counter()
            raw = decode_codes(model, codes)
        except Exception as error:
            import torch  # torch: ~2 s to import

            if isinstance(error, torch.cuda.OutOfMemoryError):
                raise RenderError(f"out of GPU memory generating with {source.model_id} on {device}. Fix: a smaller "
                                  "checkpoint, window_seconds 20, or --device cpu") from error
            raise
        decoded = time.perf_counter()

        audio = resample(Audio(raw, MUSICGEN_RATE), request.sample_rate).to_stereo()
        # The grid fit knows one tempo and one key: a song with a tempo map is not stretched (one
        # stretch would pull every other section off its tempo), and one that changes key is not
        # pitch-shifted (the whole-song key estimate mixes its keys); the warnings say so.
        changes_key = any(section.key is not None for section in score.sections)
        stretch = settings["fit_tempo"] and not score.tempo_changes
        fit = fit_to_grid(audio, tempo_bpm=score.tempo_bpm, key=score.key_value,
                          frames=score.total_frames(request.sample_rate),
                          tempo_tolerance=settings["tempo_tolerance"] if stretch else math.inf,
                          key_policy="warn" if changes_key else settings["fit_key"],
                          max_key_shift=settings["max_key_shift"])
        map_warnings = (["the song changes tempo: the backing was not stretched onto the tempo map"]
                        if score.tempo_changes and settings["fit_tempo"] else [])
        map_warnings += (["the song changes key: the backing was not pitch-shifted"]
                         if changes_key and settings["fit_key"] == "shift" else [])
        samples = fit.audio.samples.copy()
        fade_tail(samples, score, request.sample_rate)  # the model does not know the song ends at the last bar
        peak = float(np.max(np.abs(samples)))
        if peak > 0:
            samples *= np.float32(10 ** (BACKING_PEAK_DBFS / 20) / peak)
        delay = codes.shape[0] // source.audio_channels - 1  # the codebook delay pattern adds these steps per call
        steps = sum(w.end - w.new_start + delay for w in windows)
        details = {
            "model": source.model_id, "architecture": source.architecture, "licence": source.licence,
            "identity": source.identity, "device": device, "dtype": str(dtype).split(".")[-1],
            "guide": guide_from, "windows": len(windows), "window_seconds": settings["window_seconds"],
            "context_seconds": settings["context_seconds"], "frames": frames, "steps": steps,
            "load_seconds": round(loaded - started, 3), "generate_seconds": round(generated - loaded, 3),
            "decode_seconds": round(decoded - generated, 3),
            "steps_per_second": round(steps / max(generated - loaded, 1e-9), 2),
            "sampling": {k: settings[k] for k in ("guidance_scale", "temperature", "top_k", "top_p")},
            "tempo": {"spec": score.tempo_bpm, "measured": _finite(fit.measured_bpm), "fitted": _finite(fit.fitted_bpm),
                      "stretch": fit.stretch, "offset_seconds": fit.offset_seconds},
            "key": {"spec": score.key, "measured": fit.measured_key, "margin": _finite(fit.key_margin),
                    "pitch_shift": fit.pitch_shift},
            "prompts": prompts, "warnings": list(fit.warnings) + map_warnings,
        }
        prompt = " | ".join(f"{kind}: {text}" for kind, text in prompts.items())
        return BackingResult(stems={"backing": Audio(samples, request.sample_rate)}, midi=b"", prompt=prompt,
                             details=details)


def _finite(value: float) -> float | None:
    """JSON has no NaN: what could not be measured is null in the release record."""
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _section_prompt(score: Score, seconds: float) -> str:
    """The prompt name of the section sounding at `seconds` (the last one past the end)."""
    return prompt_name(score, score.section_at(score.seconds_to_beat(seconds)))
