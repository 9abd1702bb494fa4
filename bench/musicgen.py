"""Time the MusicGen backing engine: its overhead over a bare `model.generate`, and ms per decoding step.

    python bench/musicgen.py                      # full run: overhead + small and medium (~25 min on 2 CPU cores)
    python bench/musicgen.py --quick              # a smoke check: short clips, few steps, small only
    python bench/musicgen.py --parts steps --sizes small --steps 100 --threads 8
    python bench/musicgen.py --device cuda        # GPU in bf16 (auto: CPU, plus CUDA when there is one)

No download: every model has random weights, built in code with the real architecture.

1. Overhead (`--parts overhead`). A MusicGen checkpoint of a moderately small but realistic shape
   (decoder 6 layers x 512, T5 2 layers x 256, the real 32 kHz EnCodec) is saved to a temp folder
   and loaded by the engine through `from_pretrained`, like a downloaded one. Then, on the same
   cached model, with the same prompt, seed and number of new tokens:
     engine  `MusicGen().render(score, request)` of a short clip (one window)
     bare    `model.generate(**tokenizer([prompt]), max_new_tokens=N, do_sample=True,
              guidance_scale=3, top_k=250)`, which also decodes the tokens to audio, as a user would.
   N is what the engine samples: the score's length plus its tail and 4 % tempo margin, x 50, + 3.
   One warm-up render (it loads the model, imports librosa, JIT-compiles its beat tracker) and one
   warm-up bare call are not counted; then `--runs` runs alternate engine / bare, so that a busy
   moment of a shared machine hits both alike. Totals are also given in process CPU seconds,
   which other programs on the machine sway less than wall time.
   The engine's time is split into parts by wrapping its functions (see `Probe`); each part's
   figure is the median over runs, so the parts need not add up to the median total exactly.
   "sampling" is generate minus its text encoder and codec decode: the decoding steps themselves.
   The same comparison is made for a long render (several windows: each one re-encodes its text,
   re-prefills its context and is decoded inside generate) against one bare generate of as many
   frames (`--song songs/x.yaml` uses a real song instead), and, with `--melody`, for a
   MusicGen-Melody checkpoint with the score's chroma guide (the bare call gets the same chroma,
   computed beforehand: rendering the guide is engine extra).
   The engine's extra seconds barely depend on the model size (the codec, the guide and the
   grid fit are the same for every checkpoint), so the last table projects the ratio onto the
   real sizes using the ms/step measured in part 2.

2. Decoding speed (`--parts steps`). musicgen-small (24 x 1024) and musicgen-medium (48 x 1536)
   shaped decoders with a t5-base text encoder and the real EnCodec, built in memory. `--steps`
   decoding steps are timed inside `generate` (a stopping criterion stamps each step, after
   `--warmup` steps that include the prefill), at batch 1 and at an album batch (`--batch`
   prompts at once). Classifier-free guidance doubles the batch inside the model. Each step
   produces one 20 ms codec frame per song (50 steps per second of audio), so
       x real time (per song) = 1000 / ms_per_step / 50       > 1: faster than real time
       album throughput = batch x that (seconds of audio per wall second, all songs together).
   Step cost grows with the position (attention over the cache); this measures the first
   warmup + steps positions, so a whole 30 s window (1500 steps) is somewhat slower per step.
   The codec decode per second of audio is measured once (same EnCodec for every size).

How to read it: the engine's ratio is engine / bare (target <= 1.05). Random weights sample
random tokens, so the grid fit beat-tracks noise; with a real model the tempo stretch (Rubber
Band) may add time that this benchmark does not see.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

try:
    import torch
    import transformers
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("bench/musicgen.py needs torch and transformers: pip install 'millamusic[musicgen]'")

from millamusic.analysis import chroma as chroma_module
import millamusic.engines.musicgen as mg
from millamusic.analysis import grid_fit as grid_fit_module
from millamusic.engines.base import BackingRequest
from millamusic.core.errors import EngineUnavailable
from millamusic.music.score import Bar, Score, Section

GENRE, STYLE = "pop", ("synth-pop", "bright")
SEED = 1
SAMPLE_RATE = 44100
CFG, TOP_K = 3.0, 250

# ------------------------------------------------------------------------------------------ model shapes

# The real 32 kHz EnCodec of every MusicGen checkpoint (transformers' convert_encodec.py, "encodec_32khz").
ENCODEC_32K = {"sampling_rate": 32000, "audio_channels": 1, "codebook_size": 2048, "hidden_size": 128,
               "num_filters": 64, "upsampling_ratios": [8, 5, 4, 4], "target_bandwidths": [2.2],
               "num_lstm_layers": 2, "use_causal_conv": False, "normalize": False, "use_conv_shortcut": False,
               "norm_type": "weight_norm"}
T5_BASE = {"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
T5_BENCH = {"d_model": 256, "d_kv": 32, "d_ff": 1024, "num_layers": 2, "num_heads": 8}  # + the tokenizer's vocab
DECODERS = {
    "bench": {"num_hidden_layers": 6, "hidden_size": 512, "num_attention_heads": 8, "ffn_dim": 2048},
    "small": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "ffn_dim": 4096},
    "medium": {"num_hidden_layers": 48, "hidden_size": 1536, "num_attention_heads": 24, "ffn_dim": 6144},
    "large": {"num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32, "ffn_dim": 8192},  # ~14 GB fp32
}


def build_model(decoder: dict, text: dict, *, melody: bool = False, device: str = "cpu", dtype=torch.float32):
    """A random MusicGen (or MusicGen-Melody) of the given shape, in eval mode on `device`."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    text_config = T5Config(**text, num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    decoder_config = MusicgenDecoderConfig(vocab_size=2048, max_position_embeddings=2048, num_codebooks=4,
                                           audio_channels=1, pad_token_id=2048, bos_token_id=2048, **decoder)
    codec = EncodecConfig(**ENCODEC_32K)
    torch.manual_seed(0)
    # Initialise straight on the GPU (much faster than on the CPU and moving); fp32 first, then cast.
    with torch.device(device):
        if melody:
            from transformers import (
                MusicgenMelodyConfig,
                MusicgenMelodyDecoderConfig,
                MusicgenMelodyForConditionalGeneration,
            )

            fields = MusicgenMelodyDecoderConfig.__dataclass_fields__
            decoder_config = MusicgenMelodyDecoderConfig(**{k: v for k, v in decoder_config.to_dict().items()
                                                            if k in fields})
            config = MusicgenMelodyConfig(text_encoder=text_config, audio_encoder=codec, decoder=decoder_config,
                                          num_chroma=12, chroma_length=235)
            model = MusicgenMelodyForConditionalGeneration(config)
        else:
            config = MusicgenConfig(text_encoder=text_config, audio_encoder=codec, decoder=decoder_config)
            model = transformers.MusicgenForConditionalGeneration(config)
    model.generation_config.update(do_sample=True, guidance_scale=CFG, max_length=1503, top_k=TOP_K,
                                   decoder_start_token_id=2048, pad_token_id=2048, bos_token_id=2048)
    return model.to(dtype).eval()


