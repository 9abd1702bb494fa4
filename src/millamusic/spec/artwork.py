"""The cover artwork a spec names: checked before anything renders, and again in the masters."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from millamusic.core.errors import ExportError

COVER_MIN_PX = 1400


def image_geometry(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as im:
        depth = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "CMYK": 32, "LA": 16, "I;16": 16}.get(im.mode, 24)
        return im.width, im.height, depth


# --------------------------------------------------------------------------- cover


@dataclass(frozen=True)
class CoverCheck:
    """What the stores' cover rules say of an image: JPEG or PNG, square, at least COVER_MIN_PX."""
    format: str | None  # PIL's name ("JPEG", "PNG", "GIF"...); None when unreadable
    width: int
    height: int
    mime: str | None  # "image/jpeg" | "image/png" when the format is one the stores take
    problems: tuple[tuple[str, str], ...]  # (what is wrong, "is 1600x1400 px; ...", the fix)


def inspect_cover(data: bytes) -> CoverCheck:
    """The cover rules, applied to image bytes; one place for the renderer and `millamusic check`.
    Remembered by content: a render checks its cover when the spec loads and again for the tags
    (decoding a 3000x3000 JPEG is ~40 ms)."""
    digest = hashlib.sha256(data).digest()
    if digest not in _COVER_CHECKS:
        _COVER_CHECKS[digest] = _inspect_cover(data)
    return _COVER_CHECKS[digest]


_COVER_CHECKS: dict[bytes, CoverCheck] = {}  # sha256 of the image -> its check (small: no pixels kept)


def _inspect_cover(data: bytes) -> CoverCheck:
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            im.load()  # catches truncated files
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return CoverCheck(None, 0, 0, None, ((f"is not a readable image ({exc})", "export it again as JPEG or PNG"),))
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}.get(fmt or "")
    problems = []
    if mime is None:
        problems.append((f"is {fmt or 'an unknown format'} ({w}x{h} px); stores take JPEG or PNG",
                         "convert it to JPEG (RGB, quality 90+) or PNG"))
    if w != h:
        problems.append((f"is {w}x{h} px ({fmt}), not square",
                         f"crop it to {min(w, h)}x{min(w, h)} (or a larger square), at least "
                         f"{COVER_MIN_PX}x{COVER_MIN_PX}; 3000x3000 is best"))
    if min(w, h) < COVER_MIN_PX:
        problems.append((f"is {w}x{h} px ({fmt}), under the {COVER_MIN_PX}x{COVER_MIN_PX} stores need",
                         "render or export the artwork at 3000x3000 (upscaling a small image looks soft)"))
    return CoverCheck(fmt, w, h, mime, tuple(problems))


def validate_cover(path: str | os.PathLike) -> tuple[bytes, str]:
    """Check a cover image for the stores (`inspect_cover`); returns (bytes, mime) or raises
    ExportError with the first problem and its fix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cover image {path} cannot be read ({exc.strerror or exc}). Fix: check the cover path in the spec") from exc
    check = inspect_cover(data)
    if check.problems:
        what, fix = check.problems[0]
        raise ExportError(f"cover image {path} {what}. Fix: {fix}")
    return data, check.mime
