"""The one YAML loader of song, album and artist files: size and shape limits, positions of every
field, and pydantic's errors turned into located spec problems."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent

from millamusic.core.errors import SpecError, SpecProblem
from millamusic.spec.fields import MAX_BARS_PER_SECTION, MAX_SECTIONS, MAX_SEED, MAX_TEMPO, MIN_TEMPO

# Limits on what a spec may make us read (docs/errors.md). A song's spec with inline lyrics is a few KB.
MAX_SPEC_BYTES = 1 << 20  # song, album and artist-profile YAML files
MAX_YAML_DEPTH = 16  # nesting of mappings and lists; the schema needs 4
MAX_YAML_NODES = 20_000  # scalars, mappings and lists in one file (a long song has ~2000)


def read_spec_bytes(path: Path, shown: str, what: str) -> bytes:
    """A spec file's bytes, refusing a file too large to be a spec before reading it."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([SpecProblem(shown, None, None, "file", f"{size} bytes",
                                         f"the {what} is larger than {MAX_SPEC_BYTES // 1024} KB",
                                         "a spec holds fields and lyrics only; keep audio, images and long texts in "
                                         "files it names")])
        return path.read_bytes()
    except OSError as error:
        raise SpecError([SpecProblem(shown, None, None, "file", shown, f"cannot read the {what} ({error.strerror or error})",
                                     "check the path")]) from None


def _yaml_shape_problems(text: str, shown: str) -> list[SpecProblem]:
    """Refuse YAML that costs more than it says before building it: aliases (a few lines of
    `*a` can expand to billions of nodes), deep nesting (recursion in every consumer) and
    huge node counts. Specs need none of these. Reads the event stream only: linear time."""

    depth = nodes = 0
    for event in YAML(typ="rt").parse(text):
        mark = event.start_mark
        where = (mark.line + 1, mark.column + 1) if mark else (None, None)
        if isinstance(event, AliasEvent):
            return [SpecProblem(shown, *where, "yaml", f"*{event.anchor}", "YAML aliases are not allowed in specs",
                                "write the value out where it is used")]
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return [SpecProblem(shown, *where, "yaml", f"depth {depth}",
                                    f"nested deeper than {MAX_YAML_DEPTH} levels",
                                    "a spec's fields nest a few levels at most; check the brackets and indentation")]
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        nodes += 1
        if nodes > MAX_YAML_NODES:
            return [SpecProblem(shown, *where, "yaml", f"{nodes} nodes", f"more than {MAX_YAML_NODES} YAML nodes",
                                "a spec has a few hundred fields and lines at most")]
    return []


def parse_yaml(raw: bytes, shown: str) -> Any:
    try:
        text = raw.decode("utf-8")
        problems = _yaml_shape_problems(text, shown)
        if problems:
            raise SpecError(problems)
        document = YAML(typ="rt").load(text)
    except UnicodeDecodeError as error:
        raise SpecError([SpecProblem(shown, None, None, "file", f"byte {error.start}", "not UTF-8 text",
                                     "save the spec as UTF-8")]) from None
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise SpecError([SpecProblem(shown, line, col, "yaml", (error.problem or "").strip(),
                                     f"YAML syntax error: {error.problem or error.context}",
                                     "check indentation, colons and quotes around this position")]) from None
    except YAMLError as error:
        raise SpecError([SpecProblem(shown, None, None, "yaml", "", f"YAML error: {error}", "fix the YAML")]) from None
    if not isinstance(document, dict):
        raise SpecError([SpecProblem(shown, 1, 1, "spec", type(document).__name__,
                                     "the spec must be a mapping of fields", "start with `title: ...`")])
    return document


def position(document: Any, loc: tuple) -> tuple[int | None, int | None]:
    """1-based line/column of the value at `loc`, or of the deepest existing parent."""
    node = document
    best: tuple[int | None, int | None] = (1, 1)
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node:
            if lc is not None:
                line, col = lc.value(part)
                best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            if lc is not None:
                line, col = lc.item(part)
                best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best


