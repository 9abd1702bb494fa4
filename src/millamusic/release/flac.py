"""Tagged FLAC with the cover embedded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from mutagen.flac import FLAC, Picture

from millamusic.core.audio import Audio
from millamusic.core.files import atomic_path
from millamusic.release.pcm import pcm_for
from millamusic.release.tags import ReleaseTags
from millamusic.spec.artwork import image_geometry


def write_flac(audio: Audio, path: str | os.PathLike, tags: ReleaseTags, bit_depth: int = 24, *,
               pcm: np.ndarray | None = None) -> Path:
    """FLAC (24-bit, or 16-bit dithered like the WAV) with Vorbis comments and a front-cover Picture block."""

    data = pcm_for(audio, bit_depth, pcm)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, audio.sample_rate, subtype=f"PCM_{bit_depth}", format="FLAC")
        flac = FLAC(tmp)
        if flac.tags is None:
            flac.add_tags()
        flac.tags.clear()
        for key, value in tags.vorbis_comments().items():
            flac.tags[key] = [value]
        flac.clear_pictures()
        if tags.cover_image is not None:
            pic = Picture()
            pic.type = 3  # front cover
            pic.mime = tags.cover_mime
            pic.desc = "Front cover"
            pic.width, pic.height, pic.depth = image_geometry(tags.cover_image)
            pic.data = tags.cover_image
            flac.add_picture(pic)
        flac.save()
    return path