def parameter_count(model) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M"


def save_tokenizer(folder: Path, texts: list[str]) -> int:
    """A T5-style Unigram tokenizer (Metaspace, </s> appended) whose pieces are the prompts' words,
    so a prompt takes one token per word (the real T5 vocabulary splits a little finer). Returns its size."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    words = sorted({word for text in texts for word in text.split()})
    pieces = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "\u2581": -5.0}
    pieces.update({"\u2581" + word: -1.0 for word in words})
    pieces.update(dict.fromkeys(sorted(set("".join(words)) | set("0123456789")), -10.0))
    tokenizer = Tokenizer(models.Unigram(list(pieces.items()), unk_id=2))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    wrapped = T5TokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                              extra_ids=0)
    wrapped.save_pretrained(folder)
    return len(wrapped)


def save_checkpoint(folder: Path, texts: list[str], *, melody: bool) -> Path:
    """Save the "bench" shape with a tokenizer and a model card: a folder the engine loads like a download."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = save_tokenizer(folder, texts)
    model = build_model(DECODERS["bench"], {**T5_BENCH, "vocab_size": vocab}, melody=melody)
    model.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# random weights, bench/musicgen.py\n")
    return folder


# ------------------------------------------------------------------------------------------ scores


def clip_score(music_seconds: float, tempo: float = 120.0) -> Score:
    """A score of about `music_seconds` (whole bars; verse / chorus / bridge), plus the usual tail."""
    form = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")
    progression = ("Am", "F", "C", "G")
    bars_total = max(1, round(music_seconds / (4 * 60 / tempo)))
    per_section = max(2, math.ceil(bars_total / len(form)))
    sections, bars = [], []
    for index, kind in enumerate(form):
        count = min(per_section, bars_total - len(bars))
        if count <= 0:
            break
        start = len(bars)
        sections.append(Section(name=kind.title(), kind=kind, start_bar=start, bars=count))
        bars.extend(Bar(index=b, section_index=index, start_beat=4.0 * b, beats=4, chords=(progression[b % 4],))
                    for b in range(start, start + count))
    return Score(title="Bench", tempo_bpm=tempo, beats_per_bar=4, beat_unit=4, key="A minor", tonic_pc=9,
                 mode="minor", language="en-us", seed=SEED, sections=tuple(sections), bars=tuple(bars), lines=(),
                 words=(), notes=(), melody_source="composed")


def song_score(path: Path) -> Score:
    """A real song spec, composed as the pipeline does."""
    from millamusic.compose import compose
    from millamusic.spec.song import load_song

    return compose(load_song(path))


def engine_frames(score: Score) -> int:
    """Codec frames the engine generates for `score` (as MusicGen.render computes them)."""
    return math.ceil(score.total_seconds * (1 + mg.TEMPO_MARGIN) * mg.FRAME_RATE)


# ------------------------------------------------------------------------------------------ timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Probe:
    """Wraps the engine's steps (module functions, the codec, the text encoder) and adds up their seconds.

    The engine looks these names up at call time, so replacing the module attributes is enough;
    everything is restored on exit. Codec decodes are booked to "codec in generate" while inside
    `generate_codes` / `model.generate`, otherwise to "decode_codes".
    """

    def __init__(self, device: str):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._in_generate = 0
        self._patches: list[tuple[object, str, object]] = []
        self._hooks = []

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()

    def _timed(self, name: str, function, *, generate: bool = False):
        def wrapper(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            self._in_generate += generate
            try:
                return function(*args, **kwargs)
            finally:
                self._in_generate -= generate
                sync(self.device)
                label = name(self) if callable(name) else name
                if label is not None:
                    self.seconds[label] += time.perf_counter() - start
                    self.counts[label] += 1

        return wrapper

    def _patch(self, owner, attribute: str, name, **kwargs) -> None:
        original = getattr(owner, attribute)
        self._patches.append((owner, attribute, original))
        setattr(owner, attribute, self._timed(name, original, **kwargs))

    def attach_engine(self) -> None:
        self._patch(mg, "resolve_model", "resolve (settings, folder hash)")
        self._patch(mg, "load_model", "load (cached)")
        self._patch(mg, "guide_audio", "guide audio (arranger)")
        self._patch(chroma_module, "melody_chroma", "guide chroma")
        self._patch(chroma_module, "chroma_window", "guide chroma")
        self._patch(mg, "generate_codes", "generate", generate=True)
        self._patch(mg, "decode_codes", "decode_codes")
        self._patch(mg, "resample", "resample 32k->44.1k")
        self._patch(grid_fit_module, "fit_to_grid", "grid fit")

    def attach_model(self, model) -> None:
        """Time the text encoder and every codec decode of this model (instance attributes only)."""
        encoder = model.text_encoder
        starts = {}

        def before(*_):
            sync(self.device)
            starts["text"] = time.perf_counter()

        def after(*_):
            sync(self.device)
            self.seconds["text encoder"] += time.perf_counter() - starts.pop("text")
            self.counts["text encoder"] += 1

        self._hooks += [encoder.register_forward_pre_hook(before), encoder.register_forward_hook(after)]
        codec = model.audio_encoder
        self._patches.append((codec, "decode", None))  # an instance attribute: deleted on exit
        # decode_codes' own codec call is already inside "decode_codes": only the ones in generate count here
        codec.decode = self._timed(lambda probe: "codec in generate" if probe._in_generate else None,
                                   type(codec).decode.__get__(codec))

    def bare_generate(self, model, **kwargs):
        return self._timed("generate", model.generate, generate=True)(**kwargs)

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        for owner, attribute, original in reversed(self._patches):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)
        self._hooks, self._patches = [], []


@contextlib.contextmanager
def probing(device: str, model=None, engine: bool = False):
    probe = Probe(device)
    try:
        if engine:
            probe.attach_engine()
        if model is not None:
            probe.attach_model(model)
        yield probe
    finally:
        probe.close()


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


# ------------------------------------------------------------------------------------------ 1. overhead


def engine_request(folder: Path, device: str, dtype: str, guide: str, window: float, context: float):
    options = {"model": str(folder), "device": device, "dtype": dtype, "guide": guide,
               "window_seconds": window, "context_seconds": context, "guidance_scale": CFG, "top_k": TOP_K}
    return BackingRequest(seed=SEED, genre=GENRE, style=STYLE, sample_rate=SAMPLE_RATE, options=options)


