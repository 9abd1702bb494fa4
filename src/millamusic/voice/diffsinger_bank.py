"""A DiffSinger voicebank in the OpenUtau format, loaded and checked before anything is sung.

Reads the bank's configs (the root `dsconfig.yaml` of the acoustic model, `dsdur/`, `dspitch/`,
`dsvariance/`, `dsvocoder/vocoder.yaml`), its phoneme table, dictionary, languages and speaker
embeddings, checks every model's inputs and outputs against what the configs say, and collects what
the bank says about itself (name, author, version, its licence files) with the hashes of its files.
Every fact this relies on is in docs/diffsinger-format.md, with the code it was read from.

A malformed bank is a `VoicebankError` naming the file and the fix (exit 3: the voice cannot run).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from millamusic.core.cache import sha256_file
from millamusic.core.errors import EngineUnavailable

INSTALL_FIX = "pip install 'millamusic[diffsinger]'"
SUB_MODELS = ("dsdur", "dspitch", "dsvariance")
VARIANCES = ("energy", "breathiness", "voicing", "tension")  # DiffSinger's VARIANCE_CHECKLIST order
MEL_SETTINGS = ("sample_rate", "hop_size", "win_size", "fft_size", "num_mel_bins", "mel_fmin", "mel_fmax", "mel_scale")
# OpenUtau's defaults for a dsconfig key that is absent (DiffSingerConfig.cs)
DEFAULTS = {"phonemes": "phonemes.txt", "hidden_size": 256, "sample_rate": 44100, "hop_size": 512, "win_size": 2048,
            "fft_size": 2048, "num_mel_bins": 128, "mel_fmin": 40.0, "mel_fmax": 16000.0, "mel_base": "10",
            "mel_scale": "slaney", "predict_dur": True, "predict_energy": True, "predict_breathiness": True,
            "predict_voicing": False, "predict_tension": False, "use_expr": False, "use_note_rest": False,
            "use_lang_id": False, "use_continuous_acceleration": False, "max_depth": 0.0}
LICENCE_FILE_STEMS = ("license", "licence", "readme", "terms", "terms-of-service", "terms_of_use", "利用規約")
MAX_CONFIG_BYTES = 1 << 20


class VoicebankError(EngineUnavailable):
    """The voicebank cannot be used as it is: the message names the file and the fix."""


@dataclass(frozen=True)
class ModelIO:
    """An ONNX model's file and the names and element types of its inputs and outputs."""

    path: Path
    inputs: dict[str, str]  # name -> element type ("int64", "float32", "bool")
    outputs: dict[str, str]


@dataclass(frozen=True)
class ModelConfig:
    """One dsconfig.yaml (or vocoder.yaml) and what it names, resolved against its own folder."""

    path: Path
    values: dict  # the YAML with OpenUtau's defaults filled in
    phonemes: dict[str, int]  # phoneme -> token id (0 is padding)
    languages: dict[str, int]  # language -> id (1..N); {} unless use_lang_id
    speakers: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (hidden_size,) float32

    @property
    def frame_seconds(self) -> float:
        return self.values["hop_size"] / self.values["sample_rate"]


@dataclass(frozen=True)
class Dictionary:
    """dsdict.yaml: each phoneme's kind and each grapheme's phonemes."""

    path: Path
    kinds: dict[str, str]  # phoneme -> "vowel" | "glide" | "consonant"
    entries: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Voicebank:
    path: Path
    name: str
    author: str | None
    version: str | None
    web: str | None
    character_text: str  # character.txt as written (its free lines often carry the terms of use)
    licence_files: dict[str, str]  # file name -> sha256 of the bank's readme / licence / terms files
    acoustic: ModelConfig
    acoustic_model: ModelIO
    vocoder: ModelConfig
    vocoder_model: ModelIO
    duration: tuple[ModelConfig, ModelIO, ModelIO] | None  # (dsdur config, linguistic, dur)
    pitch: tuple[ModelConfig, ModelIO, ModelIO] | None  # (dspitch config, linguistic, pitch)
    variance: tuple[ModelConfig, ModelIO, ModelIO] | None  # (dsvariance config, linguistic, variance)
    dictionary: Dictionary | None
    sha256: str  # of every model, config, table and embedding the bank sings with

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(self.acoustic.speakers)

    def acoustic_flag(self, name: str) -> bool:
        """Whether the acoustic model takes input `name` (its graph decides, not the config's flag)."""
        return name in self.acoustic_model.inputs


