"""Release identifiers, checked in one place for the spec and for the tags."""

from __future__ import annotations

import re

_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")


def normalise_isrc(text: str) -> str:
    """'fi-mla-26-00001' -> 'FIMLA2600001'; ValueError if it is not CC XXX YY NNNNN."""
    cleaned = text.replace("-", "").strip().upper()
    if not _ISRC.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not an ISRC (12 characters CC-XXX-YY-NNNNN, e.g. FI-A1B-26-00001)")
    return cleaned