PART_ORDER = ("resolve (settings, folder hash)", "load (cached)", "guide audio (arranger)", "guide chroma",
              "text encoder", "sampling", "codec in generate", "decode_codes", "resample 32k->44.1k", "grid fit",
              "other")
IN_GENERATE = ("text encoder", "codec in generate")


def split_parts(seconds: dict[str, float], total: float) -> dict[str, float]:
    """Seconds by part, with "sampling" = generate minus its text encoder and codec, "other" = the rest."""
    parts = dict(seconds)
    generate = parts.pop("generate", 0.0)
    parts["sampling"] = generate - sum(parts.get(name, 0.0) for name in IN_GENERATE)
    outside = sum(value for name, value in parts.items() if name not in (*IN_GENERATE, "sampling"))
    parts["other"] = total - generate - outside
    return parts


def first_window_chroma(model, score: Score, request: BackingRequest, source, guide: str):
    """The melody chroma the engine feeds its first window, for the bare call (computed untimed)."""
    audio, _ = mg.guide_audio(score, request, source, guide)
    window = chroma_module.chroma_window(chroma_module.melody_chroma(audio), 0.0, frames=model.config.chroma_length)
    return torch.from_numpy(window)[None].to(next(model.parameters()).device, model.dtype)


def compare(label: str, score: Score, folder: Path, device: str, dtype: str, *, guide: str, window: float,
            context: float, runs: int) -> dict:
    """Engine render vs bare generate on the same cached model; prints a table and returns the figures."""
    request = engine_request(folder, device, dtype, guide, window, context)
    engine = mg.MusicGen()
    frames = engine_frames(score)
    windows = mg.plan_windows(frames, round(window * mg.FRAME_RATE), round(context * mg.FRAME_RATE))
    delay = 3  # the delay pattern: codebook k of 4 runs k steps late, so each generate call samples 3 more
    engine_steps = sum(w.end - w.new_start + delay for w in windows)
    bare_steps = frames + delay
    text = mg.section_prompts(score, request, "")[score.sections[0].kind]

    with probing(device, engine=True) as probe:  # warm-up: loads the checkpoint, imports, JIT compiles
        started = time.perf_counter()
        details = engine.render(score, request).details
        first = time.perf_counter() - started
        first_parts = sorted(probe.seconds.items(), key=lambda item: -item[1])[:3]
    source = mg.resolve_model(str(folder))
    model, tokenizer = mg.load_model(source, details["device"], mg.choose_dtype(dtype, details["device"]))  # cached
    model_device = next(model.parameters()).device
    extra = {"input_features": first_window_chroma(model, score, request, source, guide)} if guide != "none" else {}

    def bare(probe: Probe):
        inputs = tokenizer([text], return_tensors="pt").to(model_device)
        torch.manual_seed(SEED)
        with torch.inference_mode():
            return probe.bare_generate(model, **inputs, **extra, max_new_tokens=bare_steps, do_sample=True,
                                       guidance_scale=CFG, top_k=TOP_K)

    totals = {"engine": [], "bare": []}
    cpu = {"engine": [], "bare": []}  # process CPU seconds: less swayed by other programs on a shared machine
    parts = {"engine": defaultdict(list), "bare": defaultdict(list)}
    decodes = 0
    with probing(device, model, engine=True) as probe:
        bare(probe)  # warm-up of the bare path
        for _ in range(runs):  # alternate, so that a busy moment of the machine hits both alike
            for kind in ("engine", "bare"):
                probe.reset()
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                if kind == "engine":
                    engine.render(score, request)
                else:
                    bare(probe)
                sync(device)
                total = time.perf_counter() - start
                totals[kind].append(total)
                cpu[kind].append(time.process_time() - start_cpu)
                for name, value in split_parts(probe.seconds, total).items():
                    parts[kind][name].append(value)
                if kind == "engine":
                    decodes = probe.counts.get("codec in generate", 0) + probe.counts.get("decode_codes", 0)

    medians = {kind: {name: median(values) for name, values in parts[kind].items()} for kind in parts}
    engine_median, bare_median = median(totals["engine"]), median(totals["bare"])
    context_tokens = sum(w.new_start - w.start for w in windows)
    bars = f"{len(score.bars)} bar{'s' if len(score.bars) != 1 else ''}"
    print(f"\n{label}: {score.total_seconds:.1f} s score ({bars} at {score.tempo_bpm:g} BPM + tail) "
          f"-> {frames} frames; {len(windows)} window(s) of {window:g} s, {context:g} s context; guide {guide}")
    print(f"  prompt ({len(tokenizer(text)['input_ids'])} tokens): {text!r}")
    print(f"  steps sampled: engine {engine_steps} (+{context_tokens} context tokens prefilled), bare {bare_steps}; "
          f"codec decodes per render: engine {decodes}, bare 1")
    print(f"  warm-up render (not counted): {first:.2f} s, of which "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in first_parts))
    print(f"  {'part (median of ' + str(runs) + ' runs)':<32}{'engine s':>10}{'bare s':>10}{'extra s':>10}")
    for name in PART_ORDER:
        if name in medians["engine"] or name in medians["bare"]:
            e, b = medians["engine"].get(name, 0.0), medians["bare"].get(name, 0.0)
            print(f"  {name:<32}{e:>10.3f}{b:>10.3f}{e - b:>+10.3f}")
    print(f"  {'total (median)':<32}{engine_median:>10.3f}{bare_median:>10.3f}{engine_median - bare_median:>+10.3f}")
    print(f"  runs: engine {' '.join(f'{t:.2f}' for t in totals['engine'])}; "
          f"bare {' '.join(f'{t:.2f}' for t in totals['bare'])}")
    ratio = engine_median / bare_median
    cpu_ratio = median(cpu["engine"]) / median(cpu["bare"])
    print(f"  ratio engine / bare: {ratio:.3f} ({'within' if ratio <= 1.05 else 'over'} the 1.05 target); "
          f"in process CPU seconds {median(cpu['engine']):.2f} / {median(cpu['bare']):.2f} = {cpu_ratio:.3f}")
    # What does not scale with the decoder: every part but sampling, engine minus bare.
    fixed_extra = sum(medians["engine"].get(name, 0.0) - medians["bare"].get(name, 0.0)
                      for name in PART_ORDER if name != "sampling")
    return {"label": label, "ratio": ratio, "cpu_ratio": cpu_ratio, "engine": engine_median, "bare": bare_median,
            "extra": engine_median - bare_median, "fixed_extra": fixed_extra, "windows": len(windows),
            "engine_steps": engine_steps, "bare_steps": bare_steps, "context_tokens": context_tokens,
            "bare_ms_per_step": 1000 * medians["bare"]["sampling"] / bare_steps,
            "engine_sampling": medians["engine"]["sampling"], "bare_sampling": medians["bare"]["sampling"],
            "bare_fixed": bare_median - medians["bare"]["sampling"]}


