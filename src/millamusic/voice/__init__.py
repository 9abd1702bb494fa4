"""What the vocal engines sing with: syllables and notes, and the speech models (espeak, Piper, Kokoro)."""
