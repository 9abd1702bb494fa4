"""Covers: a reference recording measured (analysis) and drafted into a song spec (draft)."""
