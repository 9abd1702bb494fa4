"""Stages declared in one place and run through the cache: one song, an album (local or Ray), status, publishing."""
