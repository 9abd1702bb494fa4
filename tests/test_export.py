"""Delivery files (src/millamusic/export.py): WAV/FLAC/MP3/LRC, tags read back with mutagen."""

from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pytest
import soundfile as sf

from millamusic.audio import Audio
from millamusic.errors import ExportError
from millamusic import export as E

RATE = 44100


def png_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    im = Image.new("RGB", (w, h), (200, 40, 90))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def audio() -> Audio:
    t = np.arange(int(6.0 * RATE)) / RATE
    rng = np.random.default_rng(3)
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.4 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    return Audio(np.stack([left, right]).astype(np.float32), RATE)


@pytest.fixture(scope="module")
def cover() -> bytes:
    return png_bytes(1400, 1400)


@pytest.fixture(scope="module")
def tags(cover) -> E.ReleaseTags:
    credits = [
        {"stage": "lyrics", "tool": "template-grammar", "ai": True},
        {"stage": "vocals", "tool": "espeak-ng + WORLD", "ai": True},
    ]
    return E.ReleaseTags(
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
        composer="millamusic (AI)",
        lyricist="millamusic (AI)",
        copyright="2025 Milla Records",
        label="Milla Records",
        producer="millamusic pipeline",
        cover_image=cover,
        cover_mime="image/png",
        lyrics_text="First line\nSecond line\n",
        synced_lyrics=((1.5, "First line"), (4.25, "Second line")),
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
    path = E.write_wav(audio, tmp_path / "song.wav")
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (RATE, 2, "PCM_24", "WAV")
    raw = path.read_bytes()
    assert struct.unpack("<H", raw[20:22])[0] == 1  # WAVE_FORMAT_PCM, not extensible
    assert chunk_ids(path) == [b"fmt ", b"data"]
    assert E.check_wav_delivery(path, sample_rate=RATE, channels=2, bit_depth=24) == []
    back, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == RATE and back.shape == (audio.frames, 2)
    assert np.max(np.abs(back.T - audio.samples)) <= 1.0 / (1 << 23) + 1e-9
    assert list(tmp_path.iterdir()) == [path]  # no temp files left


def test_wav_16bit_is_dithered_and_plain(tmp_path, audio):
    path = E.write_wav(audio, tmp_path / "cd.wav", bit_depth=16)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert E.check_wav_delivery(path, bit_depth=16) == []
    back, _ = sf.read(str(path), dtype="float32", always_2d=True)
    err = back.T - audio.samples
    assert 0.3 / 32768 < np.std(err) < 1.0 / 32768  # TPDF: ~0.5 LSB rms error, not 0.29 LSB of rounding
    again = E.write_wav(audio, tmp_path / "cd2.wav", bit_depth=16)
    assert again.read_bytes() == path.read_bytes()  # deterministic


def test_wav_clips_instead_of_wrapping(tmp_path):
    x = np.array([[0.5, 1.5, -2.0, 1.0]] * 2, dtype=np.float32)
    path = E.write_wav(Audio(x, RATE), tmp_path / "hot.wav")
    back, _ = sf.read(str(path), dtype="int32", always_2d=True)
    assert list(back[:, 0] >> 8) == [1 << 22, (1 << 23) - 1, -(1 << 23), (1 << 23) - 1]


def append_chunk(path, cid: bytes, body: bytes) -> None:
    data = bytearray(path.read_bytes())
    data += struct.pack("<4sI", cid, len(body)) + body + (b"\0" if len(body) % 2 else b"")
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_check_wav_reports_trailing_chunks(tmp_path, audio):
    path = E.write_wav(audio, tmp_path / "tagged.wav")
    append_chunk(path, b"LIST", b"INFOINAM\x06\x00\x00\x00Title\x00")
    append_chunk(path, b"id3 ", b"ID3\x04\x00\x00\x00\x00\x00\x00")
    problems = E.check_wav_delivery(path)
    text = "\n".join(problems)
    assert "b'LIST'" in text and "b'id3 '" in text and "after the data chunk" in text


def test_check_wav_reports_format_and_structure_problems(tmp_path, audio):
    # float WAV: format tag 3
    path = tmp_path / "float.wav"
    sf.write(str(path), audio.samples.T, RATE, subtype="FLOAT", format="WAV")
    assert any("format tag is 0x0003" in p for p in E.check_wav_delivery(path))
    # WAVE_FORMAT_EXTENSIBLE
    path = tmp_path / "ext.wav"
    sf.write(str(path), audio.samples.T, RATE, subtype="PCM_24", format="WAVEX")
    assert any("0xFFFE" in p for p in E.check_wav_delivery(path))
    # odd-sized trailing chunk without its pad byte, and a truncated file
    good = E.write_wav(audio, tmp_path / "good.wav")
    raw = good.read_bytes()
    odd = tmp_path / "odd.wav"
    odd.write_bytes(raw + struct.pack("<4sI", b"junk", 3) + b"abc")
    problems = E.check_wav_delivery(odd)
    assert any("odd size 3" in p for p in problems) and any("RIFF size" in p for p in problems)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[:-1000])
    assert any("truncated" in p for p in E.check_wav_delivery(cut))
    notwav = tmp_path / "not.wav"
    notwav.write_bytes(b"ID3\x04" + b"\0" * 100)
    assert any("not a RIFF" in p for p in E.check_wav_delivery(notwav))
    assert E.check_wav_delivery(good, sample_rate=48000) == ["sample rate is 44100 Hz, expected 48000"]


