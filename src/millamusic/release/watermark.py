"""The second disclosure layer the EU AI Act's Code of Practice asks for beside signed metadata: an
inaudible watermark carrying a short release ID, detectable after MP3 encoding.

No watermarker qualifies yet (evaluated 2026-12, docs/provenance.md): the neural ones with a
payload (AudioSeal, WavMark, SilentCipher) fetch their weights from Hugging Face at run time,
need torchaudio or pin an old torch; the one whose weights ship on PyPI (Perth) carries no
payload and needs torchaudio. So every release records `WATERMARK_STATUS`, and this is the shape
one must have to be added: the export stage calls `embed` on the master before quantising it,
and `millamusic check` calls `detect` on every decoded delivery file.
"""

from __future__ import annotations

from typing import Protocol

from millamusic.core.audio import Audio

WATERMARK_STATUS = "none: no offline, commercially licensed audio watermarker qualifies (docs/provenance.md)"


class Watermarker(Protocol):
    name: str
    payload_bits: int

    def embed(self, audio: Audio, release_id: str) -> Audio:
        """The master with `release_id` (at most payload_bits) marked into it, loudness kept."""

    def detect(self, audio: Audio) -> str | None:
        """The release ID marked into `audio` (a decoded delivery file), None when there is none."""
