"""Signed Content Credentials (C2PA) on every delivered master, with c2pa-python.

A file is tagged first and signed last: the manifest binds a hash of every byte outside itself
(audio and tags), so any later change reads as `assertion.dataHash.mismatch`. Where c2pa-rs puts
the manifest (measured with c2pa-python 0.38): WAV, a RIFF 'C2PA' chunk after 'data'; MP3, a
GEOB frame (application/c2pa) in the ID3v2.4 tag; FLAC, a GEOB frame in an ID3v2.4 tag before
'fLaC' (libFLAC, soundfile and mutagen skip it; the Vorbis comments stay where they were).

Everything the manifest says comes from the credits and tags the render already wrote (one
source of truth): the actions name what made each part, with the IPTC digital source type.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from mutagen.id3 import ID3, ID3NoHeaderError

from millamusic.core.errors import ExportError
from millamusic.release.credits import IPTC, StageCredit, source_type_term
from millamusic.release.distributor import AiRoles
from millamusic.release.signing import SigningIdentity
from millamusic.release.tags import ReleaseTags

MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg"}
CREDITS_LABEL = "com.millamusic.credits"  # the per-stage credits, AI roles and disclosure
RELEASE_LABEL = "com.millamusic.release"  # title, artist, ISRC, UPC, the original work of a cover


def manifest_definition(file_name: str, tags: ReleaseTags, credits: list[StageCredit], roles: AiRoles,
                        version: str) -> dict:
    """The C2PA manifest for one delivery file: a c2pa.created action for the recording (its IPTC
    source type is the tags'), one action per machine-made stage naming its engine, model, licence,
    seed and prompt, and our credits and release assertions."""
    mime = MIME[Path(file_name).suffix.lower()]
    agent = {"name": "millamusic", "version": version}
    actions = [{"action": "c2pa.created", "digitalSourceType": tags.digital_source_type, "softwareAgent": agent,
                "description": tags.disclosure}]
    for credit in credits:
        if credit.generator == "human":
            continue
        actions.append({
            "action": "c2pa.edited", "digitalSourceType": IPTC + source_type_term([credit.generator]),
            "softwareAgent": {"name": credit.engine, "version": credit.version},
            "description": f"{credit.stage} made by {credit.engine} ({credit.model})",
            "parameters": {"stage": credit.stage, "model": credit.model, "licence": credit.licence,
                           "generator": credit.generator, "seed": credit.seed, "prompt": credit.prompt},
        })
    release = {"title": tags.title, "artist": tags.artist, "album": tags.album, "isrc": tags.isrc, "upc": tags.upc,
               "original": None if tags.original_title is None else {
                   "title": tags.original_title, "artist": tags.original_artist,
                   "songwriters": tags.original_songwriters, "year": tags.original_year}}
    return {
        "claim_generator_info": [agent],
        "title": file_name,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": CREDITS_LABEL, "data": {"credits": json.loads(tags.ai_credits_json),
                                              "contains_ai": tags.contains_ai,
                                              "digital_source_type": tags.digital_source_type,
                                              "disclosure": tags.disclosure, "ai_roles": roles.to_dict()}},
            {"label": RELEASE_LABEL, "data": release},
        ],
    }


def sign_masters(paths: list[Path], *, tags: ReleaseTags, credits: list[StageCredit], roles: AiRoles,
                 identity: SigningIdentity, version: str) -> None:
    """Sign each tagged delivery file in place with its manifest (manifest_definition), one signer
    for them all; each goes through a temp file, so a failed signing leaves it as it was."""
    import c2pa  # c2pa-python: loads the c2pa-rs native library (~0.2 s)

    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem,
                                                       identity.key_pem, None))  # no TSA: offline
    try:
        for path in paths:
            manifest = manifest_definition(path.name, tags, credits, roles, version)
            temp = path.with_name(f".{path.name}.signing{path.suffix}")
            try:
                with c2pa.Builder(manifest) as builder, open(path, "rb") as source, open(temp, "w+b") as target:
                    builder.sign(signer, MIME[path.suffix.lower()], source, target)
                os.replace(temp, path)
            except c2pa.C2paError as error:
                raise ExportError(f"cannot sign {path.name} with the Content Credentials identity "
                                  f"({identity.source}): {error}") from error
            finally:
                temp.unlink(missing_ok=True)
    finally:
        signer.close()


@dataclass(frozen=True)
class Provenance:
    """What a file's Content Credentials say, read and validated."""

    state: str  # "Trusted" | "Valid" | "Invalid"; "absent" (no manifest) | "unreadable" (not a file c2pa parses)
    failures: tuple[str, ...]  # validation codes other than the signer being unknown
    untrusted: bool  # signed by an identity no trust anchor vouches for (e.g. self-signed)
    signer: str  # "CN, O"
    signed_with: str  # algorithm
    generator: str  # the claim generator, e.g. "millamusic 0.1.0"
    actions: tuple[dict, ...] = ()
    credits: dict = field(default_factory=dict)  # the CREDITS_LABEL assertion
    release: dict = field(default_factory=dict)  # the RELEASE_LABEL assertion

    @property
    def present(self) -> bool:
        return self.state not in ("absent", "unreadable")


def read_provenance(path: Path) -> Provenance:
    import c2pa  # c2pa-python: loads the c2pa-rs native library (~0.2 s)

    try:
        with c2pa.Reader(MIME.get(path.suffix.lower(), "application/octet-stream"), open(path, "rb")) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return Provenance("absent", (), False, "", "", "")
    except c2pa.C2paError as error:  # not a file c2pa can parse (damaged, or no audio at all)
        return Provenance("unreadable", (str(error),), False, "", "", "")
    codes = [status.get("code", "") for status in store.get("validation_status") or []]
    manifest = store["manifests"][store["active_manifest"]]
    assertions = {a["label"]: a.get("data", {}) for a in manifest.get("assertions", [])}
    info = manifest.get("signature_info") or {}
    made_by = (manifest.get("claim_generator_info") or [{}])[0]
    generator = f"{made_by.get('name', '?')} {made_by.get('version', '')}".strip()
    return Provenance(
        state=store.get("validation_state", "Invalid"),
        failures=tuple(c for c in codes if c != "signingCredential.untrusted"),
        untrusted="signingCredential.untrusted" in codes,
        signer=", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v),
        signed_with=str(info.get("alg", "")), generator=generator,
        actions=tuple(assertions.get("c2pa.actions.v2", {}).get("actions", [])),
        credits=assertions.get(CREDITS_LABEL, {}), release=assertions.get(RELEASE_LABEL, {}),
    )


def describe(provenance: Provenance) -> list[str]:
    """The manifest in words a person reads (`millamusic provenance FILE`)."""
    if provenance.state == "unreadable":
        return [f"Content Credentials cannot be read: {provenance.failures[0]}"]
    if not provenance.present:
        return ["No Content Credentials: the file has no C2PA manifest (never signed, or stripped)."]
    state = "valid" if not provenance.failures else f"INVALID ({', '.join(provenance.failures)})"
    trust = " by an identity no trust list vouches for (self-signed or a private CA)" if provenance.untrusted else ""
    lines = [f"Content Credentials: {state}; signed{trust}: {provenance.signer} ({provenance.signed_with}), "
             f"made by {provenance.generator}."]
    release = provenance.release
    if release:
        ids = ", ".join(f"{k.upper()} {release[k]}" for k in ("isrc", "upc") if release.get(k))
        lines.append(f"Recording: \"{release.get('title')}\" by {release.get('artist')}" + (f" ({ids})" if ids else ""))
        if release.get("original"):
            original = release["original"]
            lines.append(f"A cover of \"{original['title']}\" by {original['artist']}, written by "
                         f"{original['songwriters']}.")
    credits = provenance.credits
    if credits:
        term = str(credits.get("digital_source_type", "")).rsplit("/", 1)[-1]
        lines.append(f"Contains AI: {credits.get('contains_ai')} (IPTC {term})")
        for credit in credits.get("credits", []):
            if credit.get("generator") == "human":
                lines.append(f"  {credit['stage']:<8} written/performed by {credit.get('by')} (human)")
            else:
                kind = "a trained model" if credit["generator"] == "trained" else "rule-based, no trained model"
                extra = f", prompt {credit['prompt']!r}" if credit.get("prompt") else ""
                lines.append(f"  {credit['stage']:<8} made by {credit['engine']} {credit['version']} "
                             f"({credit['model']}; {kind}; licence {credit['licence']}; seed {credit['seed']}{extra})")
        roles = (credits.get("ai_roles") or {}).get("distrokid") or {}
        if roles:
            lines.append("Distributor answers (AI made it?): " + ", ".join(
                f"{role} {answer['answer']}" for role, answer in roles.items()))
    return lines


def unsigned_bytes(path: Path) -> bytes:
    """The file's bytes without its C2PA manifest: what two renders of the same song share.

    A signature is never the same twice (c2pa-rs salts every assertion and ECDSA draws a fresh
    nonce), so signed masters of two cold renders differ in the manifest alone; comparing these
    bytes shows that everything else (audio, tags) is identical.
    """
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".flac" and data[:3] == b"ID3":
        return data[data.index(b"fLaC"):]  # the manifest's ID3 tag sits in front of the stream
    if suffix == ".wav":
        at = data.find(b"C2PA", 12)
        if at < 0:
            return data
        size = int.from_bytes(data[at + 4: at + 8], "little")
        kept = data[:at] + data[at + 8 + size + size % 2:]
        return kept[:4] + (len(kept) - 8).to_bytes(4, "little") + kept[8:]
    if suffix == ".mp3":
        buffer = BytesIO(data)
        try:
            tags = ID3(buffer)
        except ID3NoHeaderError:
            return data
        tags.delall("GEOB")
        buffer.seek(0)
        tags.save(buffer, padding=lambda info: 0)
        return buffer.getvalue()
    return data
