"""Signed Content Credentials (C2PA) on every master, the AI answers distributors ask for, and
`millamusic check` / `millamusic provenance` reading them back. Each test that signs makes its
own throwaway certificate chain (release.signing.certificate_chain, with `cryptography`)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import c2pa
import pytest
from click.testing import CliRunner
from mutagen import File as MutagenFile
from mutagen.id3 import ID3

from millamusic.cli import main
from millamusic.core.errors import ExportError
from millamusic.qa.check import check_paths
from millamusic.engines.arranger import Arranger
from millamusic.engines.base import EngineInfo
from millamusic.engines.singer import Singer
from millamusic.release.credits import song_credits
from millamusic.release.distributor import ai_roles
from millamusic.release.signing import CERT_ENV, DIR_ENV, KEY_ENV, certificate_chain, load_identity

KOKORO = EngineInfo(name="kokoro", kind="vocals", version="1", model="Kokoro-82M", licence="Apache-2.0",
                    generator="trained")


# --------------------------------------------------------------------------- the answers


def test_distributor_answers_follow_the_engines_that_ran():
    credits = song_credits(artist="Milla", lyricist="Ann Writer", melody_from_midi=False, composer=None, seed=1,
                           backing=Arranger.info, backing_prompt=None, vocals=Singer.info)
    roles = ai_roles(credits)
    assert [(r.role, r.answer) for r in roles.roles] == [("vocals", "Yes"), ("instrumental", "Yes"),
                                                         ("lyrics", "No"), ("composition", "Yes")]
    assert roles.composition.how.startswith("algorithmic") and roles.composition.iptc.endswith("/algorithmicMedia")
    assert roles.lyrics.iptc.endswith("/digitalCreation") and roles.lyrics.made_by == "Ann Writer"
    assert roles.apple == {"track": "AI", "composition": "AI", "artwork": "not stated (release.artwork_ai)",
                           "music_video": "none delivered"}
    assert roles.ddex["post_production"] is False
    neural = ai_roles(song_credits(artist="Milla", lyricist=None, melody_from_midi=True, composer="Bob", seed=1,
                                   backing=Arranger.info, backing_prompt=None, vocals=KOKORO), artwork_ai=False)
    assert neural.vocals.how == "trained model" and neural.vocals.iptc.endswith("/trainedAlgorithmicMedia")
    assert neural.composition.answer == "No" and neural.apple["composition"] == "not AI"
    assert neural.apple["artwork"] == "not AI"
    assert neural.tag_fields()["AI_VOCALS"] == "Yes (trained model: kokoro (Kokoro-82M))"


# --------------------------------------------------------------------------- the identity


def test_local_identity_is_made_once_and_says_it_is_self_signed(tmp_path, monkeypatch):
    monkeypatch.delenv(CERT_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "identity"))
    first, again = load_identity(), load_identity()
    assert first.self_signed and first.fingerprint == again.fingerprint
    assert "self-signed" in first.subject
    assert (tmp_path / "identity" / "key.pem").stat().st_mode & 0o777 == 0o600


def test_configured_identity_is_read_from_the_environment(tmp_path, monkeypatch):
    chain, key = certificate_chain("Label Signer", "Test Label")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "chain.pem"))
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "key.pem"))
    identity = load_identity()
    assert not identity.self_signed and "Label Signer" in identity.subject
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ExportError, match="set both"):
        load_identity()
    (tmp_path / "bad.pem").write_text("not a key")
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "bad.pem"))
    with pytest.raises(ExportError, match="not a PEM file"):
        load_identity()


# --------------------------------------------------------------------------- a signed release


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A short song rendered and signed with a throwaway 'label' chain."""
    from tests.conftest import SHORT_SONG

    root = tmp_path_factory.mktemp("signed")
    chain, key = certificate_chain("Test Label Signer", "Test Label")
    (root / "chain.pem").write_bytes(chain)
    (root / "key.pem").write_bytes(key)
    spec = root / "songs" / "tiny.yaml"
    spec.parent.mkdir()
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3,
                                      extra="master: {profiles: [spotify]}\n"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CERT_ENV, str(root / "chain.pem"))
        patch.setenv(KEY_ENV, str(root / "key.pem"))
        result = CliRunner().invoke(main, ["render", str(spec), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    return root / "out" / "masters" / "tiny-test-song"



@pytest.mark.slow
def test_every_master_carries_a_valid_manifest_that_says_what_release_json_says(signed):
    record = json.loads((signed / "release.json").read_text())
    files = sorted((signed / "spotify").glob("tiny-test-song*.*"))
    audio = [f for f in files if f.suffix in (".wav", ".flac", ".mp3")]
    assert len(audio) == 4
    for path in audio:
        with c2pa.Reader(path.as_posix()) as reader:
            store = json.loads(reader.json())
        assert store["validation_state"] == "Valid"  # our chain is no trust anchor: valid, untrusted
        assert [s["code"] for s in store.get("validation_status", [])] == ["signingCredential.untrusted"]
        manifest = store["manifests"][store["active_manifest"]]
        assert manifest["signature_info"]["common_name"] == "Test Label Signer"
        assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
        actions = assertions["c2pa.actions.v2"]["actions"]
        assert actions[0]["action"] == "c2pa.created"
        assert actions[0]["digitalSourceType"] == record["digital_source_type"]
        machine = [c["stage"] for c in record["credits"] if c["generator"] != "human"]
        assert [a["parameters"]["stage"] for a in actions[1:]] == machine
        credits = assertions["com.millamusic.credits"]
        assert credits["credits"] == record["credits"] and credits["contains_ai"] == record["contains_ai"]
        assert credits["ai_roles"] == record["ai_roles"]
        release = assertions["com.millamusic.release"]
        assert (release["isrc"], release["upc"]) == (record["track"]["isrc"], record["track"]["upc"])
        if path.suffix != ".wav":  # mutagen sees the same as release.json (a delivery WAV has no tags)
            tags = MutagenFile(path)
            get = (lambda k: str(tags.tags[f"TXXX:{k}"])) if path.suffix == ".mp3" else (lambda k: tags[k][0])
            assert json.loads(get("AI_CREDITS")) == record["credits"]
            assert get("CONTAINS_AI") == record["contains_ai"]
            assert get("AI_VOCALS").startswith(record["ai_roles"]["distrokid"]["vocals"]["answer"])
    assert record["provenance"]["signer"].endswith("CN=Test Label Signer")
    assert record["provenance"]["self_signed"] is False
    distributor = (signed / "distributor.txt").read_text()
    assert "Vocals        Yes  algorithmic" in distributor and "Lyrics        No   human: Test Lyricist" in distributor
    checked = CliRunner().invoke(main, ["check", str(signed)])
    rows = [line for line in checked.output.splitlines() if "│ provenance" in line]
    assert len(rows) == 4 and all("OK" in row for row in rows), checked.output  # (the short song has no cover)
    assert " ".join(checked.output.split()).count("bound to these bytes") == 4


def _flip_audio_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _retag(path: Path) -> None:
    tags = MutagenFile(path)
    if path.suffix == ".mp3":
        tags.tags["TIT2"].text = ["Another Title"]
    else:
        tags["TITLE"] = "Another Title"
    tags.save()


def _strip(path: Path) -> None:
    data = path.read_bytes()
    if path.suffix == ".mp3":
        tags = ID3(path)
        tags.delall("GEOB")
        tags.save(path)
    elif path.suffix == ".flac":
        path.write_bytes(data[data.index(b"fLaC"):])  # the manifest's ID3 tag sits before the stream
    else:
        at = data.index(b"C2PA", 12)
        size = struct.unpack("<I", data[at + 4: at + 8])[0]
        kept = data[:at] + data[at + 8 + size + (size % 2):]
        path.write_bytes(kept[:4] + struct.pack("<I", len(kept) - 8) + kept[8:])


@pytest.mark.slow
@pytest.mark.parametrize(("change", "words"), [
    (_flip_audio_byte, "changed after it was signed"),
    (_retag, "changed after it was signed"),
    (_strip, "no Content Credentials"),
])
def test_check_fails_an_edited_or_stripped_copy_with_its_own_row(signed, tmp_path, change, words):
    copy = tmp_path / "copy"
    shutil.copytree(signed, copy)
    for suffix in (".wav", ".flac", ".320.mp3"):
        if change is _retag and suffix == ".wav":
            continue  # a delivery WAV carries no tags to edit
        path = copy / "spotify" / f"tiny-test-song{suffix}"
        change(path)
        result = CliRunner().invoke(main, ["check", str(path)])
        assert result.exit_code == 1, result.output
        (row,) = [r for r in check_paths([path], None) if r.rule == "provenance"]
        assert row.status == "fail" and words in row.detail, row
        shown = CliRunner().invoke(main, ["provenance", str(path)])
        assert shown.exit_code == 1


@pytest.mark.slow
def test_provenance_prints_the_manifest_in_words(signed):
    result = CliRunner().invoke(main, ["provenance", str(signed / "spotify" / "tiny-test-song.flac")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Content Credentials: valid" in text and "Test Label Signer" in text
    assert "vocals made by singer" in text and "rule-based, no trained model" in text
    assert "lyrics written/performed by Test Lyricist (human)" in text
