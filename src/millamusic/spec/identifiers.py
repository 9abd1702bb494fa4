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


def upc_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of the digits before it (weights 3, 1, 3, ... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalise_upc(text: str) -> str:
    """'0 12345 67890 5' -> '012345678905'; ValueError unless 12 (UPC-A) or 13 (EAN-13) digits with
    a correct GS1 check digit."""
    cleaned = "".join(str(text).replace("-", " ").split())
    if not cleaned.isdigit() or len(cleaned) not in (12, 13):
        raise ValueError(f"{text!r} is not a UPC/EAN (12 digits UPC-A or 13 digits EAN-13, e.g. 012345678905)")
    expected = upc_check_digit(cleaned[:-1])
    if int(cleaned[-1]) != expected:
        raise ValueError(f"{text!r} has check digit {cleaned[-1]}; the digits before it give {expected}")
    return cleaned