def overhead_benchmark(args, device: str, dtype: str) -> list[dict]:
    print(f"\n=== 1. engine overhead vs bare generate ({device}, {dtype}) ===")
    clip = clip_score(args.clip_seconds)
    long = song_score(args.song) if args.song else clip_score(args.long_seconds)
    if engine_frames(clip) > args.window * mg.FRAME_RATE:
        print(f"note: the {clip.total_seconds:.1f} s clip needs more than one {args.window:g} s window")
    request = engine_request(Path("."), device, dtype, "none", args.window, args.context)
    texts = [text for score in (clip, long) for text in mg.section_prompts(score, request, "").values()]
    cases = [("clip", clip, "none")]
    if args.long_seconds > 0 or args.song:
        cases.append(("long", long, "none"))
    if args.melody:
        cases.append(("melody clip", clip, "score"))
    results = []
    with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as temp:
        folders = {}
        for melody in sorted({guide != "none" for _, _, guide in cases}):
            started = time.perf_counter()
            folders[melody] = save_checkpoint(Path(temp) / ("melody" if melody else "plain"), texts, melody=melody)
            size = sum(p.stat().st_size for p in folders[melody].iterdir()) / 2**20
            print(f"{'MusicGen-Melody' if melody else 'MusicGen'} checkpoint: decoder {DECODERS['bench']}, "
                  f"T5 {T5_BENCH}, real 32 kHz EnCodec; {size:.0f} MiB; built and saved in "
                  f"{time.perf_counter() - started:.1f} s")
        for label, score, guide in cases:
            try:
                results.append(compare(label, score, folders[guide != "none"], device, dtype, guide=guide,
                                       window=args.window, context=args.context, runs=args.runs))
            except Exception as error:  # noqa: BLE001 (one broken case should not cost the other figures)
                print(f"\n{label}: FAILED: {type(error).__name__}: {error}")
        mg._LOADED.clear()
    gc.collect()
    return results


