"""Write a tiny but valid SoundFont 2.01 file for tests: one looping sine, playable on every program.

Layout (SoundFont 2.01 spec, sections 4 to 7; all integers little-endian):

    RIFF 'sfbk'
      LIST 'INFO'  ifil (version 2.01), isng (sound engine), INAM (bank name)
      LIST 'sdta'  smpl (16-bit signed mono samples)
      LIST 'pdta'  phdr pbag pmod pgen  inst ibag imod igen  shdr

Each pdta sub-chunk is an array of fixed-size records that ends with a terminal record
(EOP, EOI, EOS, or all zeros); the terminal record's index fields give the array lengths
of the next level down, so a reader can find where the last real zone ends.

By default the font has bank 0 programs 0..127 and the drum kit at bank 128 program 0, so it
plays every General MIDI part; every preset points at the same sine instrument.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

# Generator numbers (spec section 8.1.2) that this file uses.
GEN_RELEASE_VOL_ENV = 38  # timecents
GEN_INSTRUMENT = 41  # preset zones: index into inst; must be the zone's last generator
GEN_KEY_RANGE = 43  # lo, hi bytes; must be the zone's first generator
GEN_SAMPLE_ID = 53  # instrument zones: index into shdr; must be the zone's last generator
GEN_SAMPLE_MODES = 54  # 1 = loop continuously
GEN_OVERRIDING_ROOT_KEY = 58

MONO_SAMPLE = 1  # SFSampleLink
ZERO_PAD_POINTS = 46  # the spec wants at least 46 zero samples after every sample
DRUM_BANK = 128


def _chunk(ck_id: bytes, data: bytes) -> bytes:
    """One RIFF chunk; odd sizes get a pad byte that the size does not count."""
    pad = b"\0" if len(data) % 2 else b""
    return ck_id + struct.pack("<I", len(data)) + data + pad


def _list(list_type: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", list_type + b"".join(chunks))


def _zstr(text: str) -> bytes:
    """INFO strings are zero-terminated and padded to an even length."""
    data = text.encode("ascii") + b"\0"
    return data + b"\0" * (len(data) % 2)


def _name20(text: str) -> bytes:
    """Record names are 20 bytes, zero-padded."""
    return text.encode("ascii")[:19].ljust(20, b"\0")


def _gen(oper: int, amount: int) -> bytes:
    return struct.pack("<Hh", oper, amount)


def _gen_range(oper: int, lo: int, hi: int) -> bytes:
    return struct.pack("<HBB", oper, lo, hi)


def _bag(gen_index: int, mod_index: int) -> bytes:
    return struct.pack("<HH", gen_index, mod_index)


def _preset(name: str, program: int, bank: int, bag_index: int) -> bytes:
    # achPresetName, wPreset, wBank, wPresetBagNdx, dwLibrary, dwGenre, dwMorphology: 38 bytes
    return _name20(name) + struct.pack("<HHHIII", program, bank, bag_index, 0, 0, 0)


def _instrument(name: str, bag_index: int) -> bytes:
    return _name20(name) + struct.pack("<H", bag_index)  # 22 bytes


def _sample_header(name: str, start: int, end: int, loop_start: int, loop_end: int, sample_rate: int,
                   root_key: int, correction_cents: int, sample_type: int) -> bytes:
    # achSampleName, dwStart, dwEnd, dwStartloop, dwEndloop, dwSampleRate,
    # byOriginalPitch, chPitchCorrection, wSampleLink, sfSampleType: 46 bytes
    return _name20(name) + struct.pack("<IIIIIBbHH", start, end, loop_start, loop_end, sample_rate,
                                       root_key, correction_cents, 0, sample_type)


NO_MODULATOR = b"\0" * 10  # sfModList record; also the pmod/imod terminal record


def _loop_cycle(sample_rate: int, frequency: float) -> tuple[int, int]:
    """(cycles, points): a loop of whole sine cycles that is a whole number of sample points.

    44.1 kHz at 440 Hz gives exactly 22 cycles in 2205 points. Other pairs take the best fit
    below 4096 points; the small detune that leaves is put back with the pitch correction.
    """
    best = (1, max(32, round(sample_rate / frequency)))
    best_error = math.inf
    for cycles in range(1, 400):
        points = round(cycles * sample_rate / frequency)
        if points < 32:  # the spec's shortest loop
            continue
        if points > 4096:
            break
        error = abs(points - cycles * sample_rate / frequency) / points
        if error < best_error - 1e-12:
            best, best_error = (cycles, points), error
        if error == 0:
            break
    return best


ALL_PRESETS = tuple((0, program) for program in range(128)) + ((DRUM_BANK, 0),)


def write_sine_soundfont(path: Path | str, *, sample_rate: int = 44100, root_key: int = 69,
                         seconds: float = 1.0, presets: tuple[tuple[int, int], ...] = ALL_PRESETS) -> Path:
    """Write a SoundFont whose every preset plays a looping sine, in tune (root 69 = 440 Hz).

    `presets`: the (bank, program) slots it has; leave some out to test a font that lacks them.
    """
    path = Path(path)
    frequency = 440.0 * 2.0 ** ((root_key - 69) / 12)
    cycles, loop_points = _loop_cycle(sample_rate, frequency)
    stored_frequency = cycles * sample_rate / loop_points  # what the stored points really are
    correction = round(1200 * math.log2(frequency / stored_frequency))  # cents, within the field's +-99
    if abs(correction) > 99:
        raise ValueError(f"no whole-cycle loop for {frequency:.2f} Hz at {sample_rate} Hz")

    # A whole number of loops, at least 3: one before the loop and one after it, so the points
    # around both loop ends are the same continuous sine (the spec asks for 8 on each side).
    loops = max(3, math.ceil(seconds * sample_rate / loop_points))
    n = loops * loop_points
    t = np.arange(n)
    wave = np.round(0.5 * 32767 * np.sin(2 * np.pi * cycles * t / loop_points)).astype("<i2")
    smpl = wave.tobytes() + b"\0\0" * ZERO_PAD_POINTS
    loop_start, loop_end = loop_points, n - loop_points  # loop_end is the first point after the loop

    # Instrument: one zone over all keys and velocities, looping, with a short release so
    # notes end without a click.
    igen = [
        _gen_range(GEN_KEY_RANGE, 0, 127),
        _gen(GEN_SAMPLE_MODES, 1),
        _gen(GEN_OVERRIDING_ROOT_KEY, root_key),
        _gen(GEN_RELEASE_VOL_ENV, -5186),  # 1200 * log2(0.05 s)
        _gen(GEN_SAMPLE_ID, 0),
    ]
    inst = [_instrument("Sine", 0), _instrument("EOI", 1)]
    ibag = [_bag(0, 0), _bag(len(igen), 0)]
    imod = [NO_MODULATOR]
    igen.append(b"\0" * 4)

    # Presets: one zone each, all on instrument 0.
    slots = list(presets)
    phdr = [_preset(f"Sine {bank}:{program}", program, bank, i) for i, (bank, program) in enumerate(slots)]
    pbag = [_bag(i, 0) for i in range(len(slots))]
    pgen = [_gen(GEN_INSTRUMENT, 0) for _ in slots]
    phdr.append(_preset("EOP", 0, 0, len(pbag)))
    pbag.append(_bag(len(pgen), 0))
    pmod = [NO_MODULATOR]
    pgen.append(b"\0" * 4)

    shdr = [
        _sample_header("Sine", 0, n, loop_start, loop_end, sample_rate, root_key, correction, MONO_SAMPLE),
        _sample_header("EOS", 0, 0, 0, 0, 0, 0, 0, 0),
    ]

    info = _list(b"INFO",
                 _chunk(b"ifil", struct.pack("<HH", 2, 1)),
                 _chunk(b"isng", _zstr("EMU8000")),
                 _chunk(b"INAM", _zstr("millamusic test sine")))
    sdta = _list(b"sdta", _chunk(b"smpl", smpl))
    pdta = _list(b"pdta", *(_chunk(ck_id, b"".join(records)) for ck_id, records in [
        (b"phdr", phdr), (b"pbag", pbag), (b"pmod", pmod), (b"pgen", pgen),
        (b"inst", inst), (b"ibag", ibag), (b"imod", imod), (b"igen", igen),
        (b"shdr", shdr),
    ]))
    path.write_bytes(_chunk(b"RIFF", b"sfbk" + info + sdta + pdta))
    return path
