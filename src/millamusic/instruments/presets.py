"""What the embedded arranger plays: genre presets, style words, grooves, fills, instruments.

Data only; `millamusic.engines.arranger` interprets it and docs/arranger.md explains every
field. A spec changes any value without code through `engines.backing_options`:
`preset: <name>` picks a preset, `overrides: {...}` is deep-merged over it.

Pattern strings have one character per 16th note of a 4/4 bar (tiled or cut for other bar
lengths):
  drum rows: '.' rest, 'x' hit, 'X' accent, 'o' ghost, 'O' open hi-hat (hat row only)
  pitched:   '.' rest, '-' hold the previous note, 'x' 'X' 'o' strike (normal, accent, soft),
             'm' palm-muted strike (power chords),
             bass: 'u' root an octave up, '5' the fifth, 'a' approach note into the next chord,
             arpeggio: '1'..'6' the n-th note of the voiced chord from the bottom (wrapping up an
             octave), 'r' the chord root an octave below the voicing (a pianist's left hand).
A held note is re-struck where the chord changes inside it. A level missing from a part's
patterns means the part rests there.

Compound meters (6/8, 9/8, 12/8) play each table's `compound_` twin (`compound_grooves`,
`compound_fills`, `compound_patterns`): written for a 12/8 bar, four dotted-quarter pulses of three
eighths, one character per 16th (24), and cut at a pulse for 6/8 (12) and 9/8 (18). They are
spelled here in eighths (`_eighths`). A compound fill's `beats` are eighths.
"""

from __future__ import annotations

# General MIDI drum notes (channel 10) of each kit voice.
GM_DRUMS: dict[str, int] = {
    "kick": 36, "snare": 38, "hat": 42, "open_hat": 46, "crash": 49, "ride": 51,
    "tom_hi": 50, "tom_mid": 47, "tom_low": 45,
}


# Velocity factor of each pattern character.
ACCENT: dict[str, float] = {"X": 1.15, "x": 1.0, "o": 0.5, "O": 1.0, "u": 0.95, "m": 0.92, "5": 0.9, "a": 0.85,
                            "r": 1.0, "1": 1.0, "2": 0.85, "3": 0.9, "4": 0.85, "6": 0.85}


_WHOLE = "x---------------"
_HALVES = "x-------x-------"


def _eighths(text: str, hold: bool = False) -> str:
    """A pattern spelled in eighths, as 16ths: each strike is followed by a rest ('x' -> 'x.'), or
    with `hold` by a hold ('x' -> 'x-'); '-' holds both 16ths."""
    return "".join("--" if c == "-" else ".." if c == "." else c + ("-" if hold else ".") for c in text)


# 12/8 bars (four pulses); 6/8 plays the first two pulses, 9/8 the first three.
_C_WHOLE = _eighths("x-----------", hold=True)
_C_HALVES = _eighths("x-----x-----", hold=True)  # a dotted half each: 6/8's whole bar
_C_PULSES = _eighths("x--x--x--x--", hold=True)


# --- section plans: which groove level each section kind plays and how hard -----------------------
# energy: velocity scale at the section's first and last bar (ramped between: builds and fades).
# second_half: the level the section switches to halfway (a bridge that breaks down, then builds).
_SECTIONS_UPBEAT: dict[str, dict] = {
    "intro": {"level": "intro", "energy": [0.78, 0.85]},
    "verse": {"level": "verse", "energy": [0.84, 0.88]},
    "prechorus": {"level": "lift", "energy": [0.86, 0.98]},
    "chorus": {"level": "chorus", "energy": [1.0, 1.0]},
    "bridge": {"level": "breakdown", "energy": [0.72, 0.95], "second_half": "lift"},
    "solo": {"level": "chorus", "energy": [0.97, 0.97]},
    "outro": {"level": "outro", "energy": [0.9, 0.78]},
    "other": {"level": "verse", "energy": [0.86, 0.86]},
}


_SECTIONS_BALLAD: dict[str, dict] = {
    **_SECTIONS_UPBEAT,
    "intro": {"level": "intro", "energy": [0.7, 0.75]},
    "verse": {"level": "verse", "energy": [0.74, 0.8]},
    "prechorus": {"level": "lift", "energy": [0.8, 0.95]},
    "outro": {"level": "outro", "energy": [0.8, 0.65]},
}


