"""AI credits, derived from what actually made each part, never typed in by hand.

Every file carries: a human-readable disclosure, DDEX-style `ContainsAI`, the IPTC digital
source type and a JSON list of per-stage credits.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from millamusic.compose import COMPOSER_VERSION
from millamusic.engines.base import EngineInfo

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


COMPOSER_ENGINE = EngineInfo(name="millamusic-composer", kind="melody", version=COMPOSER_VERSION, model="embedded",
                             licence="MIT (millamusic)", generator="algorithmic")


@dataclass(frozen=True)
class StageCredit:
    stage: str  # "lyrics" | "melody" | "backing" | "vocals"
    engine: str
    model: str
    version: str
    licence: str
    generator: str  # "human" | "algorithmic" | "trained"
    seed: int | None
    prompt: str | None
    by: str | None = None  # the person, for human parts


def song_credits(*, artist: str, lyricist: str | None, melody_from_midi: bool, composer: str | None, seed: int,
                 backing: EngineInfo, backing_prompt: str | None, vocals: EngineInfo) -> list[StageCredit]:
    credits = [StageCredit("lyrics", "human", "-", "-", "-", "human", None, None, lyricist or artist)]
    if melody_from_midi:
        credits.append(StageCredit("melody", "midi-file", "-", "-", "-", "human", None, None, composer or artist))
    else:
        credits.append(_engine_credit("melody", COMPOSER_ENGINE, seed, None))
    credits.append(_engine_credit("backing", backing, seed, backing_prompt))
    credits.append(_engine_credit("vocals", vocals, seed, None))
    return credits


def _engine_credit(stage: str, info: EngineInfo, seed: int, prompt: str | None) -> StageCredit:
    return StageCredit(stage, info.name, info.model, info.version, info.licence, info.generator, seed, prompt)


# Licence names (SPDX ids, Hugging Face card values, or prose) that forbid commercial use.
_NONCOMMERCIAL = re.compile(r"(?:\b|_)(?:nc|noncommercial|non-commercial|research[- ]only)(?:\b|_)", re.I)


def licence_allows_commercial(licence: str) -> bool:
    """False for non-commercial licences (cc-by-nc-4.0, CC BY-NC-SA, "research only") and unknown ones.

    Unknown counts as not allowed: a release manager must find out, not find out later.
    """
    text = (licence or "").strip()
    return bool(text) and text.lower() != "unknown" and not _NONCOMMERCIAL.search(text)


def contains_ai(credits: list[StageCredit]) -> str:
    return contains_ai_of([c.generator for c in credits])


def contains_ai_of(generators: list[str]) -> str:
    """'All' when no part is human-made, 'Partly' when some are, 'None' when none is machine-made.

    Takes the credits' generators ("human", "algorithmic", "trained"), so `millamusic check`
    applies the same rule to credits read back from a file."""
    machine = [g for g in generators if g != "human"]
    if not machine:
        return "None"
    return "All" if len(machine) == len(generators) else "Partly"


def digital_source_type(credits: list[StageCredit]) -> str:
    return IPTC + source_type_term([c.generator for c in credits])


def source_type_term(generators: list[str]) -> str:
    """IPTC digital source type term: trained models vs rule-based generation, alone or mixed with human work."""
    trained, human = "trained" in generators, "human" in generators
    if trained:
        return "compositeWithTrainedAlgorithmicMedia" if human else "trainedAlgorithmicMedia"
    return "compositeSynthetic" if human else "algorithmicMedia"


def disclosure(artist: str, credits: list[StageCredit], override: str | None = None) -> str:
    """The sentence every file carries. A spec may reword it but never remove it."""
    if override:
        return override.strip()
    machine = [f"{c.stage} by {c.engine} ({c.model})" for c in credits if c.generator != "human"]
    human = [f"{c.stage} by {c.by}" for c in credits if c.generator == "human"]
    text = f"{artist} is a virtual artist. This recording was made with AI and algorithmic tools: {'; '.join(machine)}."
    if human:
        text += f" Human-made: {'; '.join(human)}."
    return text


def credits_json(credits: list[StageCredit]) -> str:
    return json.dumps([asdict(c) for c in credits], ensure_ascii=False, sort_keys=True)
