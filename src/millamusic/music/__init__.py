"""The song as notes and words: keys and chords, lyric sheets and their syllables (espeak-ng), the Score."""