# --- drum fills: rows over the last `beats` beats of a bar, with a crescendo across them ---------------
_FILLS_POP: dict[str, dict] = {
    "pickup": {"beats": 1, "rows": {"snare": "..oo"}, "crescendo": [0.6, 0.8]},
    "short": {"beats": 1, "rows": {"snare": "x.xx", "kick": "x..."}, "crescendo": [0.65, 0.95]},
    "big": {"beats": 2, "rows": {"snare": "x.x.xxxx", "tom_hi": "........", "kick": "x...x..."},
            "crescendo": [0.6, 1.1]},
    "build": {"beats": 4, "rows": {"snare": "x...x...x.x.xxxx", "kick": "x...x...x...x..."},
              "crescendo": [0.45, 1.15]},
}


_FILLS_ROCK: dict[str, dict] = {
    "pickup": {"beats": 1, "rows": {"snare": "..ox"}, "crescendo": [0.6, 0.85]},
    "short": {"beats": 1, "rows": {"snare": "xx..", "tom_hi": "..x.", "tom_low": "...x"}, "crescendo": [0.8, 1.05]},
    "big": {"beats": 2, "rows": {"snare": "xxxx....", "tom_hi": "....xx..", "tom_low": "......xx", "kick": "x...x.x."},
            "crescendo": [0.75, 1.15]},
    "build": {"beats": 4, "rows": {"snare": "x.x.x.x.xxxxxxxx", "kick": "x...x...x...x..."},
              "crescendo": [0.5, 1.15]},
}


# Compound fills: `beats` are eighths (three a pulse); rows in 16ths.
_FILLS_POP_COMPOUND: dict[str, dict] = {
    "pickup": {"beats": 3, "rows": {"snare": "....oo"}, "crescendo": [0.6, 0.8]},
    "short": {"beats": 3, "rows": {"snare": _eighths("xxx"), "kick": _eighths("x..")}, "crescendo": [0.65, 0.95]},
    "big": {"beats": 6, "rows": {"snare": "x.x.x.xxxxxx", "kick": _eighths("x..x..")}, "crescendo": [0.6, 1.1]},
    "build": {"beats": 6, "rows": {"snare": "x.x.x.x.xxxx", "kick": _eighths("x..x..")}, "crescendo": [0.45, 1.15]},
}


_FILLS_ROCK_COMPOUND: dict[str, dict] = {
    "pickup": {"beats": 3, "rows": {"snare": "....ox"}, "crescendo": [0.6, 0.85]},
    "short": {"beats": 3, "rows": {"snare": "xx....", "tom_hi": "..xx..", "tom_low": "....xx"},
              "crescendo": [0.8, 1.05]},
    "big": {"beats": 6, "rows": {"snare": "xxxxxx......", "tom_hi": "......xxx...", "tom_low": ".........xxx",
                                 "kick": _eighths("x..x..")}, "crescendo": [0.75, 1.15]},
    "build": {"beats": 6, "rows": {"snare": "x.x.x.xxxxxx", "kick": _eighths("x..x..")}, "crescendo": [0.5, 1.15]},
}


def _grooves(**levels: dict[str, str]) -> dict[str, dict[str, str]]:
    """Compound grooves spelled in eighths (12 a 12/8 bar), as 16th patterns."""
    return {level: {row: _eighths(text) for row, text in rows.items()} for level, rows in levels.items()}


_KIT_POP: dict[str, list] = {
    "kick": ["kick", {"f_high": 135.0, "f_low": 50.0, "sweep": 0.04, "t60": 0.4, "click": 0.3}],
    "snare": ["snare", {"tone_hz": 200.0, "noise_t60": 0.3}],
    "hat": ["hihat", {"t60": 0.07, "cutoff": 7500.0}],
    "open_hat": ["hihat", {"t60": 0.5, "cutoff": 6500.0}],
    "crash": ["crash", {"t60": 3.0}],
    "ride": ["ride", {"t60": 1.6}],
    "tom_hi": ["tom", {"pitch_hz": 210.0}],
    "tom_mid": ["tom", {"pitch_hz": 160.0}],
    "tom_low": ["tom", {"pitch_hz": 115.0, "t60": 0.45}],
}