# ------------------------------------------------------------------ FLAC


def test_flac_tags_round_trip(tmp_path, audio, tags, cover):
    from mutagen.flac import FLAC

    path = E.write_flac(audio, tmp_path / "song.flac", tags)
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
        "AI_CREDITS": tags.ai_credits_json,
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

    path = E.write_mp3(audio, tmp_path / "song.mp3", tags, mode=mode)
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
        E.write_mp3(audio, tmp_path / "x.mp3", tags, mode="v9")
    with pytest.raises(ExportError, match="LAME CBR"):
        E.write_mp3(audio, tmp_path / "x.mp3", tags, bitrate="333")
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
    data, mime = E.validate_cover(ok)
    assert mime == "image/png" and data == ok.read_bytes()
    jpg = tmp_path / "ok.jpg"
    jpg.write_bytes(png_bytes(1500, 1500, "JPEG"))
    assert E.validate_cover(jpg)[1] == "image/jpeg"

    wide = tmp_path / "wide.png"
    wide.write_bytes(png_bytes(1600, 1400))
    with pytest.raises(ExportError, match=r"wide\.png is 1600x1400 px.*square.*Fix"):
        E.validate_cover(wide)
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(1000, 1000))
    with pytest.raises(ExportError, match=r"small\.png is 1000x1000 px.*at least 1400x1400.*Fix"):
        E.validate_cover(small)
    gif = tmp_path / "c.gif"
    gif.write_bytes(png_bytes(1400, 1400, "GIF"))
    with pytest.raises(ExportError, match="GIF.*JPEG or PNG"):
        E.validate_cover(gif)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ExportError, match="not a readable image"):
        E.validate_cover(junk)
    with pytest.raises(ExportError, match="cannot be read"):
        E.validate_cover(tmp_path / "missing.png")


# ------------------------------------------------------------------ LRC

LRC_LINE = re.compile(r"^\[(\d{2,}):(\d{2})\.(\d{2})\](.*)$")


def test_lrc_round_trip(tmp_path):
    lines = [(0.0, "Intro"), (1.234, "Neon rain"), (61.5, "Über alles"), (3599.99, "last")]
    path = E.write_lrc(lines, tmp_path / "song.lrc", title="Neon Rain", artist="Milla", album="First Light",
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
        E.write_lrc(lines, tmp_path / "bad.lrc", title="t", artist="a")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ atomic writes


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with E.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            assert tmp.parent == tmp_path and tmp.name.endswith(".bin")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_failure_keeps_old_file(tmp_path, audio, tags, monkeypatch):
    target = tmp_path / "song.mp3"
    E.atomic_write_bytes(target, b"old release")

    def broken(_tags):
        raise RuntimeError("tagging crashed")

    monkeypatch.setattr(E, "_id3", broken)  # fails after the encoder wrote the temp file
    with pytest.raises(RuntimeError, match="tagging crashed"):
        E.write_mp3(audio, target, tags)
    assert target.read_bytes() == b"old release"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "sub" / "x.txt"
    E.atomic_write_bytes(target, b"hello")
    E.atomic_write_bytes(target, b"world")
    assert target.read_bytes() == b"world"
    assert list(target.parent.iterdir()) == [target]
