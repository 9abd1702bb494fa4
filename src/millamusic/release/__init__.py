"""The files of a release: PCM/FLAC/MP3 writers, tags, synced lyrics, MIDI, the PNG report, AI credits."""