_KIT_ROCK: dict[str, list] = {
    "kick": ["kick", {"f_high": 160.0, "f_low": 52.0, "sweep": 0.035, "t60": 0.45, "click": 0.5, "drive": 2.2}],
    "snare": ["snare", {"tone_hz": 180.0, "noise_t60": 0.4, "noise_mix": 1.0}],
    "hat": ["hihat", {"t60": 0.08, "cutoff": 7000.0}],
    "open_hat": ["hihat", {"t60": 0.6, "cutoff": 6000.0}],
    "crash": ["crash", {"t60": 3.4, "cutoff": 3000.0}],
    "ride": ["ride", {"t60": 2.0, "bell": 0.5}],
    "tom_hi": ["tom", {"pitch_hz": 190.0}],
    "tom_mid": ["tom", {"pitch_hz": 145.0}],
    "tom_low": ["tom", {"pitch_hz": 100.0, "t60": 0.45}],
}


_KIT_GAIN = {"kick": 1.0, "snare": 0.85, "hat": 0.22, "open_hat": 0.2, "crash": 0.38, "ride": 0.2,
             "tom_hi": 0.62, "tom_mid": 0.62, "tom_low": 0.62}


_KIT_PAN = {"kick": 0.0, "snare": 0.03, "hat": 0.3, "open_hat": 0.3, "crash": -0.3, "ride": -0.35,
            "tom_hi": 0.3, "tom_mid": 0.0, "tom_low": -0.3}


_DRUM_FX = [["Compressor", {"threshold_db": -16.0, "ratio": 2.5, "attack_ms": 10.0, "release_ms": 120.0}],
            ["Limiter", {"threshold_db": -5.0, "release_ms": 60.0}]]


# amp: mid push before the clipper; cabinet: band-limit and shape after it
_AMP_AND_CAB = [["HighpassFilter", {"cutoff_frequency_hz": 100.0}],
                ["PeakFilter", {"cutoff_frequency_hz": 800.0, "gain_db": 6.0, "q": 0.7}],
                ["Distortion", {"drive_db": 28.0}],
                ["HighpassFilter", {"cutoff_frequency_hz": 80.0}],
                ["PeakFilter", {"cutoff_frequency_hz": 400.0, "gain_db": -4.0, "q": 1.0}],
                ["PeakFilter", {"cutoff_frequency_hz": 2200.0, "gain_db": 3.0, "q": 1.2}],
                ["LowpassFilter", {"cutoff_frequency_hz": 5200.0}],
                ["LowpassFilter", {"cutoff_frequency_hz": 6500.0}]]


_CLEAN_AMP = [["HighpassFilter", {"cutoff_frequency_hz": 110.0}],
              ["Compressor", {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 5.0, "release_ms": 150.0}],
              ["Chorus", {"rate_hz": 0.6, "depth": 0.15, "mix": 0.3}],
              ["LowpassFilter", {"cutoff_frequency_hz": 7000.0}]]


