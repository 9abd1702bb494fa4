"""Shared test helpers: small specs written to temp folders, rendered through the real code."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

# Renders sign their masters with the local identity, created on first use: the tests' goes in a
# temp folder, never the user's (release.signing.identity_dir); subprocesses inherit it.
os.environ.setdefault("MILLAMUSIC_IDENTITY_DIR", tempfile.mkdtemp(prefix="millamusic-test-identity-"))

SHORT_SONG = """\
title: Tiny Test Song
artist: Milla Virta
genre: {genre}
style: [test]
tempo: {tempo}
key: {key}
seed: {seed}
structure:
  - {{section: Verse, bars: 2, chords: [Am, F]}}
  - {{section: Chorus, bars: 2, chords: [C, G]}}
lyrics: |
  [Verse]
  Hold the light tonight
  [Chorus]
  Spin me round again
release:
  album: Test Album
  track: 3
  track_total: 9
  year: 2026
  isrc: FI-MLA-26-00042
  upc: "6 418000 12345 4"
  composer: Test Composer
  lyricist: Test Lyricist
  copyright: "(P) 2026 millamusic"
  label: millamusic
{extra}"""


# One lyric line with far more syllables than its single bar can hold.
CROWDED_SONG = """\
title: Crowded
artist: M
genre: pop
tempo: 100
key: C major
structure:
  - {section: Verse, bars: 1, chords: [C]}
lyrics: |
  [Verse]
  so many many many many many many many many many words here
"""


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a short song spec into tmp_path/songs and return its path."""

    def write(*, genre: str = "pop", tempo: float = 120, key: str = "A minor", seed: int = 3, extra: str = "",
              name: str = "tiny.yaml", text: str | None = None) -> Path:
        folder = tmp_path / "songs"
        folder.mkdir(exist_ok=True)
        path = folder / name
        body = text if text is not None else SHORT_SONG.format(genre=genre, tempo=tempo, key=key, seed=seed,
                                                               extra=textwrap.dedent(extra))
        path.write_text(body, encoding="utf-8")
        return path

    return write
