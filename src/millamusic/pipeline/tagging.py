"""What a release says about itself: timed lyrics, tags and credits, from the score and the engines that ran."""

from __future__ import annotations

import json

from millamusic.core.cache import Entry
from millamusic.engines.base import EngineInfo
from millamusic.music.score import Score
from millamusic.release.credits import contains_ai, credits_json, digital_source_type, disclosure, song_credits
from millamusic.release.distributor import ai_roles
from millamusic.release.lyric_files import TimedLine, TimedWord, lrc_text, sylt_words
from millamusic.release.tags import ReleaseTags
from millamusic.spec.artwork import validate_cover
from millamusic.spec.song import Song
from millamusic.voice.melody import backing_word_times, word_spans


def engine_used(entry: Entry, record: str):
    """The EngineInfo an engine reported for this render (a Piper voice, say), from its cache record."""

    return EngineInfo(**json.loads((entry.path / record).read_text())["engine"])


def credits_for(song: Song, score: Score, backing_info, backing: Entry, vocals_info):
    prompt = json.loads((backing.path / "backing.json").read_text())["prompt"]
    spec = song.spec
    return song_credits(artist=spec.artist, lyricist=spec.release.lyricist_credit,
                        melody_from_midi=score.melody_source.startswith("midi:"), composer=spec.release.composer_credit,
                        seed=spec.seed, backing=backing_info, backing_prompt=prompt, vocals=vocals_info)


def timed_lyrics(score: Score, vocals: Entry) -> list:
    """Each lyric line with its words, timed from the syllables as actually sung.

    A word runs from its first syllable's first sound to its last syllable's end, cut
    where the next word begins (the next word's consonants are sung before its beat).
    """

    sung = json.loads((vocals.path / "vocals.json").read_text())["syllables"]
    spans = word_spans((score.notes[s["note_index"]].word_index, s["start_seconds"], s["end_seconds"]) for s in sung)
    backing = backing_word_times(score)  # line index -> the backing part's (word, start, end)
    lines = []
    for line_index, line in enumerate(score.lines):
        words = [TimedWord(score.words[w].text, round(spans[w][0], 3), round(spans[w][1], 3))
                 for w in spans if score.words[w].line_index == line_index]
        behind = tuple(TimedWord(text, round(start, 3), round(end, 3))
                       for text, start, end in backing.get(line_index, ()))
        if words or behind:
            times = [*words, *behind]
            lines.append(TimedLine(line.text, min(w.start for w in times), max(w.end for w in times), tuple(words),
                                   score.sections[line.section_index].name, behind))
    return lines


# ISO 639-2 codes for ID3 lyrics frames, from the espeak language's first part
_ISO_639_2 = {"en": "eng", "fi": "fin", "sv": "swe", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld",
              "no": "nor", "nb": "nob", "da": "dan", "et": "est", "pt": "por", "ja": "jpn", "ru": "rus", "pl": "pol"}


def bcp47(language: str) -> str:
    """espeak 'en-us' -> BCP-47 'en-US' (TTML's xml:lang)."""
    parts = language.split("-")
    return "-".join([parts[0].lower()] + [p.upper() if len(p) == 2 else p for p in parts[1:]])


def _original_fields(original) -> dict:
    """A cover's original work as ReleaseTags fields (none for an original song)."""
    if original is None:
        return {}
    return {"original_title": original.title, "original_artist": original.artist,
            "original_songwriters": ", ".join(original.songwriters), "original_year": original.year}


def release_tags(song: Song, score: Score, credits, lines):
    """The tags every delivery file of this song carries (the same for every profile)."""

    spec, release = song.spec, song.spec.release
    cover = validate_cover(song.artwork_path) if song.artwork_path else (None, None)
    return ReleaseTags(
        title=spec.title, artist=spec.artist, album=release.album, album_artist=release.album_artist or spec.artist,
        track_number=release.track, track_total=release.track_total, disc_number=release.disc,
        year=release.year, genre=spec.genre.capitalize(), isrc=release.isrc, upc=release.upc,
        composer=release.composer_credit, lyricist=release.lyricist_credit, copyright=release.copyright,
        label=release.label, producer=release.producer, **_original_fields(release.original), cover_image=cover[0], cover_mime=cover[1],
        lyrics_text="\n".join(line.text for line in score.lines), synced_words=sylt_words(lines),
        synced_lrc=lrc_text(lines, title=spec.title, artist=spec.artist, album=release.album, words=False),
        lyrics_language=_ISO_639_2.get(song.language.split("-")[0], "und"),
        disclosure=disclosure(spec.artist, credits, song.disclosure), contains_ai=contains_ai(credits),
        digital_source_type=digital_source_type(credits), ai_credits_json=credits_json(credits),
        ai_roles=tuple(ai_roles(credits, release.artwork_ai).tag_fields().items()),
    )
