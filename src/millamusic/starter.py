"""`millamusic new "Title"`: a new song's spec and lyric sheet, commented, valid, and rendering as
they are, for the producer to edit.

The files are checked the way `millamusic render` reads them (loaded and composed) before the
command says they are there; a starter that does not load is a bug here, and its files are
taken back.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

from millamusic.compose import compose
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.core.files import atomic_path
from millamusic.spec.inputs import default_catalogue, outside, outside_catalogue
from millamusic.spec.song import load_song, slugify

FORMS = {  # a radio form per genre: (section, bars, chords)
    "pop": [("Intro", 4, "Am, F, C, G"), ("Verse 1", 8, "Am, F, C, G"), ("Pre-Chorus", 4, "Dm, F, G, G"),
            ("Chorus", 8, "F, G, Am, C"), ("Verse 2", 8, "Am, F, C, G"), ("Pre-Chorus", 4, "Dm, F, G, G"),
            ("Chorus", 8, "F, G, Am, C"), ("Outro", 4, "F, G, Am, Am")],
    "rock": [("Intro", 4, "Em, C, G, D"), ("Verse 1", 8, "Em, C, G, D"), ("Chorus", 8, "C, D, G, Em"),
             ("Verse 2", 8, "Em, C, G, D"), ("Chorus", 8, "C, D, G, Em"), ("Bridge", 8, "Am, C, D, D"),
             ("Chorus", 8, "C, D, G, Em"), ("Outro", 4, "C, D, Em, Em")],
}
SETTINGS = {"pop": (118, "A minor", "synth-pop"), "rock": (140, "E minor", "driving-rock")}
SHEET = """# {title}: the lyric sheet. A [Header] names a section of the spec's `structure`; the nth
# [Chorus] block is sung in the nth Chorus, and a section with no block of its own sings the last
# block of its name. A bar forces a syllable split (ra|di|o), an underscore holds a syllable (love_).
# Replace these lines with your words (docs/spec.md, "Lyric sheets").

[Verse 1]
Write the first line of your verse here
Then a second line that answers it
A third line that carries the story on
And a fourth that leads into the chorus

{extra}[Chorus]
This is the line the listener will sing
Say the title here and say it twice
Every chorus sings these words again
Unless the sheet gives it a block of its own

[Verse 2]
The second verse moves the story on
New words over the same melody
Another line to say what changed
And the last one turns to the chorus again
"""


def starter_files(title: str, genre: str, artist: str, profile: str | None, lyrics: str) -> tuple[str, str]:
    """(spec text, lyric sheet text) of a new song."""
    tempo, key, preset = SETTINGS[genre]
    structure = "\n".join(f"  - {{section: {json.dumps(name)}, bars: {bars}, chords: [{chords}]}}"
                          for name, bars, chords in FORMS[genre])
    spec = "\n".join([
        f"# {title}: a new song from `millamusic new`. Edit anything, then `millamusic render` this file.",
        "# Every field: docs/spec.md.",
        f"title: {json.dumps(title)}",
        f"artist: {json.dumps(artist)}",
        *([f"artist_profile: {json.dumps(profile)}   # the voice, range and AI disclosure"] if profile else []),
        f"genre: {genre}                 # pop | rock",
        f"style: [{preset}]      # free words; the first that names an arranger preset picks it",
        f"tempo: {tempo}                  # beats per minute",
        f"key: {key}",
        "time_signature: 4/4",
        "seed: 1                     # another seed, another melody and take of the same song",
        "",
        "structure:                  # sections in order; chords repeat to fill the bars",
        structure,
        "",
        f"lyrics: {json.dumps(lyrics)}",
        "# artwork: ../artwork/<file>.jpg   # a square JPEG/PNG of at least 1400 px, for the stores",
        "master:",
        "  profiles: [spotify]       # delivery profiles: spotify, apple, youtube, amazon, deezer, cd, loud, ebu_r128",
        "release:",
        f"  year: {date.today().year}",
        "  # isrc: CC-XXX-YY-NNNNN     # from your distributor",
        "  # release.lyricist, composer, producer, copyright, label: docs/spec.md",
        "",
    ])
    extra = "[Pre-Chorus]\nHold on a little longer now\nThe chorus is coming\n\n" if genre == "pop" else ""
    return spec, SHEET.format(title=title, extra=extra)


def write_starter(title: str, *, genre: str, artist: str, artist_profile: Path | None, songs: Path, lyrics: Path,
                  force: bool = False) -> tuple[Path, Path]:
    """Write songs/<slug>.yaml and lyrics/<slug>.txt; SpecError (exit 2) when either is there and
    `force` is not given."""
    slug = slugify(title)
    spec_path, sheet_path = (songs / f"{slug}.yaml").resolve(), (lyrics / f"{slug}.txt").resolve()
    existing = [p for p in (spec_path, sheet_path) if p.exists()]
    if existing and not force:
        raise SpecError([SpecProblem(str(p), None, None, "title", title, "the file already exists",
                                     "choose another title, edit the existing song, or pass --force to replace it")
                         for p in existing])
    catalogue = default_catalogue(spec_path)
    if artist_profile is not None and outside_catalogue(artist_profile.resolve(), catalogue):
        raise SpecError([outside("--artist-profile", None, None, "artist_profile", str(artist_profile),
                                 artist_profile.resolve(), catalogue)])
    profile = os.path.relpath(artist_profile.resolve(), spec_path.parent) if artist_profile else None
    spec, sheet = starter_files(title, genre, artist, profile, os.path.relpath(sheet_path, spec_path.parent))
    old = {p: p.read_bytes() for p in existing}
    for path, text in ((sheet_path, sheet), (spec_path, spec)):  # the spec last: it never names a missing sheet
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    try:
        compose(load_song(spec_path))
    except SpecError as error:  # our own template: take the files back, keep what was there
        for path in (spec_path, sheet_path):
            if path in old:
                path.write_bytes(old[path])
            else:
                path.unlink(missing_ok=True)
        raise RuntimeError(f"the new song's files do not load (a bug in millamusic new):\n{error}") from error
    return spec_path, sheet_path
