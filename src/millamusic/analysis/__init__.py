"""Listening through numbers: tempo, key, chords, melody chroma, grid fitting, what a listener hears."""
