"""What the embedded arranger plays with: genre presets, synthesised instruments, SoundFonts."""