def load_voicebank(path: str | Path) -> Voicebank:
    """Load and check the bank folder at `path`; VoicebankError for anything that would stop it singing.

    Loaded once per process while its files stay as they are (name, size, modification time): the
    artist profile's check and the engine share the work (a real bank is hundreds of MB to hash)."""
    root = Path(path).resolve()
    return _load(root, _stamp(root))


def _stamp(root: Path) -> tuple:
    if not root.is_dir():
        return ()
    return tuple(sorted((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                        for f in root.rglob("*") if f.is_file()))


@functools.lru_cache(maxsize=4)
def _load(root: Path, stamp: tuple) -> Voicebank:  # noqa: ARG001 (the stamp makes a changed bank a new entry)
    if not (root / "dsconfig.yaml").is_file():
        fix = ("point voice.diffsinger.voicebank at the folder that holds dsconfig.yaml (an OpenUtau DiffSinger voicebank)"
               if root.is_dir() else "check the path in voice.diffsinger.voicebank")
        raise VoicebankError(f"{root}: no dsconfig.yaml{'' if root.is_dir() else ' (no such folder)'}. Fix: {fix}")
    hashes: dict[str, str] = {}
    acoustic = _model_config(root / "dsconfig.yaml", hashes)
    acoustic_model = _model(acoustic, "acoustic", hashes)
    _check_acoustic(acoustic, acoustic_model)
    vocoder, vocoder_model = _vocoder(root, acoustic, hashes)
    subs = {}
    for folder in SUB_MODELS:
        config_path = root / folder / "dsconfig.yaml"
        subs[folder] = _sub_model(folder, _model_config(config_path, hashes), hashes) if config_path.is_file() else None
    dictionary_root = root / "dsdur" if subs["dsdur"] else root
    dictionary = _dictionary(dictionary_root, acoustic.phonemes)
    character = _character(root)
    # by content and place inside the bank, not where the bank lies
    inside = sorted((os.path.relpath(name, root), digest) for name, digest in hashes.items())
    digest = hashlib.sha256(json.dumps(inside).encode()).hexdigest()
    return Voicebank(path=root, name=character.get("name") or root.name, author=character.get("author"),
                     version=character.get("version"), web=character.get("web"),
                     character_text=character.get("", ""), licence_files=_licence_files(root),
                     acoustic=acoustic, acoustic_model=acoustic_model, vocoder=vocoder, vocoder_model=vocoder_model,
                     duration=subs["dsdur"], pitch=subs["dspitch"], variance=subs["dsvariance"],
                     dictionary=dictionary, sha256=digest)


# --- configs ----------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise VoicebankError(f"{path}: cannot read it ({error.strerror or error}). Fix: check the voicebank's files") from error
    if len(raw) > MAX_CONFIG_BYTES:
        raise VoicebankError(f"{path}: {len(raw)} bytes, not a config. Fix: restore the voicebank's own file")
    try:
        values = YAML(typ="safe", pure=True).load(raw.decode("utf-8-sig"))
    except (YAMLError, UnicodeDecodeError) as error:
        raise VoicebankError(f"{path}: not valid YAML ({error}). Fix: restore the voicebank's own file") from error
    if not isinstance(values, dict):
        raise VoicebankError(f"{path}: a config is a mapping of keys, this holds {type(values).__name__}. "
                             "Fix: restore the voicebank's own file")
    return values


def _model_config(path: Path, hashes: dict[str, str]) -> ModelConfig:
    values = {**DEFAULTS, **_read_yaml(path)}
    hashes[str(path)] = sha256_file(path)
    folder = path.parent
    phonemes = _phoneme_table(_named_file(path, values, "phonemes"), hashes)
    languages = {}
    if values["use_lang_id"]:
        languages_path = _named_file(path, values, "languages")
        hashes[str(languages_path)] = sha256_file(languages_path)
        languages = _json_ids(languages_path, "languages")
    speakers = {}
    for name in values.get("speakers") or ():
        emb = folder / f"{name}.emb"
        if not emb.is_file():
            raise VoicebankError(f"{path}: speaker {name!r} has no embedding file {emb}. Fix: restore the voicebank's "
                                 f"{emb.name}, or remove the speaker from `speakers`")
        data = emb.read_bytes()
        size = int(values["hidden_size"])
        if len(data) != 4 * size:
            raise VoicebankError(f"{emb}: {len(data)} bytes; a speaker embedding of hidden_size {size} is {4 * size} "
                                 "bytes of float32. Fix: restore the voicebank's own file")
        hashes[str(emb)] = hashlib.sha256(data).hexdigest()
        speakers[str(name)] = np.frombuffer(data, dtype="<f4").copy()
    return ModelConfig(path=path, values=values, phonemes=phonemes, languages=languages, speakers=speakers)


def _named_file(config: Path, values: dict, key: str) -> Path:
    name = values.get(key)
    if not isinstance(name, str) or not name:
        raise VoicebankError(f"{config}: `{key}` names no file. Fix: set {key} to the file the exporter wrote")
    path = config.parent / name
    if not path.is_file():
        raise VoicebankError(f"{config}: {key} {name!r} is missing ({path}). Fix: restore that file, or correct `{key}`")
    return path


def _phoneme_table(path: Path, hashes: dict[str, str]) -> dict[str, int]:
    """phonemes.json ({phoneme: id}) or phonemes.txt (the line number is the id; `<PAD>` lines first)."""
    hashes[str(path)] = sha256_file(path)
    if path.suffix == ".json":
        table = _json_ids(path, "phonemes")
    else:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise VoicebankError(f"{path}: cannot read the phoneme list ({error}). Fix: restore the voicebank's own file") \
                from error
        table = {}
        for index, line in enumerate(lines):
            if line.strip():
                table[line.strip()] = index  # as OpenUtau: a later duplicate wins
        table.pop("<PAD>", None)
    if "SP" not in table:
        raise VoicebankError(f"{path}: the phoneme table has no SP (the silence every phrase starts and ends with). "
                             "Fix: restore the voicebank's own file")
    if any(token == 0 for token in table.values()):
        raise VoicebankError(f"{path}: token 0 is the padding token; a phoneme uses it. Fix: restore the voicebank's own file")
    return table


def _json_ids(path: Path, what: str) -> dict[str, int]:
    try:
        table = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VoicebankError(f"{path}: cannot read the {what} table ({error}). Fix: restore the voicebank's own file") \
            from error
    if not isinstance(table, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
        raise VoicebankError(f"{path}: the {what} table must map names to whole numbers. Fix: restore the voicebank's own file")
    return {str(k): int(v) for k, v in table.items()}


# --- models -----------------------------------------------------------------------------------


def _model(config: ModelConfig, key: str, hashes: dict[str, str]) -> ModelIO:
    path = _named_file(config.path, config.values, key)
    return _model_io(path, hashes)


def _model_io(path: Path, hashes: dict[str, str]) -> ModelIO:
    try:
        import onnx  # onnx: an optional extra (millamusic[diffsinger])
    except ImportError as error:
        raise VoicebankError(f"DiffSinger voicebanks need onnx ({error}). Fix: {INSTALL_FIX}") from error
    if path.stat().st_size == 0:
        raise VoicebankError(f"{path}: an empty file, not a model. Fix: restore the voicebank's own {path.name}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's own: all mean "not a model"
        raise VoicebankError(f"{path}: not an ONNX model ({error}). Fix: restore the voicebank's own {path.name}") from error
    initialisers = {tensor.name for tensor in model.graph.initializer}

    def kinds(values) -> dict[str, str]:
        return {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
                for v in values if v.name not in initialisers}

    hashes[str(path)] = sha256_file(path)
    return ModelIO(path=path, inputs=kinds(model.graph.input), outputs=kinds(model.graph.output))


def _expect(model: ModelIO, *, required: dict[str, str], optional: dict[str, str] | None = None, outputs: tuple[str, ...],
            config: Path, role: str) -> None:
    """The model takes every `required` input, nothing outside required + optional, and gives `outputs`."""
    known = {**required, **(optional or {})}
    missing = [name for name in required if name not in model.inputs]
    unknown = [name for name in model.inputs if name not in known]
    wrong = [f"{name} is {model.inputs[name]}, not {kind}" for name, kind in known.items()
             if name in model.inputs and model.inputs[name] != kind]
    absent = [name for name in outputs if name not in model.outputs]
    problems = ([f"lacks input(s) {', '.join(missing)}"] if missing else []) + \
               ([f"has input(s) this engine cannot feed: {', '.join(unknown)}"] if unknown else []) + wrong + \
               ([f"lacks output(s) {', '.join(absent)}"] if absent else [])
    if problems:
        raise VoicebankError(f"{model.path}: the {role} model {'; '.join(problems)} (config {config}). Fix: use the "
                             f"model its exporter wrote with this config (docs/diffsinger-format.md lists the interface)")


def _steps_inputs(values: dict) -> dict[str, str]:
    return {"steps": "int64"} if values["use_continuous_acceleration"] else {"speedup": "int64"}


def _check_acoustic(config: ModelConfig, model: ModelIO) -> None:
    values = config.values
    optional = {name: "float32" for name in (*VARIANCES, "gender", "velocity")}
    optional |= {"spk_embed": "float32", "languages": "int64", "depth": "float32" if values["use_continuous_acceleration"]
                 else "int64", "steps": "int64", "speedup": "int64"}
    _expect(model, required={"tokens": "int64", "durations": "int64", "f0": "float32"}, optional=optional,
            outputs=("mel",), config=config.path, role="acoustic")
    if config.speakers and "spk_embed" not in model.inputs:
        raise VoicebankError(f"{model.path}: the config lists speakers but the acoustic model takes no spk_embed "
                             f"(config {config.path}). Fix: remove `speakers`, or use the multi-speaker export")
    if "spk_embed" in model.inputs and not config.speakers:
        raise VoicebankError(f"{config.path}: the acoustic model takes spk_embed but `speakers` lists none. "
                             "Fix: list the bank's speakers (the .emb files beside the config, without the extension)")
    if not ({"steps", "speedup"} & set(model.inputs)):
        raise VoicebankError(f"{model.path}: the acoustic model takes neither steps nor speedup. Fix: use the model "
                             "its exporter wrote with this config")


def _vocoder(root: Path, acoustic: ModelConfig, hashes: dict[str, str]) -> tuple[ModelConfig, ModelIO]:
    config_path = root / "dsvocoder" / "vocoder.yaml"
    if not config_path.is_file():
        package = acoustic.values.get("vocoder")
        raise VoicebankError(f"{root}: no dsvocoder/vocoder.yaml. The bank names vocoder {package!r}, which OpenUtau "
                             "keeps in its Dependencies folder. Fix: copy that vocoder package (the folder with "
                             "vocoder.yaml and its .onnx) into the bank as dsvocoder/")
    values = {**DEFAULTS, "model": "model.onnx", **_read_yaml(config_path)}
    hashes[str(config_path)] = sha256_file(config_path)
    config = ModelConfig(path=config_path, values=values, phonemes={}, languages={})
    for key in MEL_SETTINGS:
        ours, theirs = acoustic.values[key], values[key]
        same = math.isclose(float(ours), float(theirs), abs_tol=1e-5) if key in ("mel_fmin", "mel_fmax") else ours == theirs
        if not same:
            raise VoicebankError(f"{config_path}: {key} is {theirs!r}, the acoustic model's ({acoustic.path}) is {ours!r}. "
                                 "Fix: use the vocoder the acoustic model was trained for")
    for source in (acoustic, config):
        if str(source.values["mel_base"]) not in ("10", "e"):
            raise VoicebankError(f"{source.path}: mel_base {source.values['mel_base']!r} is neither 10 nor e. "
                                 "Fix: restore the voicebank's own file")
    model = _model_io(_named_file(config_path, values, "model"), hashes)
    _expect(model, required={"mel": "float32", "f0": "float32"}, outputs=("waveform",), config=config_path, role="vocoder")
    return config, model


def _sub_model(folder: str, config: ModelConfig, hashes: dict[str, str]) -> tuple[ModelConfig, ModelIO, ModelIO]:
    values = config.values
    linguistic = _model(config, "linguistic", hashes)
    words = {"word_div": "int64", "word_dur": "int64"} if values["predict_dur"] else {"ph_dur": "int64"}
    _expect(linguistic, required={"tokens": "int64", **words}, optional={"languages": "int64"},
            outputs=("encoder_out", "x_masks"), config=config.path, role=f"{folder} linguistic")
    speaker = {"spk_embed": "float32"} if config.speakers else {}
    if folder == "dsdur":
        model = _model(config, "dur", hashes)
        _expect(model, required={"encoder_out": "float32", "x_masks": "bool", "ph_midi": "int64", **speaker},
                outputs=("ph_dur_pred",), config=config.path, role="duration")
    elif folder == "dspitch":
        model = _model(config, "pitch", hashes)
        _expect(model, required={"encoder_out": "float32", "ph_dur": "int64", "note_midi": "float32",
                                 "note_dur": "int64", "pitch": "float32", "retake": "bool", **speaker,
                                 **_steps_inputs(values)},
                optional={"note_rest": "bool", "expr": "float32"}, outputs=("pitch_pred",), config=config.path,
                role="pitch")
    else:
        model = _model(config, "variance", hashes)
        predicted = [name for name in VARIANCES if values[f"predict_{name}"]]
        _expect(model, required={"encoder_out": "float32", "ph_dur": "int64", "pitch": "float32", "retake": "bool",
                                 **{name: "float32" for name in predicted}, **speaker, **_steps_inputs(values)},
                outputs=tuple(f"{name}_pred" for name in predicted), config=config.path, role="variance")
    return config, linguistic, model


# --- dictionary, character, licence -----------------------------------------------------------


def _dictionary(folder: Path, phonemes: dict[str, int]) -> Dictionary | None:
    path = folder / "dsdict.yaml"
    if not path.is_file():
        return None  # the engine then maps espeak-ng's phonemes onto the bank's (docs/singing.md)
    values = _read_yaml(path)
    kinds = {"SP": "vowel", "AP": "vowel"}
    for symbol in values.get("symbols") or ():
        if not isinstance(symbol, dict) or not isinstance(symbol.get("symbol"), str):
            raise VoicebankError(f"{path}: a symbol must be a mapping with `symbol` and `type`. Fix: restore the file")
        kind = str(symbol.get("type", ""))
        kinds[symbol["symbol"]] = "vowel" if kind == "vowel" else "glide" if kind in ("semivowel", "liquid") else "consonant"
    unknown = sorted(name for name in kinds if name not in phonemes)
    if unknown:
        raise VoicebankError(f"{path}: symbol(s) {', '.join(unknown[:8])} are not in the bank's phoneme table. "
                             "Fix: use the dictionary that came with this bank")
    entries = {}
    for entry in values.get("entries") or ():
        if isinstance(entry, dict) and isinstance(entry.get("grapheme"), str) and isinstance(entry.get("phonemes"), list):
            # as OpenUtau: phonemes the symbols do not declare are left out of the entry
            entries[entry["grapheme"]] = tuple(str(p) for p in entry["phonemes"] if str(p) in kinds)
    return Dictionary(path=path, kinds=kinds, entries=entries)


def _character(root: Path) -> dict[str, str]:
    """character.txt's known keys (name, author, voice, web, version) and its whole text under ""."""
    found: dict[str, str] = {}
    path = root / "character.txt"
    if path.is_file():
        raw = path.read_bytes()
        for encoding in ("utf-8-sig", "shift_jis"):  # OpenUtau's default is shift_jis; most banks write UTF-8
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            text = raw.decode("utf-8", "replace")
        found[""] = text
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                key, sep, value = line.partition(":")
            key = key.strip().lower()
            if key in ("name", "author", "created by", "web", "version") and value.strip():
                found["author" if key == "created by" else key] = value.strip()
    yaml_path = root / "character.yaml"
    if yaml_path.is_file():
        for key in ("name", "author", "web", "version"):
            value = _read_yaml(yaml_path).get(key)
            if isinstance(value, (str, int, float)) and str(value).strip():
                found[key] = str(value).strip()
    return found


def _licence_files(root: Path) -> dict[str, str]:
    """The bank's readme, licence and terms files (OpenUtau's format has no licence field)."""
    return {path.name: sha256_file(path) for path in sorted(root.iterdir())
            if path.is_file() and path.name.lower().startswith(LICENCE_FILE_STEMS)}

