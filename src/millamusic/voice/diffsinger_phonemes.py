"""The diffsinger engine's text side: a score's sung syllables as a voicebank's phonemes.

A word's phonemes come from the bank's dictionary (dsdict.yaml). A word the dictionary does not
have is spoken by espeak-ng and its IPA mapped onto the bank's phoneme set: the bank's own IPA
symbols where it has them, else ARPAbet (the set most English DiffSinger banks use), with or
without a language prefix (`en/aa`). A word neither way can spell is an error naming the word and
the dictionary entry that would fix it. The phonemes are then split at their vowels, one group per
sung syllable: consonants before a vowel are sung before its note starts (the vowel on the beat).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from millamusic.core.errors import RenderError
from millamusic.music import espeak
from millamusic.music.score import Score
from millamusic.voice.diffsinger_bank import Voicebank
from millamusic.voice.melody import note_groups, word_text
from millamusic.voice.syllables import clean_word

MIN_SYLLABLE_S = 0.06  # a sung syllable is at least this long (melody.note_groups)

# espeak-ng's IPA (longest first) -> ARPAbet, lower case as DiffSinger's English banks write it
IPA_TO_ARPABET = {
    "aɪə": ("ay", "er"), "aʊə": ("aw", "er"), "eɪ": ("ey",), "aɪ": ("ay",), "aʊ": ("aw",), "oʊ": ("ow",),
    "əʊ": ("ow",), "ɔɪ": ("oy",), "ɪə": ("ih", "er"), "eə": ("eh", "r"), "ʊə": ("uh", "r"), "tʃ": ("ch",),
    "dʒ": ("jh",), "ɜː": ("er",), "ɝ": ("er",), "ɚ": ("er",), "ɑː": ("aa",), "ɑ": ("aa",), "ɒ": ("aa",),
    "æ": ("ae",), "ʌ": ("ah",), "ə": ("ah",), "ɐ": ("ah",), "ɔː": ("ao",), "ɔ": ("ao",), "ɛ": ("eh",), "e": ("eh",),
    "ɪ": ("ih",), "ᵻ": ("ih",), "iː": ("iy",), "i": ("iy",), "ʊ": ("uh",), "uː": ("uw",), "u": ("uw",),
    "b": ("b",), "d": ("d",), "ð": ("dh",), "f": ("f",), "ɡ": ("g",), "g": ("g",), "h": ("hh",), "k": ("k",),
    "l": ("l",), "m": ("m",), "n": ("n",), "ŋ": ("ng",), "p": ("p",), "ɹ": ("r",), "r": ("r",), "s": ("s",),
    "ʃ": ("sh",), "t": ("t",), "θ": ("th",), "v": ("v",), "w": ("w",), "j": ("y",), "z": ("z",), "ʒ": ("zh",),
    "ɾ": ("dx",), "ʔ": ("t",), "ɬ": ("l",), "x": ("k",),
}
ARPABET_VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
_DROPPED = set("ˈˌː̩̃ˑ-_ ")  # stress, length and syllabic marks, separators


@dataclass
class SungSyllable:
    """One sung syllable (a note with text plus its melisma notes) and its phonemes."""

    notes: list[int]  # indices into score.notes
    word: int
    line: int
    start: float  # seconds: the vowel lands here (the first note's start)
    end: float
    pitches: list[tuple[float, float, int]]  # (start s, end s, midi) per note
    onset: list[str] = field(default_factory=list)  # sung before `start`
    vowel: list[str] = field(default_factory=list)  # the nucleus: its first vowel lands on the note
    coda: list[str] = field(default_factory=list)  # after the vowel, inside the note


def sung_syllables(score: Score) -> list[SungSyllable]:
    return [SungSyllable(group, score.notes[group[0]].word_index, score.notes[group[0]].line_index, start, end, pitches)
            for group, start, end, pitches in note_groups(score, MIN_SYLLABLE_S)]


class PhonemeSet:
    """The bank's phonemes and which are vowels, with the spellings of a word that fit them."""

    def __init__(self, bank: Voicebank, language: str):
        self.bank = bank
        self.table = bank.acoustic.phonemes
        self.kinds = dict(bank.dictionary.kinds) if bank.dictionary else {}
        self.prefix = (language.split("-")[0] + "/") if any("/" in name for name in self.table) else ""
        self.language = language

    def is_vowel(self, phoneme: str) -> bool:
        if phoneme in self.kinds:
            return self.kinds[phoneme] == "vowel"
        bare = phoneme.split("/")[-1]
        return bare in ARPABET_VOWELS or any(ch in espeak.IPA_VOWELS for ch in bare)

    def from_dictionary(self, word: str) -> tuple[str, ...] | None:
        entries = self.bank.dictionary.entries if self.bank.dictionary else {}
        return entries.get(word) or entries.get(word.lower())

    def from_ipa(self, ipa: str) -> tuple[list[str], list[str]]:
        """(bank phonemes, IPA pieces the bank has no phoneme for) of espeak's IPA for one word."""
        out, missing = [], []
        text = "".join(ch for ch in ipa if ch not in _DROPPED)
        while text:
            for size in (3, 2, 1):
                piece = text[:size]
                if len(piece) < size:
                    continue
                own = self.prefix + piece
                if own in self.table:
                    out.append(own)
                    break
                if piece in IPA_TO_ARPABET:
                    mapped = [self.prefix + p for p in IPA_TO_ARPABET[piece]]
                    if all(p in self.table for p in mapped):
                        out.extend(mapped)
                    else:
                        missing.append(piece)
                    break
            else:
                missing.append(text[0])
                size = 1
            text = text[size:]
        return out, missing


