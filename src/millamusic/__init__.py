"""millamusic: song spec -> stems, masters, lyrics and AI credits for a virtual artist.

Importing the package is cheap on purpose: no torch, no audio libraries. Each stage
imports what it needs when it runs.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 44100  # the project rate: every stem, mix and master uses it
