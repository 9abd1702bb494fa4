"""Delivery files (src/millamusic/export.py): WAV/FLAC/MP3/LRC, tags read back with mutagen."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct

import numpy as np
import pytest
import soundfile as sf

import millamusic.release.mp3 as mp3_module
from millamusic.core.audio import Audio
from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_path, atomic_write_bytes
from millamusic.dsp.loudness import measure
from millamusic.release.flac import write_flac
from millamusic.release.lyric_files import TimedLine, TimedWord, lrc_text, sylt_words, timed_lines_problems, write_lrc
from millamusic.release.lyric_files import seconds_to_ms as _ms
from millamusic.release.mp3 import write_mp3, write_mp3_under
from millamusic.release.pcm import check_wav_delivery, decode, write_wav
from millamusic.release.tags import ReleaseTags
from millamusic.release.ttml import parse_ttml, read_ttml, song_part, ttml_text, write_ttml
from millamusic.spec.artwork import validate_cover
from tests.signals import pop_mix, two_tone_mix, white_noise

RATE = 44100


def png_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    im = Image.new("RGB", (w, h), (200, 40, 90))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def audio() -> Audio:
    return two_tone_mix(6.0, rate=RATE)


@pytest.fixture(scope="module")
def cover() -> bytes:
    return png_bytes(1400, 1400)


@pytest.fixture(scope="module")
def tags(cover) -> ReleaseTags:
    credits = [
        {"stage": "lyrics", "tool": "template-grammar", "ai": True},
        {"stage": "vocals", "tool": "espeak-ng + WORLD", "ai": True},
    ]
    return ReleaseTags(
        title="Neon Rain — Ünïcödé",
        artist="Milla",
        album="First Light",
        album_artist="Milla",
        track_number=3,
        track_total=11,
        disc_number=1,
        year=2025,
        genre="Pop Rock",
        isrc="QZ-ABC-25-00001",
        upc="0-12345-67890-5",
        composer="millamusic (AI)",
        lyricist="millamusic (AI)",
        copyright="2025 Milla Records",
        label="Milla Records",
        producer="millamusic pipeline",
        cover_image=cover,
        cover_mime="image/png",
        lyrics_text="First line\nSecond line\n",
        synced_lyrics=((1.5, "First line"), (4.25, "Second line")),
        synced_lrc="[00:01.50]First line\n[00:04.25]Second line\n",
        disclosure="Milla is a virtual artist. Music, vocals and lyrics of this track were made with AI tools.",
        contains_ai="All",
        digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic",
        ai_credits_json=json.dumps(credits),
    )


# ------------------------------------------------------------------ WAV


def chunk_ids(path) -> list[bytes]:
    data = path.read_bytes()
    ids, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI", data[pos : pos + 8])
        ids.append(cid)
        pos += 8 + size + (size & 1)
    return ids


def test_wav_24bit_delivery(tmp_path, audio):
    path = write_wav(audio, tmp_path / "song.wav")
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (RATE, 2, "PCM_24", "WAV")
    raw = path.read_bytes()
    assert struct.unpack("<H", raw[20:22])[0] == 1  # WAVE_FORMAT_PCM, not extensible
    assert chunk_ids(path) == [b"fmt ", b"data"]
    assert check_wav_delivery(path, sample_rate=RATE, channels=2, bit_depth=24) == []
    back, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == RATE and back.shape == (audio.frames, 2)
    assert np.max(np.abs(back.T - audio.samples)) <= 1.0 / (1 << 23) + 1e-9
    assert list(tmp_path.iterdir()) == [path]  # no temp files left


@pytest.mark.parametrize("bits", [24, 16])
def test_wav_header_is_the_canonical_44_bytes(tmp_path, audio, bits):
    # Byte for byte: RIFF <size> WAVE, 'fmt ' 16 (PCM=1, 2 ch, rate, byte rate, align, bits), 'data' <size>,
    # then exactly frames x channels x bytes of samples and nothing after them.
    path = write_wav(audio, tmp_path / "song.wav", bit_depth=bits)
    raw = path.read_bytes()
    width = bits // 8
    data_size = audio.frames * 2 * width
    expected = (b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, RATE, RATE * 2 * width, 2 * width, bits)
                + b"data" + struct.pack("<I", data_size))
    assert raw[:44] == expected
    assert len(raw) == 44 + data_size
    # the first frame's samples, little-endian two's complement, left then right
    first = np.round(audio.samples[:, 0].astype(np.float64) * (1 << (bits - 1)))
    if bits == 24:
        assert raw[44:47] == int(first[0]).to_bytes(3, "little", signed=True)
        assert raw[47:50] == int(first[1]).to_bytes(3, "little", signed=True)


def test_wav_16bit_is_dithered_and_plain(tmp_path, audio):
    path = write_wav(audio, tmp_path / "cd.wav", bit_depth=16)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert check_wav_delivery(path, bit_depth=16) == []
    back, _ = sf.read(str(path), dtype="float32", always_2d=True)
    err = back.T - audio.samples
    assert 0.3 / 32768 < np.std(err) < 1.0 / 32768  # TPDF: ~0.5 LSB rms error, not 0.29 LSB of rounding
    again = write_wav(audio, tmp_path / "cd2.wav", bit_depth=16)
    assert again.read_bytes() == path.read_bytes()  # deterministic


def test_wav_clips_instead_of_wrapping(tmp_path):
    x = np.array([[0.5, 1.5, -2.0, 1.0]] * 2, dtype=np.float32)
    path = write_wav(Audio(x, RATE), tmp_path / "hot.wav")
    back, _ = sf.read(str(path), dtype="int32", always_2d=True)
    assert list(back[:, 0] >> 8) == [1 << 22, (1 << 23) - 1, -(1 << 23), (1 << 23) - 1]


def append_chunk(path, cid: bytes, body: bytes) -> None:
    data = bytearray(path.read_bytes())
    data += struct.pack("<4sI", cid, len(body)) + body + (b"\0" if len(body) % 2 else b"")
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_check_wav_reports_trailing_chunks(tmp_path, audio):
    path = write_wav(audio, tmp_path / "tagged.wav")
    append_chunk(path, b"LIST", b"INFOINAM\x06\x00\x00\x00Title\x00")
    append_chunk(path, b"id3 ", b"ID3\x04\x00\x00\x00\x00\x00\x00")
    problems = check_wav_delivery(path)
    text = "\n".join(problems)
    assert "b'LIST'" in text and "b'id3 '" in text and "after the data chunk" in text


def test_check_wav_reports_format_and_structure_problems(tmp_path, audio):
    # float WAV: format tag 3
    path = tmp_path / "float.wav"
    sf.write(str(path), audio.samples.T, RATE, subtype="FLOAT", format="WAV")
    assert any("format tag is 0x0003" in p for p in check_wav_delivery(path))
    # WAVE_FORMAT_EXTENSIBLE
    path = tmp_path / "ext.wav"
    sf.write(str(path), audio.samples.T, RATE, subtype="PCM_24", format="WAVEX")
    assert any("0xFFFE" in p for p in check_wav_delivery(path))
    # odd-sized trailing chunk without its pad byte, and a truncated file
    good = write_wav(audio, tmp_path / "good.wav")
    raw = good.read_bytes()
    odd = tmp_path / "odd.wav"
    odd.write_bytes(raw + struct.pack("<4sI", b"junk", 3) + b"abc")
    problems = check_wav_delivery(odd)
    assert any("odd size 3" in p for p in problems) and any("RIFF size" in p for p in problems)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[:-1000])
    assert any("truncated" in p for p in check_wav_delivery(cut))
    notwav = tmp_path / "not.wav"
    notwav.write_bytes(b"ID3\x04" + b"\0" * 100)
    assert any("not a RIFF" in p for p in check_wav_delivery(notwav))
    assert check_wav_delivery(good, sample_rate=48000) == ["sample rate is 44100 Hz, expected 48000"]


# ------------------------------------------------------------------ FLAC


def test_flac_tags_round_trip(tmp_path, audio, tags, cover):
    from mutagen.flac import FLAC

    path = write_flac(audio, tmp_path / "song.flac", tags)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_24")
    back, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert np.max(np.abs(back.T - audio.samples)) <= 1.0 / (1 << 23) + 1e-9
    f = FLAC(path)
    expect = {
        "TITLE": tags.title, "ARTIST": "Milla", "ALBUM": "First Light", "ALBUMARTIST": "Milla",
        "TRACKNUMBER": "3", "TRACKTOTAL": "11", "DISCNUMBER": "1", "DATE": "2025", "GENRE": "Pop Rock",
        "ISRC": "QZABC2500001", "COMPOSER": tags.composer, "LYRICIST": tags.lyricist,
        "COPYRIGHT": tags.copyright, "LABEL": "Milla Records", "ORGANIZATION": "Milla Records",
        "PRODUCER": tags.producer, "LYRICS": tags.lyrics_text, "AI_DISCLOSURE": tags.disclosure,
        "CONTAINS_AI": "All", "DIGITAL_SOURCE_TYPE": tags.digital_source_type,
        "AI_CREDITS": tags.ai_credits_json, "BARCODE": "012345678905", "SYNCEDLYRICS": tags.synced_lrc,
    }
    for key, value in expect.items():
        assert f.tags[key] == [value], key
    assert json.loads(f.tags["AI_CREDITS"][0])[1]["stage"] == "vocals"
    (pic,) = f.pictures
    assert (pic.type, pic.mime, pic.width, pic.height) == (3, "image/png", 1400, 1400)
    assert pic.data == cover
    assert list(tmp_path.iterdir()) == [path]


# ------------------------------------------------------------------ MP3


@pytest.mark.parametrize("mode", ["cbr320", "v0"])
def test_mp3_tags_round_trip(tmp_path, audio, tags, cover, mode):
    from mutagen.id3 import ID3
    from mutagen.mp3 import MP3, BitrateMode
    from pedalboard.io import AudioFile

    path = write_mp3(audio, tmp_path / "song.mp3", tags, mode=mode)
    mp3 = MP3(path)
    if mode == "cbr320":
        assert abs(mp3.info.bitrate - 320000) < 1000 and mp3.info.bitrate_mode == BitrateMode.CBR
    else:
        assert mp3.info.bitrate_mode == BitrateMode.VBR
    assert mp3.info.sample_rate == RATE and mp3.info.channels == 2
    id3 = ID3(path)
    assert id3.version == (2, 4, 0)
    texts = {
        "TIT2": tags.title, "TPE1": "Milla", "TPE2": "Milla", "TALB": "First Light", "TRCK": "3/11",
        "TPOS": "1", "TCON": "Pop Rock", "TSRC": "QZABC2500001", "TCOM": tags.composer,
        "TEXT": tags.lyricist, "TCOP": tags.copyright, "TPUB": "Milla Records",
    }
    for frame, value in texts.items():
        assert id3[frame].text == [value], frame
    assert str(id3["TDRC"].text[0]) == "2025"
    assert id3["TIPL"].people == [["producer", tags.producer]]
    (apic,) = id3.getall("APIC")
    assert (apic.type, apic.mime, apic.data) == (3, "image/png", cover)
    (uslt,) = id3.getall("USLT")
    assert (uslt.lang, uslt.text) == ("eng", tags.lyrics_text)
    (sylt,) = id3.getall("SYLT")
    assert (sylt.lang, sylt.format, sylt.type) == ("eng", 2, 1)
    assert list(sylt.text) == [("First line", 1500), ("Second line", 4250)]
    for desc, value in (
        ("AI_DISCLOSURE", tags.disclosure),
        ("CONTAINS_AI", "All"),
        ("DIGITAL_SOURCE_TYPE", tags.digital_source_type),
        ("AI_CREDITS", tags.ai_credits_json),
    ):
        assert id3[f"TXXX:{desc}"].text == [value], desc
    assert id3.getall("COMM")[0].text == [tags.disclosure]
    with AudioFile(str(path)) as f:
        assert f.samplerate == RATE and f.num_channels == 2
        assert abs(f.frames / f.samplerate - audio.seconds) < 0.1
        decoded = f.read(f.frames)
    rms_in = float(np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2)))
    rms_out = float(np.sqrt(np.mean(decoded.astype(np.float64) ** 2)))
    assert abs(20 * np.log10(rms_out / rms_in)) < 0.2  # it is our audio, at our level
    assert list(tmp_path.iterdir()) == [path]


def test_mp3_bad_mode(tmp_path, audio, tags):
    with pytest.raises(ExportError, match="mode"):
        write_mp3(audio, tmp_path / "x.mp3", tags, mode="v9")
    with pytest.raises(ExportError, match="LAME CBR"):
        write_mp3(audio, tmp_path / "x.mp3", tags, bitrate="333")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ tags


def test_release_tags_validation(tags):
    import dataclasses

    with pytest.raises(ExportError, match="disclosure is empty"):
        dataclasses.replace(tags, disclosure="  ")
    with pytest.raises(ExportError, match="contains_ai"):
        dataclasses.replace(tags, contains_ai="yes")
    with pytest.raises(ExportError, match="IPTC"):
        dataclasses.replace(tags, digital_source_type="synthetic")
    with pytest.raises(ExportError, match="JSON"):
        dataclasses.replace(tags, ai_credits_json="{not json")
    with pytest.raises(ExportError, match="isrc"):
        dataclasses.replace(tags, isrc="XX123")
    with pytest.raises(ExportError, match="strictly increasing"):
        dataclasses.replace(tags, synced_lyrics=((2.0, "a"), (1.0, "b")))
    with pytest.raises(ExportError, match="cover_mime"):
        dataclasses.replace(tags, cover_mime="image/gif")


# ------------------------------------------------------------------ cover


def test_validate_cover(tmp_path):
    ok = tmp_path / "ok.png"
    ok.write_bytes(png_bytes(1400, 1400))
    data, mime = validate_cover(ok)
    assert mime == "image/png" and data == ok.read_bytes()
    jpg = tmp_path / "ok.jpg"
    jpg.write_bytes(png_bytes(1500, 1500, "JPEG"))
    assert validate_cover(jpg)[1] == "image/jpeg"

    wide = tmp_path / "wide.png"
    wide.write_bytes(png_bytes(1600, 1400))
    with pytest.raises(ExportError, match=r"wide\.png is 1600x1400 px.*not square.*Fix"):
        validate_cover(wide)
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(1000, 1000))
    with pytest.raises(ExportError, match=r"small\.png is 1000x1000 px.*under the 1400x1400.*Fix"):
        validate_cover(small)
    gif = tmp_path / "c.gif"
    gif.write_bytes(png_bytes(1400, 1400, "GIF"))
    with pytest.raises(ExportError, match="GIF.*JPEG or PNG"):
        validate_cover(gif)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ExportError, match="not a readable image"):
        validate_cover(junk)
    with pytest.raises(ExportError, match="cannot be read"):
        validate_cover(tmp_path / "missing.png")


# ------------------------------------------------------------------ LRC

LRC_LINE = re.compile(r"^\[(\d{2,}):(\d{2})\.(\d{2})\](.*)$")


def test_lrc_round_trip(tmp_path):
    lines = [(0.0, "Intro"), (1.234, "Neon rain"), (61.5, "Über alles"), (3599.99, "last")]
    path = write_lrc(lines, tmp_path / "song.lrc", title="Neon Rain", artist="Milla", album="First Light",
                       length_seconds=205.4)
    text = path.read_text(encoding="utf-8")
    head = text.splitlines()[:4]
    assert head == ["[ti:Neon Rain]", "[ar:Milla]", "[al:First Light]", "[length:03:25]"]
    parsed = []
    for row in text.splitlines()[4:]:
        m = LRC_LINE.match(row)
        assert m, row
        parsed.append((int(m[1]) * 60 + int(m[2]) + int(m[3]) / 100, m[4]))
    assert [p[1] for p in parsed] == [l[1] for l in lines]
    for (t_back, _), (t, _) in zip(parsed, lines):
        assert abs(t_back - t) <= 0.005 + 1e-9
    assert "[00:01.23]Neon rain" in text and "[01:01.50]Über alles" in text and "[59:59.99]last" in text


@pytest.mark.parametrize(
    "lines",
    [
        [(1.0, "a"), (1.0, "b")],
        [(2.0, "a"), (1.0, "b")],
        [(1.001, "a"), (1.004, "b")],  # equal after rounding to centiseconds
        [(-0.5, "a")],
    ],
)
def test_lrc_rejects_non_increasing(tmp_path, lines):
    with pytest.raises(ExportError):
        write_lrc(lines, tmp_path / "bad.lrc", title="t", artist="a")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ atomic writes


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            assert tmp.parent == tmp_path and tmp.name.endswith(".bin")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_failure_keeps_old_file(tmp_path, audio, tags, monkeypatch):
    target = tmp_path / "song.mp3"
    atomic_write_bytes(target, b"old release")

    def broken(_tags):
        raise RuntimeError("tagging crashed")

    monkeypatch.setattr(mp3_module, "id3_tags", broken)  # fails after the encoder wrote the temp file
    with pytest.raises(RuntimeError, match="tagging crashed"):
        write_mp3(audio, target, tags)
    assert target.read_bytes() == b"old release"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "sub" / "x.txt"
    atomic_write_bytes(target, b"hello")
    atomic_write_bytes(target, b"world")
    assert target.read_bytes() == b"world"
    assert list(target.parent.iterdir()) == [target]


# ------------------------------------------------------------------ word-synced lyrics (LRC, TTML, SYLT)

W = TimedWord

SONG = [
    TimedLine("Hämärä yö saapuu", 1.0, 3.2, (W("Hämärä", 1.0, 1.8), W("yö", 1.9, 2.4), W("saapuu", 2.5, 3.2)),
                "Verse 1"),
    TimedLine("Stjärnorna lyser, ljust", 4.0, 6.05,
                (W("Stjärnorna", 4.0, 5.0), W("lyser", 5.1, 5.5), W("ljust", 5.6, 6.05)), "Chorus"),
]


def no_temp_files(folder, *expected) -> bool:
    return sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in expected)


def test_enhanced_lrc_exact_text(tmp_path):
    path = write_lrc(SONG, tmp_path / "song.lrc", title="Yö", artist="Milla", length_seconds=7.0)
    assert path.read_bytes().decode("utf-8") == (
        "[ti:Yö]\n"
        "[ar:Milla]\n"
        "[length:00:07]\n"
        "[00:01.00]<00:01.00>Hämärä <00:01.90>yö <00:02.50>saapuu<00:03.20>\n"
        "[00:04.00]<00:04.00>Stjärnorna <00:05.10>lyser, <00:05.60>ljust<00:06.05>\n"
    )
    plain = write_lrc(SONG, tmp_path / "plain.lrc", title="Yö", artist="Milla", words=False)
    assert plain.read_text(encoding="utf-8").splitlines()[2:] == [
        "[00:01.00]Hämärä yö saapuu", "[00:04.00]Stjärnorna lyser, ljust"]
    assert no_temp_files(tmp_path, path, plain)


def test_enhanced_lrc_syllables_punctuation_and_untimed_lines():
    lines = [
        TimedLine("(Oh) tonight, “we run”", 0.5, 2.0,
                    (W("Oh", 0.5, 0.7), W("to", 0.8, 1.0), W("night", 1.0, 1.3), W("we", 1.4, 1.6), W("run", 1.6, 2.0))),
        TimedLine("no word timing here", 2.5, 4.0),
    ]
    text = lrc_text(lines, title="t", artist="a")
    assert text.splitlines()[2:] == [
        "[00:00.50]<00:00.50>(Oh) <00:00.80>to<00:01.00>night, <00:01.40>“we <00:01.60>run”<00:02.00>",
        "[00:02.50]no word timing here",
    ]
    with pytest.raises(ExportError, match="TimedLine"):
        lrc_text([(1.0, "a")], title="t", artist="a", words=True)
    with pytest.raises(ExportError, match="mix"):
        lrc_text([(0.5, "a"), SONG[0]], title="t", artist="a")


def test_ttml_round_trip_times_and_words(tmp_path):
    lines = [
        TimedLine("Hämärä yö saapuu", 1.234, 3.21, (W("Hämärä", 1.234, 1.801), W("yö", 1.9, 2.4), W("saapuu", 2.5, 3.21)),
                    "Verse 1"),
        TimedLine("yö laskeutuu", 3.5, 4.75, (W("yö", 3.5, 3.9), W("laskeutuu", 3.9, 4.75)), "Verse 1"),
        TimedLine("Stjärnorna lyser, ljust", 61.0005, 3725.5,
                    (W("Stjärnorna", 61.001, 62.0), W("lyser", 62.1, 62.5), W("ljust", 62.6, 3725.5)), "Pre-Chorus"),
    ]
    path = write_ttml(lines, tmp_path / "song.ttml", title="Yö", artist="Milla", language="fi")
    back = read_ttml(path)
    assert [line.text for line in back] == [line.text for line in lines]
    assert [line.section for line in back] == ["Verse", "Verse", "PreChorus"]
    for got, sent in zip(back, lines):
        assert (_ms(got.start), _ms(got.end)) == (_ms(sent.start), _ms(sent.end))
        assert [(_ms(w.start), _ms(w.end)) for w in got.words] == \
               [(_ms(w.start), _ms(w.end)) for w in sent.words]
    # word texts come back as printed: the line's text cut at the word starts, punctuation kept
    assert [[w.text for w in line.words] for line in back] == [
        ["Hämärä", "yö", "saapuu"], ["yö", "laskeutuu"], ["Stjärnorna", "lyser,", "ljust"]]
    assert back[0].words[0].start == 1.234 and back[2].end == 3725.5
    assert path.read_text(encoding="utf-8").count("<div ") == 2  # consecutive lines of one section share a div
    assert timed_lines_problems(back) == []
    assert 'begin="01:02:05.500"' not in path.read_text(encoding="utf-8")  # 3725.5 s is 1 h 2 min 5.5 s
    assert 'end="01:02:05.500"' in path.read_text(encoding="utf-8")
    # reading back and writing again gives the same document
    again = write_ttml(back, tmp_path / "again.ttml", title="Yö", artist="Milla", language="fi")
    assert read_ttml(again) == back
    assert no_temp_files(tmp_path, path, again)


def test_ttml_document_shape(tmp_path):
    import xml.etree.ElementTree as ET

    path = write_ttml(SONG, tmp_path / "song.ttml", title="Yö", artist="Milla", language="fi",
                        length_seconds=205.4)
    raw = path.read_bytes()
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<tt ')  # no BOM
    text = raw.decode("utf-8")
    assert ('<tt xmlns="http://www.w3.org/ns/ttml" xmlns:itunes="http://music.apple.com/lyric-ttml-internal" '
            'xmlns:ttm="http://www.w3.org/ns/ttml#metadata" itunes:timing="Word" xml:lang="fi">') in text
    root = ET.fromstring(raw)  # well-formed
    tt, ttm, it = "{http://www.w3.org/ns/ttml}", "{http://www.w3.org/ns/ttml#metadata}", \
        "{http://music.apple.com/lyric-ttml-internal}"
    assert root.tag == tt + "tt"
    assert root.get(it + "timing") == "Word"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "fi"
    assert root.find(f"{tt}head/{tt}metadata/{ttm}title").text == "Yö"
    agent = root.find(f"{tt}head/{tt}metadata/{ttm}agent")
    assert agent.get("{http://www.w3.org/XML/1998/namespace}id") == "v1" and agent.find(ttm + "name").text == "Milla"
    body = root.find(tt + "body")
    assert body.get("dur") == "00:03:25.400"
    divs = body.findall(tt + "div")
    assert [(d.get("begin"), d.get("end"), d.get(it + "songPart")) for d in divs] == [
        ("00:00:01.000", "00:00:03.200", "Verse"), ("00:00:04.000", "00:00:06.050", "Chorus")]
    p = divs[0].find(tt + "p")
    assert (p.get("begin"), p.get("end"), p.get(it + "key"), p.get(ttm + "agent")) == \
           ("00:00:01.000", "00:00:03.200", "L1", "v1")
    spans = p.findall(tt + "span")
    assert [(s.get("begin"), s.get("end"), s.text, s.tail) for s in spans] == [
        ("00:00:01.000", "00:00:01.800", "Hämärä", " "),
        ("00:00:01.900", "00:00:02.400", "yö", " "),
        ("00:00:02.500", "00:00:03.200", "saapuu", None),
    ]
    assert divs[1].find(tt + "p").get(it + "key") == "L2"
    assert '<span begin="00:00:01.900" end="00:00:02.400">yö</span> <span' in text  # space between spans
    line = ttml_text(SONG, title="Yö", artist="Milla", language="sv-FI", timing="Line")
    assert 'itunes:timing="Line"' in line and 'xml:lang="sv-FI"' in line and "<span" not in line
    assert [l.text for l in parse_ttml(line)] == [l.text for l in SONG]


def test_ttml_escapes_xml_special_characters(tmp_path):
    lines = [TimedLine('Rock & "roll" <now> it\'s', 0.0, 2.0,
                         (W("Rock", 0.0, 0.4), W("roll", 0.5, 1.0), W("now", 1.0, 1.5), W("it's", 1.5, 2.0)))]
    title = 'Tom & "Jerry" <live>'
    path = write_ttml(lines, tmp_path / "x.ttml", title=title, artist="A&B <c>", language="en-US")
    text = path.read_text(encoding="utf-8")
    assert "<now>" not in text and "<live>" not in text
    assert "&amp;" in text and "&lt;now&gt;" in text and "A&amp;B &lt;c&gt;" in text
    (back,) = read_ttml(path)
    assert back.text == lines[0].text
    assert [w.text for w in back.words] == ["Rock &", '"roll"', "<now>", "it's"]
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    assert root.find(".//{http://www.w3.org/ns/ttml#metadata}title").text == title
    # no attribute carries user text (times, the BCP-47 tag, a songPart made of letters), so quotes need no escape
    lrc = write_lrc(lines, tmp_path / "x.lrc", title=title, artist="a").read_text(encoding="utf-8")
    assert "[00:00.00]<00:00.00>Rock & <00:00.50>\"roll\" <00:01.00><now> <00:01.50>it's<00:02.00>" in lrc


def test_non_ascii_round_trips(tmp_path):
    lines = [TimedLine("Hämärä yö", 0.25, 1.5, (W("Hämärä", 0.25, 0.9), W("yö", 1.0, 1.5)), "Säkeistö 1"),
             TimedLine("Stjärnorna", 2.0, 3.0, (W("Stjär", 2.0, 2.4), W("nor", 2.4, 2.7), W("na", 2.7, 3.0)), "Refräng")]
    path = write_ttml(lines, tmp_path / "fi.ttml", title="Hämärä yö", artist="Milla", language="fi")
    assert "Hämärä".encode() in path.read_bytes()  # raw UTF-8, not character references
    back = read_ttml(path)
    assert [l.text for l in back] == ["Hämärä yö", "Stjärnorna"]
    assert [w.text for w in back[1].words] == ["Stjär", "nor", "na"]
    assert [l.section for l in back] == ["Säkeistö", "Refräng"]
    lrc = write_lrc(lines, tmp_path / "fi.lrc", title="Hämärä yö", artist="Milla")
    assert "[00:02.00]<00:02.00>Stjär<00:02.40>nor<00:02.70>na<00:03.00>" in lrc.read_text(encoding="utf-8")


def test_song_part_names():
    assert [song_part(s) for s in ("Verse 1", "Pre-Chorus", "Final Chorus", "Post-chorus 2", "Intro", "Solo",
                                     "bridge", "", "Middle eight")] == [
        "Verse", "PreChorus", "Chorus", "PostChorus", "Intro", "Instrumental", "Bridge", "", "MiddleEight"]


def test_read_apple_music_shaped_ttml():
    # the shape Apple serves: seconds-only and M:SS times, itunes:songPart, a translation span to skip
    doc = (
        '<tt xmlns="http://www.w3.org/ns/ttml" xmlns:itunes="http://music.apple.com/lyric-ttml-internal" '
        'xmlns:ttm="http://www.w3.org/ns/ttml#metadata" itunes:timing="Word" xml:lang="en">'
        '<body dur="3:21.570"><div begin="27.395" end="1:02.5" itunes:songPart="Verse">'
        '<p begin="27.395" end="28.960" itunes:key="L1" ttm:agent="v1">'
        '<span begin="27.395" end="27.549">I</span> <span begin="27.549" end="27.740">been</span> '
        '<span begin="27.740" end="28.077">try</span><span begin="28.077" end="28.960">na</span>'
        '<span ttm:role="x-translation" xml:lang="fi">Olen yrittänyt</span></p>'
        '<p begin="1:00.000" end="62.5s">Line only</p></div></body></tt>'
    )
    first, second = parse_ttml(doc)
    assert first.text == "I been tryna" and first.section == "Verse"
    assert [(w.text, w.start, w.end) for w in first.words] == [
        ("I", 27.395, 27.549), ("been", 27.549, 27.74), ("try", 27.74, 28.077), ("na", 28.077, 28.96)]
    assert (second.text, second.start, second.end, second.words) == ("Line only", 60.0, 62.5, ())
    with pytest.raises(ExportError, match=r"<ttml>:1:\d+: not well-formed"):
        parse_ttml("<tt><p></tt>")
    with pytest.raises(ExportError, match="not <tt>"):
        parse_ttml("<html/>")
    with pytest.raises(ExportError, match=r"line 1 \('x'\): begin"):
        parse_ttml('<tt xmlns="http://www.w3.org/ns/ttml"><body><div><p begin="1:75.0" end="2">x</p></div></body></tt>')


def bad(index: int, **change):
    import dataclasses

    lines = list(SONG)
    lines[index] = dataclasses.replace(lines[index], **change)
    return lines


def moved_word(line: TimedLine, index: int, **change) -> tuple:
    import dataclasses

    words = list(line.words)
    words[index] = dataclasses.replace(words[index], **change)
    return tuple(words)


@pytest.mark.parametrize(
    "lines, message",
    [
        (bad(1, words=moved_word(SONG[1], 2, end=6.5)), r"line 2 \('Stjärnorna lyser, ljust'\): word 3 \('ljust'\) .*outside its line.*Fix"),
        (bad(1, start=0.5, words=()), r"line 2 .*starts at 0\.500 s, not after line 1.*Fix"),
        (bad(1, start=float("nan")), r"line 2 .*start time nan.*Fix"),
        (bad(1, words=moved_word(SONG[1], 1, start=float("nan"))), r"line 2 .*word 2 \('lyser'\) has times nan"),
        (bad(1, end=3.0), r"line 2 .*ends at 3\.000 s, before it starts"),
        (bad(1, words=moved_word(SONG[1], 1, start=4.5)), r"line 2 .*word 2 \('lyser'\) starts at 4\.500 s, before word 1"),
        (bad(1, words=moved_word(SONG[1], 1, text="lysa")), r"line 2 .*word 2 \('lysa'\) is not in the line text after word 1"),
        (bad(1, text="Stjärnorna\nlyser, ljust"), r"line 2 .*line break.*Fix: split it"),
        (bad(0, section="x", words=moved_word(SONG[0], 0, start=0.5)), r"line 1 .*word 1 \('Hämärä'\).*outside"),
    ],
)
def test_timed_lyrics_validation(tmp_path, lines, message):
    with pytest.raises(ExportError, match=message):
        write_lrc(lines, tmp_path / "bad.lrc", title="t", artist="a")
    with pytest.raises(ExportError, match=message):
        write_ttml(lines, tmp_path / "bad.ttml", title="t", artist="a", language="fi")
    with pytest.raises(ExportError, match=message):
        sylt_words(lines)
    assert list(tmp_path.iterdir()) == []


def test_validation_reports_every_problem_and_bad_options(tmp_path):
    lines = [TimedLine("one two", 2.0, 1.0, (W("one", 2.0, 2.5), W("two", 2.5, 2.4))),
             TimedLine("three", 1.5, 2.5, (W("three", 1.5, 2.5),))]
    problems = timed_lines_problems(lines)
    assert len(problems) >= 3 and all("Fix" in p for p in problems)
    assert any(p.startswith("line 1 ") for p in problems) and any(p.startswith("line 2 ") for p in problems)
    with pytest.raises(ExportError, match="language 'finnish' is not a BCP-47 tag"):
        write_ttml(SONG, tmp_path / "x.ttml", title="t", artist="a", language="finnish")
    with pytest.raises(ExportError, match="timing 'Syllable' is unknown; use one of Word, Line"):
        write_ttml(SONG, tmp_path / "x.ttml", title="t", artist="a", language="fi", timing="Syllable")
    with pytest.raises(ExportError, match="no line has word timing"):
        write_ttml([TimedLine("a", 1.0, 2.0)], tmp_path / "x.ttml", title="t", artist="a", language="fi")
    with pytest.raises(ExportError, match="shorter than the last line"):
        write_ttml(SONG, tmp_path / "x.ttml", title="t", artist="a", language="fi", length_seconds=5.0)
    with pytest.raises(ExportError, match="control character U\\+0007"):
        write_ttml(SONG, tmp_path / "x.ttml", title="t\a", artist="a", language="fi")
    assert list(tmp_path.iterdir()) == []


def test_failed_ttml_write_keeps_old_file(tmp_path):
    good = write_ttml(SONG, tmp_path / "song.ttml", title="Yö", artist="Milla", language="fi")
    before = good.read_bytes()
    with pytest.raises(ExportError):
        write_ttml(bad(1, start=float("nan")), good, title="Yö", artist="Milla", language="fi")
    assert good.read_bytes() == before
    assert list(tmp_path.iterdir()) == [good]


def test_sylt_word_entries(tmp_path, tags):
    import dataclasses

    from mutagen.id3 import ID3

    entries = sylt_words(SONG)
    # ID3v2.4 SYLT: whitespace and line feeds go in front of the word they separate
    assert entries == ((1.0, "Hämärä"), (1.9, " yö"), (2.5, " saapuu"),
                       (4.0, "\nStjärnorna"), (5.1, " lyser,"), (5.6, " ljust"))
    assert "".join(text for _, text in entries) == "Hämärä yö saapuu\nStjärnorna lyser, ljust"
    short = Audio(np.zeros((2, RATE // 2), dtype=np.float32), RATE)
    word_tags = dataclasses.replace(tags, synced_words=entries, cover_image=None, cover_mime=None)
    path = write_mp3(short, tmp_path / "words.mp3", word_tags)
    (sylt,) = ID3(path).getall("SYLT")
    assert (sylt.lang, sylt.format, sylt.type) == ("eng", 2, 1)
    assert list(sylt.text) == [("Hämärä", 1000), (" yö", 1900), (" saapuu", 2500),
                               ("\nStjärnorna", 4000), (" lyser,", 5100), (" ljust", 5600)]
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(ExportError, match="synced_words entry 2"):
        dataclasses.replace(tags, synced_words=((2.0, "a"), (1.0, " b")))
    with pytest.raises(ExportError, match="synced_words entry 1 .* no text"):
        dataclasses.replace(tags, synced_words=((0.0, "\n"),))


# ------------------------------------------------------------------ codec-safe MP3, 16-bit FLAC


def test_flac_16bit_is_dithered_pcm_16(tmp_path, audio, tags):
    path = write_flac(audio, tmp_path / "cd.flac", tags, bit_depth=16)
    assert sf.info(str(path)).subtype == "PCM_16"
    wav = write_wav(audio, tmp_path / "cd.wav", bit_depth=16)
    assert np.array_equal(decode(path).samples, decode(wav).samples)  # same dither, same samples
    with pytest.raises(ExportError, match="bit_depth 8"):
        write_flac(audio, tmp_path / "x.flac", tags, bit_depth=8)


@pytest.mark.parametrize("mode", ["cbr320", "v0"])
def test_mp3_under_trims_until_the_decoded_peak_is_under(tmp_path, audio, tags, mode):
    from millamusic.dsp.loudness import measure

    plain = write_mp3_under(audio, tmp_path / "plain.mp3", tags, mode=mode, max_true_peak_dbtp=0.0)
    assert plain.trim_db == 0.0
    limit = plain.loudness.true_peak_dbtp - 1.0
    trimmed = write_mp3_under(audio, tmp_path / "trimmed.mp3", tags, mode=mode, max_true_peak_dbtp=limit)
    again = measure(decode(tmp_path / "trimmed.mp3"))
    assert again.true_peak_dbtp <= limit and trimmed.loudness.true_peak_dbtp == again.true_peak_dbtp
    assert trimmed.trim_db <= -1.0
    assert again.integrated_lufs == pytest.approx(plain.loudness.integrated_lufs + trimmed.trim_db, abs=0.1)
    from mutagen.id3 import ID3

    assert str(ID3(tmp_path / "trimmed.mp3")["TIT2"]) == tags.title


def test_mp3_under_gives_up_and_leaves_nothing(tmp_path, audio, tags, monkeypatch):

    real = measure
    monkeypatch.setattr(mp3_module, "measure", lambda a: dataclasses.replace(real(a), true_peak_dbtp=3.0))
    with pytest.raises(ExportError, match=r"still decodes to 3.00 dBTP .* over the -1.0 dBTP"):
        write_mp3_under(audio, tmp_path / "x.mp3", tags, mode="cbr320", max_true_peak_dbtp=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["spotify", "apple", "amazon", "cd", "loud"])
def test_mp3_of_every_profile_decodes_under_its_lossy_ceiling(tmp_path, tags, name):
    # A mastered drum-and-chords mix, both MP3 flavours decoded back: <= -0.5 dBTP always
    # (amazon: -1.5), reached without trimming when the limiter's margin is enough.
    from millamusic.mastering.chain import master
    from millamusic.spec.profiles import PROFILES

    profile = PROFILES[name]
    mastered, _ = master(Audio(pop_mix(8.0, rate=RATE).astype(np.float32), RATE), profile)
    for mode in ("cbr320", "v0"):
        result = write_mp3_under(mastered, tmp_path / f"{mode}.mp3", tags, mode=mode,
                                   max_true_peak_dbtp=profile.lossy_true_peak_dbtp)
        assert result.loudness.true_peak_dbtp <= profile.lossy_true_peak_dbtp <= -0.5
        assert abs(result.loudness.integrated_lufs - profile.integrated_lufs) <= 0.5 - result.trim_db


def test_24_bit_quantising_in_float32_gives_the_float64_integers():
    """_quantize's float32 fast path (export._quantize_24) against the plain float64 rounding."""
    from millamusic.release.pcm import _quantize

    x = white_noise((2, 48000), seed=5, level=0.4)
    x[0, :6] = [1.0, -1.0, 0.99999994, -1.2, 2.0, 0.5 / (1 << 23)]  # clipped, edge and half-LSB values
    reference = np.clip(np.round(x.astype(np.float64).T * (1 << 23)), -(1 << 23), (1 << 23) - 1)
    got = _quantize(Audio(x, 48000), 24)
    assert got.dtype == np.int32 and got.flags["C_CONTIGUOUS"] and got.shape == (48000, 2)
    assert np.array_equal(got, (reference.astype(np.int32) << 8))


def test_pcm_given_to_the_writers_must_be_that_bit_depths_integers(tmp_path):
    from millamusic.core.errors import ExportError
    from millamusic.release.pcm import quantize, write_wav

    audio = Audio(np.zeros((2, 4800), np.float32), 48000)
    with pytest.raises(ExportError, match="not quantize"):
        write_wav(audio, tmp_path / "a.wav", bit_depth=24, pcm=quantize(audio, 16))
    assert write_wav(audio, tmp_path / "b.wav", bit_depth=16, pcm=quantize(audio, 16)).is_file()
