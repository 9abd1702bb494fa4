"""MP3 encoding in a child process (release.mp3 starts it).

pedalboard's bundled LAME holds the GIL while it encodes: two 3-minute encodes on two threads
take longer (4.5 s) than one after the other (3.5 s). The export writes two MP3s per profile, so
each is encoded in its own process, beside the other and beside the PCM files and the report.

    python -m millamusic.mp3_encoder RATE CHANNELS QUALITY PATH  < float32 samples, channel after channel
"""

from __future__ import annotations

import sys

import numpy as np
from pedalboard.io import AudioFile


def main(argv: list[str] | None = None) -> int:
    rate, channels, quality, path = argv if argv is not None else sys.argv[1:]
    samples = np.frombuffer(sys.stdin.buffer.read(), dtype=np.float32).reshape(int(channels), -1)
    try:
        with AudioFile(path, "w", int(rate), int(channels), quality=quality) as out:
            out.write(samples)
    except (ValueError, RuntimeError) as exc:  # pedalboard's words for a bad rate or quality
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