# ------------------------------------------------------------------------------------------ 2. ms per step


class StepClock(transformers.StoppingCriteria):
    """A stopping criterion that never stops and stamps the time of every decoding step."""

    def __init__(self, device: str):
        self.device = device
        self.stamps: list[float] = []

    def __call__(self, input_ids, _scores, **_kwargs):  # the StoppingCriteria signature
        sync(self.device)
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def clocked_generate(model, device: str, *, batch: int, new_tokens: int, context: int = 0,
                     prompt_tokens: int = 24) -> tuple[float, list[float]]:
    """Sample `new_tokens` for `batch` random prompts (continuing `context` random codec frames).

    Returns the start time and the time stamp of every step (one per new token)."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, model.config.text_encoder.vocab_size, (batch, prompt_tokens), generator=generator)
    input_ids[:, -1] = 1  # </s>
    codes = torch.randint(0, 2048, (batch * 4, context), generator=generator)
    decoder_ids = torch.cat([torch.full((batch * 4, 1), 2048), codes], dim=1)
    clock = StepClock(device)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        sync(device)
        start = time.perf_counter()
        model.generate(input_ids=input_ids.to(device), attention_mask=torch.ones_like(input_ids).to(device),
                       decoder_input_ids=decoder_ids.to(device), max_new_tokens=new_tokens, do_sample=True,
                       guidance_scale=CFG, top_k=TOP_K, stopping_criteria=transformers.StoppingCriteriaList([clock]))
    return start, clock.stamps


def time_steps(model, device: str, *, batch: int, steps: int, warmup: int) -> dict:
    """ms per decoding step: the median gap between steps warmup..warmup+steps (the first ones hold the prefill)."""
    _, stamps = clocked_generate(model, device, batch=batch, new_tokens=warmup + steps)
    gaps = np.diff(stamps[warmup - 1:])  # stamp i is taken after step i
    return {"batch": batch, "steps": len(gaps), "ms": 1000 * float(np.median(gaps)),
            "ms_mean": 1000 * float(np.mean(gaps))}


def prefill_seconds(model, device: str, context: int) -> float:
    """Extra time to the first step when a window continues `context` frames (the engine's windows do)."""
    firsts = []
    for frames in (0, context):
        start, stamps = clocked_generate(model, device, batch=1, new_tokens=4, context=frames)  # >= 3: delays
        firsts.append(stamps[0] - start)
    return firsts[1] - firsts[0]


def codec_seconds_per_audio_second(model, device: str, seconds: float) -> float:
    codes = torch.randint(0, 2048, (1, 1, 4, round(seconds * mg.FRAME_RATE))).to(device)
    codec = model.audio_encoder
    with torch.inference_mode():
        codec.decode(codes[..., :50], audio_scales=[None])  # warm-up
        sync(device)
        start = time.perf_counter()
        codec.decode(codes, audio_scales=[None])
        sync(device)
    return (time.perf_counter() - start) / seconds


def steps_benchmark(args, device: str, dtype: str) -> list[dict]:
    print(f"\n=== 2. decoding speed, random weights, real sizes ({device}, {dtype}) ===")
    rows = []
    for size in args.sizes:
        started = time.perf_counter()
        model = build_model(DECODERS[size], T5_BASE, device=device, dtype=getattr(torch, dtype))
        print(f"{size}: decoder {DECODERS[size]}, t5-base, EnCodec 32 kHz: {parameter_count(model)} parameters, "
              f"built in {time.perf_counter() - started:.1f} s")
        if not rows:  # the same codec for every size
            codec = codec_seconds_per_audio_second(model, device, args.codec_seconds)
            rows.append({"size": "EnCodec", "codec": codec, "device": device, "dtype": dtype})
            print(f"  EnCodec decode: {codec:.3f} s per second of audio")
        clocked_generate(model, device, batch=1, new_tokens=3)  # threads, allocator, kernels
        for batch in dict.fromkeys((1, args.batch)):
            result = time_steps(model, device, batch=batch, steps=args.steps, warmup=args.warmup)
            row = {"size": size, "device": device, "dtype": dtype, **result}
            if batch == 1 and args.prefill:
                context = round(args.context * mg.FRAME_RATE)
                row["prefill_s_per_token"] = prefill_seconds(model, device, context) / context
            rows.append(row)
            prefill = (f"; prefill of {round(args.context * mg.FRAME_RATE)} context frames "
                       f"{row['prefill_s_per_token'] * args.context * mg.FRAME_RATE:.2f} s"
                       if "prefill_s_per_token" in row else "")
            print(f"  batch {batch}: {result['ms']:.1f} ms/step (median of {result['steps']} steps; "
                  f"mean {result['ms_mean']:.1f}){prefill}")
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def print_steps_table(rows: list[dict]) -> None:
    print("\nDecoding speed (classifier-free guidance: the decoder runs 2 x batch sequences)")
    print(f"  {'model':<8}{'device':<7}{'dtype':<10}{'batch':>6}{'ms/step':>9}{'steps/s':>9}"
          f"{'x RT/song':>10}{'album x RT':>11}{'30 s window':>12}")
    for row in rows:
        if "codec" in row:
            continue
        per_second = 1000 / row["ms"]
        print(f"  {row['size']:<8}{row['device']:<7}{row['dtype']:<10}{row['batch']:>6}{row['ms']:>9.1f}"
              f"{per_second:>9.2f}{per_second / mg.FRAME_RATE:>10.3f}"
              f"{row['batch'] * per_second / mg.FRAME_RATE:>11.3f}{1503 * row['ms'] / 1000:>11.0f}s")
    for row in rows:
        if "codec" in row:
            print(f"  EnCodec 32 kHz decode on {row['device']} ({row['dtype']}): {row['codec']:.3f} s per second "
                  f"of audio ({1 / row['codec']:.1f} x real time)")
    print("  steps/s: per song; x RT/song: seconds of audio per wall second for each song (50 steps = 1 s);\n"
          "  album x RT: the same for the whole batch; 30 s window: 1503 steps at this rate, per song\n"
          "  (the real per-step cost rises along a window: attention reads a longer cache)")


def print_projection(overhead: list[dict], steps: list[dict]) -> None:
    """Part 1's model-independent extra seconds on top of a bare generate at part 2's real speeds."""
    batch1 = [row for row in steps if row.get("batch") == 1]
    pairs = [(case, row) for case in overhead for row in batch1 if row["device"] == case["device"]]
    if not pairs:
        return
    print("\nProjected engine / bare ratio at the real sizes")
    print("  bare   = bare fixed (text, codec, part 1) + bare steps x ms/step (part 2)")
    print("  engine = bare + fixed extra (every part but sampling, part 1) + extra steps x ms/step"
          " + context prefill (part 2)")
    print(f"  {'case':<13}{'model':<8}{'device':<7}{'bare s':>9}{'fixed +s':>9}{'steps +s':>9}{'prefill +s':>11}"
          f"{'ratio':>8}")
    for case, row in pairs:
        ms = row["ms"] / 1000
        bare = case["bare_fixed"] + case["bare_steps"] * ms
        steps_extra = (case["engine_steps"] - case["bare_steps"]) * ms
        prefill = case["context_tokens"] * row.get("prefill_s_per_token", 0.0)
        engine = bare + case["fixed_extra"] + steps_extra + prefill
        print(f"  {case['label']:<13}{row['size']:<8}{row['device']:<7}{bare:>9.1f}{case['fixed_extra']:>9.2f}"
              f"{steps_extra:>9.2f}{prefill:>11.2f}{engine / bare:>8.3f}")
    print("  (the text encoder is t5-base there, not the bench one: a few ms more on both sides)")
    for case in overhead:
        clip = next((c for c in overhead if c["windows"] == 1 and c["device"] == case["device"]), None)
        if case["windows"] > 1 and clip is not None:
            print(f"  {case['label']} ({case['windows']} windows) takes one ms/step for every step, yet one bare call"
                  " slows down as its cache\n  grows past a window (which would lower the ratio). In part 1 the bare"
                  f" call took {case['bare_ms_per_step']:.1f} ms/step over {case['bare_steps']}\n  steps against"
                  f" {clip['bare_ms_per_step']:.1f} over {clip['bare_steps']}, and the engine's windowed sampling,"
                  f" its prefills included, took {case['engine_sampling']:.1f} s\n  against the bare"
                  f" {case['bare_sampling']:.1f} s.")


# ------------------------------------------------------------------------------------------ main


def machine_info(devices: list[str]) -> None:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    print(f"machine: {cpu}; {os.cpu_count()} CPUs ({usable} usable){memory}; {platform.system()} {platform.release()}")
    threads = f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})"
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"numpy {np.__version__}; {threads}")
    for device in devices:
        if device.startswith("cuda"):
            props = torch.cuda.get_device_properties(torch.device(device))
            print(f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"devices benchmarked: {', '.join(devices)}; load average now {load} (other programs skew timings)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1-bar clip, 3 windows of 5 s, 1 run, small only, 20 steps")
    parser.add_argument("--parts", default="overhead,steps", help="overhead,steps (default: both)")
    parser.add_argument("--sizes", default=None, help="small,medium (default; --quick: small); large also works")
    parser.add_argument("--steps", type=int, default=None, help="timed decoding steps per size (default 100)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first, incl. the prefill (default 10)")
    parser.add_argument("--batch", type=int, default=4, help="album batch: prompts generated at once (default 4)")
    parser.add_argument("--device", default="auto",
                        help="auto (cpu, plus cuda when there is one) | cpu | cuda | cuda:N | cpu,cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per overhead case (default 3)")
    parser.add_argument("--clip-seconds", type=float, default=None,
                        help="music in the one-window clip (default 14; the tail and margin make ~17 s)")
    parser.add_argument("--long-seconds", type=float, default=None,
                        help="music in the long render (default 54: 3 windows of 30 s / 10 s; 0: skip)")
    parser.add_argument("--song", type=Path, default=None, help="use this song spec for the long render instead")
    parser.add_argument("--window", type=float, default=None, help="window_seconds (default 30)")
    parser.add_argument("--context", type=float, default=None, help="context_seconds (default 10)")
    parser.add_argument("--melody", action=argparse.BooleanOptionalAction, default=True,
                        help="also compare a MusicGen-Melody checkpoint with the score guide (default on)")
    parser.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=True,
                        help="time the prefill of a window's context at batch 1 (default on)")
    parser.add_argument("--codec-seconds", type=float, default=10.0, help="audio decoded to time EnCodec")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"sizes": "small" if quick else "small,medium", "steps": 20 if quick else 100,
                "warmup": 3 if quick else 10, "runs": 1 if quick else 3, "clip_seconds": 2.0 if quick else 14.0,
                "long_seconds": 8.0 if quick else 54.0, "window": 5.0 if quick else 30.0,
                "context": 1.0 if quick else 10.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.codec_seconds = min(args.codec_seconds, 4.0)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if unknown := [s for s in args.sizes if s not in ("small", "medium", "large")]:
        parser.error(f"unknown size(s) {', '.join(unknown)}: use small, medium, large")
    if unknown := args.parts - {"overhead", "steps"}:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: use overhead, steps")
    if args.warmup < 1 or args.steps < 2 or args.runs < 1 or args.batch < 1:
        parser.error("need --warmup >= 1, --steps >= 2, --runs >= 1, --batch >= 1")
    if args.context > args.window - 1:
        parser.error("--context must be at least 1 s shorter than --window")
    return args