def attach_phonemes(score: Score, syllables: list[SungSyllable], phonemes: PhonemeSet) -> list[str]:
    """Give every syllable its phonemes, word by word. Returns the words espeak-ng spelled (not
    the dictionary), for the render's record. RenderError naming a word no way can spell."""
    by_word: dict[int, list[SungSyllable]] = {}
    for syl in syllables:
        by_word.setdefault(syl.word, []).append(syl)
    spelled = []
    for w, group in by_word.items():
        text = clean_word(word_text(score, syllables, w))
        found = phonemes.from_dictionary(text)
        if found is None:
            ipa = espeak.text_to_phonemes(text, phonemes.language, separator="")
            found, missing = phonemes.from_ipa(ipa)
            if missing or not found:
                where = phonemes.bank.dictionary.path if phonemes.bank.dictionary else phonemes.bank.path / "dsdict.yaml"
                raise RenderError(
                    f"diffsinger: the voicebank {phonemes.bank.name!r} cannot spell the word {text!r} (espeak-ng says "
                    f"/{ipa}/; the bank has no phoneme for {', '.join(sorted(set(missing))) or 'any of it'}). Fix: add "
                    f"`- {{grapheme: {text.lower()}, phonemes: [...]}}` with the bank's own phonemes to the entries of {where}")
            spelled.append(text)
        _split(list(found), group, phonemes)
    return spelled


def _split(found: list[str], group: list[SungSyllable], phonemes: PhonemeSet) -> None:
    """Split a word's phonemes into its syllables at the vowels. Vowels next to each other are one
    nucleus (a diphthong or a long vowel spelled twice); each syllable gets one, its first vowel on
    the beat. The consonants between two nuclei start the next syllable, except the first of a
    cluster of two or more, which closes the one before. Fewer nuclei than syllables: the last
    vowel is held over the remaining notes; more: the extra ones are sung in the last syllable."""
    nuclei: list[tuple[int, int]] = []  # (first, last) index of each run of vowels
    for k, phoneme in enumerate(found):
        if phonemes.is_vowel(phoneme):
            if nuclei and nuclei[-1][1] == k - 1:
                nuclei[-1] = (nuclei[-1][0], k)
            else:
                nuclei.append((k, k))
    if not nuclei:
        nuclei = [(len(found) - 1, len(found) - 1)]  # e.g. "hmm": hold its last sound
    used = nuclei[: len(group)]
    for index, syl in enumerate(group):
        if index >= len(used):  # a melisma on the last vowel
            syl.vowel = [found[used[-1][1]]]
            continue
        first, last = used[index]
        start = 0 if index == 0 else _boundary(used[index - 1][1], first)
        end = len(found) if index == len(used) - 1 else _boundary(last, used[index + 1][0])
        syl.onset, syl.vowel, syl.coda = found[start:first], found[first : last + 1], found[last + 1 : end]


def _boundary(left: int, right: int) -> int:
    """Where the syllable of the vowel at `right` starts, after the vowel at `left`."""
    between = right - left - 1
    return left + 1 + (1 if between >= 2 else 0)