# Every instrument (a part, one stem): role decides how patterns become notes ("bass", "chords",
# "power" = root-fifth-octave guitar chords, with the third on top of open strums when open_thirds is
# set, "arp" = chord tones by digit); voice is a function in
# millamusic.synth.PITCHED_VOICES; balance is the stem's loudness relative to the drums (LU);
# time_ms the sd of timing humanisation; double: two takes panned hard left/right.
PRESETS: dict[str, dict] = {
    "synth-pop": {
        "genre": "pop",
        "description": "Modern synth-pop: four-on-the-floor chorus, synth bass in eighths, EP stabs, "
                       "pluck arpeggio, warm pad.",
        "swing": 0.0,  # off-beat 16ths late by this fraction of a 16th
        "energy_scale": 1.0,
        "velocity_spread": 0.07,
        "ring": 0.6,  # the final chord rings this fraction of the tail before its release
        "sections": _SECTIONS_UPBEAT,
        "drums": {
            "time_ms": 3.0, "balance": 0.0, "fx": _DRUM_FX, "kit": _KIT_POP, "gain": _KIT_GAIN, "pan": _KIT_PAN,
            "grooves": {
                "intro": {"kick": "x.......x.......", "hat": "..x...x...x...x."},
                "verse": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
                "lift": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "xoxoxoxoxoxoxoxo"},
                "chorus": {"kick": "x...x...x...x...", "snare": "....X.......X...", "hat": "x.O.x.O.x.O.x.O."},
                "breakdown": {"kick": "x...............", "hat": "....x.......x..."},
                "outro": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
            },
            "fills": _FILLS_POP,
            "compound_grooves": _grooves(
                intro={"kick": "x.....x.....", "hat": "..x..x..x..x"},
                verse={"kick": "x....xx.....", "snare": "...x.....x..", "hat": "xxxxxxxxxxxx"},
                lift={"kick": "x..x..x..x..", "snare": "...x.....x..", "hat": "xooxooxooxoo"},
                chorus={"kick": "x..x..x..x..", "snare": "...X.....X..", "hat": "xxOxxOxxOxxO"},
                breakdown={"kick": "x...........", "hat": "...x.....x.."},
                outro={"kick": "x.....x.....", "snare": "...x.....x..", "hat": "xxxxxxxxxxxx"}),
            "compound_fills": _FILLS_POP_COMPOUND,
            "fill_before": {"chorus": "big", "ending": "big", "*": "short"},
            "build_into": "chorus",  # the last bar of a 'lift' section before this kind is a build
            "phrase_fill": {"every": 4, "fill": "pickup"},
        },
        "instruments": {
            "bass": {"role": "bass", "voice": "synth_bass", "program": 38, "low": 28, "balance": -1.0,
                     "params": {"cutoff": 900.0, "env": 2.5}, "time_ms": 3.0, "legato": 0.9, "pan": 0.0,
                     "fx": [["HighpassFilter", {"cutoff_frequency_hz": 32.0}]],
                     "patterns": {"intro": _WHOLE, "verse": "x-.xx-.xx-.xx-.a", "lift": "x.x.x.x.x.x.x.xa",
                                  "chorus": "x.xux.xux.xux.xa", "breakdown": _WHOLE, "outro": _HALVES},
                     "compound_patterns": {"intro": _C_WHOLE, "verse": _eighths("x-xx-xx-xx-a", hold=True),
                                           "lift": _eighths("xxxxxxxxxxxa"), "chorus": _eighths("x.ux.ux.ux.a"),
                                           "breakdown": _C_WHOLE, "outro": _C_HALVES}},
            "keys": {"role": "chords", "voice": "epiano", "program": 4, "range": [53, 76], "spread": 0.5,
                     "balance": -2.5, "time_ms": 6.0, "legato": 0.95, "roll_ms": 8.0,
                     "fx": [["HighpassFilter", {"cutoff_frequency_hz": 120.0}]],
                     "patterns": {"intro": _WHOLE, "verse": "x-----x-------x-", "lift": "x---x---x---x---",
                                  "chorus": "..x...x...x...x.", "breakdown": _WHOLE, "outro": _WHOLE},
                     "compound_patterns": {"intro": _C_WHOLE, "verse": _C_PULSES, "lift": _C_PULSES,
                                           "chorus": _eighths(".xx.xx.xx.xx"), "breakdown": _C_WHOLE,
                                           "outro": _C_WHOLE}},
            "arp": {"role": "arp", "voice": "pluck", "program": 81, "range": [64, 84], "spread": 0.7,
                    "balance": -6.0, "time_ms": 0.0, "legato": 0.7, "params": {"cutoff": 3200.0},
                    "fx": [["HighpassFilter", {"cutoff_frequency_hz": 300.0}]],
                    "patterns": {"intro": "1.2.3.1.2.3.1.2.", "lift": "1.2.3.4.1.2.3.4.",
                                 "chorus": "1.2.3.4.3.2.3.4.", "breakdown": "1...2...3...2..."},
                    "compound_patterns": {"intro": _eighths("123123123123"), "lift": _eighths("123234123234"),
                                          "chorus": _eighths("123432123432"), "breakdown": _eighths("1..2..3..2..")}},
            "pad": {"role": "chords", "voice": "pad", "program": 89, "range": [50, 72], "balance": -7.0,
                    "time_ms": 0.0, "legato": 1.0,
                    "fx": [["LowpassFilter", {"cutoff_frequency_hz": 2200.0}],
                           ["HighpassFilter", {"cutoff_frequency_hz": 150.0}]],
                    "patterns": {"intro": _WHOLE, "lift": _WHOLE, "chorus": _WHOLE, "breakdown": _WHOLE,
                                 "outro": _WHOLE},
                    "compound_patterns": {"intro": _C_WHOLE, "lift": _C_WHOLE, "chorus": _C_WHOLE,
                                          "breakdown": _C_WHOLE, "outro": _C_WHOLE}},
        },
    },
    "piano-ballad": {
        "genre": "pop",
        "description": "Piano ballad: pedalled piano arpeggios, drums only from the pre-chorus, ride in "
                       "the chorus, bass in long notes, string pad.",
        "swing": 0.0,
        "energy_scale": 1.0,
        "velocity_spread": 0.06,
        "ring": 0.7,
        "sections": _SECTIONS_BALLAD,
        "drums": {
            "time_ms": 4.0, "balance": -1.0, "fx": _DRUM_FX, "kit": _KIT_POP, "gain": _KIT_GAIN, "pan": _KIT_PAN,
            "grooves": {
                "verse": {"kick": "x.........x.....", "hat": "..x...x...x...x.", "snare": "........o......."},
                "lift": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
                "chorus": {"kick": "x.....x...x.....", "snare": "........X.......", "ride": "x.x.x.x.x.x.x.x."},
                "outro": {"kick": "x...............", "ride": "x...x...x...x..."},
            },
            "fills": _FILLS_POP,
            # 6/8 ballad: kick on 1, snare (a ghost in the verse) on 4, hats in eighths
            "compound_grooves": _grooves(
                verse={"kick": "x.....x.....", "snare": "...o.....o..", "hat": "xooxooxooxoo"},
                lift={"kick": "x.....x..x..", "snare": "...x.....x..", "hat": "xxxxxxxxxxxx"},
                chorus={"kick": "x....xx.....", "snare": "...X.....X..", "ride": "XxxXxxXxxXxx"},
                outro={"kick": "x...........", "ride": "x..x..x..x.."}),
            "compound_fills": _FILLS_POP_COMPOUND,
            "fill_before": {"chorus": "big", "ending": "big", "*": "short"},
            "build_into": "chorus",
            "phrase_fill": {"every": 8, "fill": "pickup"},
        },
        "instruments": {
            "piano": {"role": "arp", "voice": "piano", "program": 0, "range": [55, 76], "spread": 0.6,
                      "balance": 0.0, "time_ms": 7.0, "legato": 1.0, "pedal": True,
                      "fx": [["HighpassFilter", {"cutoff_frequency_hz": 60.0}]],
                      "patterns": {"intro": "r.1.2.3.4.3.2.1.", "verse": "r.1.2.3.4.3.2.1.",
                                   "lift": "r.1.2.3.r.1.2.3.", "chorus": "x.....x.x.....x.",
                                   "breakdown": "r...1...2...3...", "outro": "r.1.2.3.4.3.2.1."},
                      "compound_patterns": {"intro": _eighths("r12321r12321"), "verse": _eighths("r12321r12321"),
                                            "lift": _eighths("r12312r12312"), "chorus": _eighths("x..x..x..x.."),
                                            "breakdown": _eighths("r..1..2..3.."),
                                            "outro": _eighths("r12321r12321")}},
            "bass": {"role": "bass", "voice": "bass", "program": 33, "low": 28, "balance": -2.5,
                     "params": {"brightness": 0.3, "t60": 3.0, "pick": 0.0}, "time_ms": 5.0, "legato": 0.95,
                     "pan": 0.0,
                     "fx": [["HighpassFilter", {"cutoff_frequency_hz": 32.0}],
                            ["LowpassFilter", {"cutoff_frequency_hz": 1500.0}]],
                     "patterns": {"verse": _WHOLE, "lift": _HALVES, "chorus": "x-------x-----5-",
                                  "breakdown": _WHOLE, "outro": _WHOLE},
                     "compound_patterns": {"verse": _C_WHOLE, "lift": _C_HALVES,
                                           "chorus": _eighths("x-----x--5--", hold=True), "breakdown": _C_WHOLE,
                                           "outro": _C_WHOLE}},
            "pad": {"role": "chords", "voice": "pad", "program": 48, "range": [52, 74], "balance": -6.0,
                    "time_ms": 0.0, "legato": 1.0, "params": {"attack": 0.6, "detune_cents": 6.0},
                    "fx": [["LowpassFilter", {"cutoff_frequency_hz": 2500.0}],
                           ["HighpassFilter", {"cutoff_frequency_hz": 180.0}]],
                    "patterns": {"lift": _WHOLE, "chorus": _WHOLE, "breakdown": _WHOLE, "outro": _WHOLE},
                    "compound_patterns": {"lift": _C_WHOLE, "chorus": _C_WHOLE, "breakdown": _C_WHOLE,
                                          "outro": _C_WHOLE}},
        },
    },
    "driving-rock": {
        "genre": "rock",
        "description": "Driving rock: palm-muted eighths in the verse, open power chords in the chorus, "
                       "double-tracked distorted guitars, picked bass in eighths, ride in the chorus.",
        "swing": 0.0,
        "energy_scale": 1.0,
        "velocity_spread": 0.07,
        "ring": 0.6,
        "sections": _SECTIONS_UPBEAT,
        "drums": {
            "time_ms": 3.0, "balance": 0.0, "fx": _DRUM_FX, "kit": _KIT_ROCK, "gain": _KIT_GAIN, "pan": _KIT_PAN,
            "grooves": {
                "intro": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
                "verse": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
                "lift": {"kick": "x.x.....x.x.....", "snare": "....x.......x...", "hat": "X.x.X.x.X.x.X.x."},
                "chorus": {"kick": "x.x...x.x.x...x.", "snare": "....X.......X...", "ride": "X.x.X.x.X.x.X.x."},
                "breakdown": {"kick": "x.......x.......", "tom_low": "....x.......x..."},
                "outro": {"kick": "x.x.....x.x.....", "snare": "....X.......X...", "hat": "O.x.O.x.O.x.O.x."},
            },
            "fills": _FILLS_ROCK,
            # 12/8 rock: a shuffle of triplet eighths, kick on 1 and 7, snare on 4 and 10
            "compound_grooves": _grooves(
                intro={"kick": "x.....x.x...", "snare": "...x.....x..", "hat": "xxxxxxxxxxxx"},
                verse={"kick": "x....xx.....", "snare": "...x.....x..", "hat": "XxxXxxXxxXxx"},
                lift={"kick": "x.x...x.x...", "snare": "...x.....x..", "hat": "XxxXxxXxxXxx"},
                chorus={"kick": "x....xx.....", "snare": "...X.....X..", "ride": "XxxXxxXxxXxx"},
                breakdown={"kick": "x.....x.....", "tom_low": "...x.....x.."},
                outro={"kick": "x.x...x.x...", "snare": "...X.....X..", "hat": "OxxOxxOxxOxx"}),
            "compound_fills": _FILLS_ROCK_COMPOUND,
            "fill_before": {"chorus": "big", "ending": "big", "*": "short"},
            "build_into": "chorus",
            "phrase_fill": {"every": 4, "fill": "pickup"},
        },
        "instruments": {
            "bass": {"role": "bass", "voice": "bass", "program": 34, "low": 28, "balance": -1.5,
                     "params": {"brightness": 0.6, "t60": 2.0, "pick": 0.25}, "time_ms": 4.0, "legato": 0.85,
                     "pan": 0.0,
                     "fx": [["HighpassFilter", {"cutoff_frequency_hz": 35.0}], ["Distortion", {"drive_db": 6.0}],
                            ["LowpassFilter", {"cutoff_frequency_hz": 2500.0}]],
                     "patterns": {"intro": _WHOLE, "verse": "x-x-x-x-x-x-x-x-", "lift": "x-x-x-x-x-x-x-xa",
                                  "chorus": "X-x-x-x-X-x-x-5-", "breakdown": _WHOLE, "outro": "X-x-x-x-X-x-x-x-"},
                     "compound_patterns": {"intro": _C_WHOLE, "verse": _eighths("x-xx-xx-xx-x", hold=True),
                                           "lift": _eighths("x-xx-xx-xx-a", hold=True),
                                           "chorus": _eighths("X-xx-xX-xx-5", hold=True), "breakdown": _C_WHOLE,
                                           "outro": _eighths("X-xx-xX-xx-x", hold=True)}},
            "guitar": {"role": "power", "voice": "string", "program": 30, "low": 40, "balance": 0.0,
                       "params": {"t60": 3.5, "brightness": 0.8}, "time_ms": 4.0, "legato": 0.95,
                       "double": True, "spread": 0.85, "strum_ms": 7.0, "open_thirds": True, "fx": _AMP_AND_CAB,
                       "patterns": {"intro": _HALVES, "verse": "m-m-m-m-m-m-m-m-", "lift": "x-x-x-x-x-x-x-x-",
                                    "chorus": "X-----x-X-----x-", "breakdown": _WHOLE, "outro": "X-x-x-x-X-x-x-x-"},
                       "compound_patterns": {"intro": _C_HALVES, "verse": _eighths("mmmmmmmmmmmm", hold=True),
                                             "lift": _eighths("xxxxxxxxxxxx", hold=True),
                                             "chorus": _eighths("X--x--X--x--", hold=True), "breakdown": _C_WHOLE,
                                             "outro": _eighths("X-xX-xX-xX-x", hold=True)}},
            "pad": {"role": "chords", "voice": "pad", "program": 89, "range": [52, 74], "balance": -6.0,
                    "time_ms": 0.0, "legato": 1.0,
                    "fx": [["LowpassFilter", {"cutoff_frequency_hz": 1800.0}],
                           ["HighpassFilter", {"cutoff_frequency_hz": 180.0}]],
                    # under palm mutes (no thirds) the pad is what says major or minor
                    "patterns": {"intro": _WHOLE, "verse": _WHOLE, "lift": _WHOLE, "chorus": _WHOLE,
                                 "breakdown": _WHOLE, "outro": _WHOLE},
                    "compound_patterns": {"intro": _C_WHOLE, "verse": _C_WHOLE, "lift": _C_WHOLE,
                                          "chorus": _C_WHOLE, "breakdown": _C_WHOLE, "outro": _C_WHOLE}},
        },
    },
    "power-ballad": {
        "genre": "rock",
        "description": "Power ballad: clean arpeggiated guitar and piano in the verse, half-time drums, "
                       "distorted power chords ringing in the chorus, string pad.",
        "swing": 0.0,
        "energy_scale": 1.0,
        "velocity_spread": 0.06,
        "ring": 0.7,
        "sections": _SECTIONS_BALLAD,
        "drums": {
            "time_ms": 4.0, "balance": 0.0, "fx": _DRUM_FX, "kit": _KIT_ROCK, "gain": _KIT_GAIN, "pan": _KIT_PAN,
            "grooves": {
                "verse": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
                "lift": {"kick": "x.........x.....", "snare": "........x.......", "hat": "X.x.X.x.X.x.X.x."},
                "chorus": {"kick": "x.....x...x.....", "snare": "........X.......", "ride": "X.x.X.x.X.x.X.x."},
                "breakdown": {"kick": "x...............", "hat": "..x...x...x...x."},
                "outro": {"kick": "x.....x...x.....", "snare": "........X.......", "ride": "X.x.X.x.X.x.X.x."},
            },
            "fills": _FILLS_ROCK,
            "compound_grooves": _grooves(
                verse={"kick": "x.....x..x..", "snare": "...x.....x..", "hat": "xooxooxooxoo"},
                lift={"kick": "x.....x..x..", "snare": "...x.....x..", "hat": "XxxXxxXxxXxx"},
                chorus={"kick": "x....xx.....", "snare": "...X.....X..", "ride": "XxxXxxXxxXxx"},
                breakdown={"kick": "x...........", "hat": "..x..x..x..x"},
                outro={"kick": "x....xx.....", "snare": "...X.....X..", "ride": "XxxXxxXxxXxx"}),
            "compound_fills": _FILLS_ROCK_COMPOUND,
            "fill_before": {"chorus": "big", "ending": "big", "*": "short"},
            "build_into": "chorus",
            "phrase_fill": {"every": 8, "fill": "pickup"},
        },
        "instruments": {
            "clean_guitar": {"role": "arp", "voice": "string", "program": 27, "range": [52, 74], "balance": -2.0,
                             "params": {"t60": 2.5, "brightness": 0.55}, "time_ms": 5.0, "legato": 1.0,
                             "pedal": True, "spread": 0.5, "fx": _CLEAN_AMP,
                             "patterns": {"intro": "1.2.3.4.5.4.3.2.", "verse": "1.2.3.4.5.4.3.2.",
                                          "lift": "1.2.3.4.1.2.3.4.", "breakdown": "1.2.3.4.5.4.3.2.",
                                          "outro": "1.2.3.4.5.4.3.2."},
                             "compound_patterns": {"intro": _eighths("123432123432"),
                                                   "verse": _eighths("123432123432"),
                                                   "lift": _eighths("123123123123"),
                                                   "breakdown": _eighths("123432123432"),
                                                   "outro": _eighths("123432123432")}},
            "guitar": {"role": "power", "voice": "string", "program": 30, "low": 40, "balance": 0.0,
                       "params": {"t60": 4.0, "brightness": 0.8}, "time_ms": 4.0, "legato": 0.98,
                       "double": True, "spread": 0.9, "strum_ms": 9.0, "open_thirds": True, "fx": _AMP_AND_CAB,
                       "patterns": {"lift": _HALVES, "chorus": "X-------x-------", "outro": "X-------x-------"},
                       "compound_patterns": {"lift": _C_HALVES, "chorus": _eighths("X-----x-----", hold=True),
                                             "outro": _eighths("X-----x-----", hold=True)}},
            "piano": {"role": "chords", "voice": "piano", "program": 0, "range": [55, 76], "spread": 0.5,
                      "balance": -4.0, "time_ms": 6.0, "legato": 1.0, "roll_ms": 12.0,
                      "fx": [["HighpassFilter", {"cutoff_frequency_hz": 90.0}]],
                      "patterns": {"verse": _HALVES, "lift": _HALVES, "chorus": "x---x---x---x---",
                                   "outro": _WHOLE},
                      "compound_patterns": {"verse": _C_HALVES, "lift": _C_HALVES, "chorus": _C_PULSES,
                                            "outro": _C_WHOLE}},
            "bass": {"role": "bass", "voice": "bass", "program": 34, "low": 28, "balance": -1.5,
                     "params": {"brightness": 0.5, "t60": 2.5, "pick": 0.2}, "time_ms": 4.0, "legato": 0.95,
                     "pan": 0.0,
                     "fx": [["HighpassFilter", {"cutoff_frequency_hz": 35.0}],
                            ["LowpassFilter", {"cutoff_frequency_hz": 2000.0}]],
                     "patterns": {"verse": _WHOLE, "lift": _HALVES, "chorus": "x-------x---x-a-",
                                  "breakdown": _WHOLE, "outro": "x-------x-------"},
                     "compound_patterns": {"verse": _C_WHOLE, "lift": _C_HALVES,
                                           "chorus": _eighths("x-----x--x-a", hold=True), "breakdown": _C_WHOLE,
                                           "outro": _C_HALVES}},
            "pad": {"role": "chords", "voice": "pad", "program": 48, "range": [52, 74], "balance": -7.0,
                    "time_ms": 0.0, "legato": 1.0, "params": {"attack": 0.6, "detune_cents": 6.0},
                    "fx": [["LowpassFilter", {"cutoff_frequency_hz": 2200.0}],
                           ["HighpassFilter", {"cutoff_frequency_hz": 180.0}]],
                    "patterns": {"intro": _WHOLE, "chorus": _WHOLE, "breakdown": _WHOLE, "outro": _WHOLE},
                    "compound_patterns": {"intro": _C_WHOLE, "chorus": _C_WHOLE, "breakdown": _C_WHOLE,
                                          "outro": _C_WHOLE}},
        },
    },
}


# Which preset a genre gets, and the style words (spec `style:`) that pick another one.
GENRE_DEFAULT: dict[str, str] = {"pop": "synth-pop", "rock": "driving-rock"}


PRESET_WORDS: dict[str, dict[str, str]] = {
    "pop": {"synth-pop": "synth-pop", "synthpop": "synth-pop", "electropop": "synth-pop",
            "piano ballad": "piano-ballad", "piano-ballad": "piano-ballad", "ballad": "piano-ballad",
            "piano": "piano-ballad"},
    "rock": {"driving rock": "driving-rock", "driving-rock": "driving-rock", "power ballad": "power-ballad",
             "power-ballad": "power-ballad", "ballad": "power-ballad", "anthem": "power-ballad"},
}


# Style words that tweak whichever preset was picked (deep-merged over it, in the order given).
STYLE_MODS: dict[str, dict] = {
    "soft": {"energy_scale": 0.88},
    "gentle": {"energy_scale": 0.88},
    "dreamy": {"energy_scale": 0.9},
    "driving": {"energy_scale": 1.05},
    "energetic": {"energy_scale": 1.05},
    "swing": {"swing": 0.25},
    "shuffle": {"swing": 0.33},
    "laid-back": {"swing": 0.12},
}