def choose_devices(requested: str) -> list[str]:
    if requested == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = [d.strip() for d in requested.split(",") if d.strip()]
    for device in devices:
        if device not in ("cpu",) and not device.startswith("cuda"):
            sys.exit(f"--device {device}: use cpu, cuda or cuda:N")
        try:
            mg.choose_device(device)  # a clear error for a GPU that is not there
        except EngineUnavailable as error:
            sys.exit(str(error))
    return devices


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning, module="librosa")  # tuning of random audio
    devices = choose_devices(args.device)
    machine_info(devices)
    started = time.perf_counter()
    overhead, steps = [], []
    for device in devices:
        dtype = "float32" if device == "cpu" else "bfloat16"
        if "overhead" in args.parts:
            overhead += [{**case, "device": device} for case in overhead_benchmark(args, device, dtype)]
        if "steps" in args.parts:
            steps += steps_benchmark(args, device, dtype)
    if overhead:
        print("\nSummary: engine / bare (median wall seconds)")
        print(f"  {'case':<14}{'device':<7}{'engine s':>10}{'bare s':>10}{'extra s':>10}{'ratio':>8}"
              f"{'CPU-s ratio':>13}{'bare ms/step':>14}")
        for case in overhead:
            print(f"  {case['label']:<14}{case['device']:<7}{case['engine']:>10.2f}{case['bare']:>10.2f}"
                  f"{case['extra']:>10.2f}{case['ratio']:>8.3f}{case['cpu_ratio']:>13.3f}"
                  f"{case['bare_ms_per_step']:>14.1f}")
    if steps:
        print_steps_table(steps)
    print_projection(overhead, steps)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s; load average at the end {load}")


if __name__ == "__main__":
    main()