def _value_at(document: Any, loc: tuple) -> Any:
    node = document
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it, or check its spelling against docs/spec.md",
    "literal_error": "use one of the values listed",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "string_type": "write text (quote it if it looks like a number)",
    "list_type": "write a list, e.g. [Am, F, C, G]",
    "dict_type": "write a mapping of fields",
    "model_type": "write a mapping of fields",
    "greater_than_equal": "use {ge} or more",
    "less_than_equal": "use {le} or less",
    "too_short": "add content",
    "too_long": "list at most {max_length} items",
    "string_too_short": "write a longer text",
    "string_too_long": "shorten it to {max_length} characters or fewer",
    "finite_number": "write a finite number",
    "int_parsing_size": "write a whole number of sensible size",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_unicode": "write the characters themselves: an unpaired \\uD800-\\uDFFF escape is not text",
}


# Fixes that say more than the generic one for a field (indices left out of the field's name).
_FIELD_FIXES = {
    ("tempo", "greater_than_equal"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("tempo", "less_than_equal"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("tempo", "finite_number"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("structure.bars", "greater_than_equal"): f"give the section 1 to {MAX_BARS_PER_SECTION} bars",
    ("structure.bars", "less_than_equal"): f"give the section at most {MAX_BARS_PER_SECTION} bars; split a longer "
                                           "passage into several sections",
    ("structure", "too_long"): f"a song has at most {MAX_SECTIONS} sections: join repeated parts into longer "
                               f"sections (up to {MAX_BARS_PER_SECTION} bars each)",
    ("seed", "greater_than_equal"): f"use a whole number from 0 to {MAX_SEED}",
    ("seed", "less_than_equal"): f"use a whole number from 0 to {MAX_SEED}",
}


def _generic_fix(kind: str, ctx: dict) -> str:
    fix = _FIXES.get(kind, "see docs/spec.md")
    try:
        return fix.format(**ctx)  # "use {ge} or more" -> "use 40 or more"
    except (KeyError, IndexError, ValueError):
        return fix


def _key_text(key: Any) -> str:
    """A mapping key as YAML wrote it."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _field_name(loc: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def pydantic_problems(error: ValidationError, document: Any, shown: str) -> list[SpecProblem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        if item["type"] == "invalid_key" or loc[-1:] == ("[key]",):  # a key YAML read as a number, null, ...
            loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
            node = _value_at(document, loc[:-1])  # pydantic names some keys by str(key): find the real one
            key = next((k for k in node if not isinstance(k, str) and (k == loc[-1] or str(k) == str(loc[-1]))),
                       loc[-1]) if isinstance(node, dict) else loc[-1]
            loc = loc[:-1] + (key,)
            parent = _field_name(loc[:-1])
            line, col = position(document, loc)
            what = ("null" if key is None else "true/false" if isinstance(key, bool) else
                    "a number" if isinstance(key, (int, float)) else "a list" if isinstance(key, tuple) else
                    f"a {type(key).__name__}")
            problems.append(SpecProblem(shown, line, col, f"{parent}.{_key_text(key)}" if parent else _key_text(key),
                                        _value_at(document, loc), f"field name is not text (YAML reads it as {what})",
                                        "field names are words such as `title` or `tempo`: check the spelling, the "
                                        "indentation and the colon on this line"))
            continue
        field = _field_name(loc)
        line, col = position(document, loc)
        ctx = item.get("ctx") or {}
        plain_field = re.sub(r"\[\d+\]", "", field)
        fix = ctx.get("fix") or _FIELD_FIXES.get((plain_field, item["type"])) or _generic_fix(item["type"], ctx)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        value = _value_at(document, loc) if item["type"] != "missing" else None
        problems.append(SpecProblem(shown, line, col, field or "spec", value, message, fix))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems
