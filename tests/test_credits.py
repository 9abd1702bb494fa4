from millamusic.engines.base import EngineInfo
from millamusic.release.credits import IPTC, contains_ai, digital_source_type, disclosure, song_credits

ALGO = EngineInfo("arranger", "backing", "1", "embedded", "MIT", "algorithmic")
TRAINED = EngineInfo("musicgen", "backing", "1", "facebook/musicgen-small", "CC-BY-NC-4.0", "trained")
SINGER = EngineInfo("singer", "vocals", "1", "espeak-ng + WORLD", "GPL", "algorithmic")


def _credits(backing, midi=False):
    return song_credits(artist="Milla", lyricist="Ann", melody_from_midi=midi, composer="Bo", seed=4,
                        backing=backing, backing_prompt="a prompt" if backing is TRAINED else None, vocals=SINGER)


def test_fields_follow_the_engines_used():
    algorithmic = _credits(ALGO)
    assert contains_ai(algorithmic) == "Partly"  # lyrics are human-written
    assert digital_source_type(algorithmic) == IPTC + "compositeSynthetic"
    trained = _credits(TRAINED)
    assert digital_source_type(trained) == IPTC + "compositeWithTrainedAlgorithmicMedia"
    backing = next(c for c in trained if c.stage == "backing")
    assert (backing.model, backing.licence, backing.seed, backing.prompt) == (
        "facebook/musicgen-small", "CC-BY-NC-4.0", 4, "a prompt")
    human_melody = _credits(ALGO, midi=True)
    assert [c.generator for c in human_melody if c.stage == "melody"] == ["human"]


def test_disclosure_names_engines_and_cannot_be_empty():
    text = disclosure("Milla", _credits(ALGO))
    assert "virtual artist" in text and "arranger" in text and "singer" in text and "lyrics by Ann" in text
    assert disclosure("Milla", _credits(ALGO), "  Made with AI tools by the Milla team.  ") == "Made with AI tools by the Milla team."
    assert disclosure("Milla", _credits(ALGO), "") == text


def test_commercial_use_is_refused_for_nc_and_unknown_licences():
    from millamusic.release.credits import licence_allows_commercial

    for refused in ("cc-by-nc-4.0", "CC BY-NC-SA 4.0", "CC-BY-NC-ND-4.0", "non-commercial", "research only",
                    "unknown", ""):
        assert not licence_allows_commercial(refused), refused
    for allowed in ("mit", "apache-2.0", "cc-by-4.0", "MIT (millamusic)",
                    "GPL-3.0-or-later (espeak-ng data); WORLD: modified BSD"):
        assert licence_allows_commercial(allowed), allowed
