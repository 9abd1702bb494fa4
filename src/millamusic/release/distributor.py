"""The AI questions distributors ask, answered from the engines that actually ran (the credits).

DistroKid's AI Credits (shown on Spotify and Apple Music) ask about vocals, instrumental, lyrics
and composition; mixing and mastering tools need no declaration. Apple Music's Transparency Tags
are per Track, Composition (lyrics included), Artwork and Music Video. Spotify takes per-role AI
flags through DDEX. The mapping and its sources are in docs/provenance.md.

"Machine-made" here is anything no person performed or wrote: a trained model (IPTC
`trainedAlgorithmicMedia`) or a rule-based engine such as the embedded composer, arranger and
singer (IPTC `algorithmicMedia`). Both are answered "yes" to "made with AI?" (the artist
discloses openly, and a listener cannot tell them apart), and the answer names which it was.
A lyric sheet or a MIDI melody the producer supplied is human work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from millamusic.release.credits import IPTC, StageCredit, source_type_term

# What each distributor role is made of: the credit stages behind it.
ROLE_STAGES = {"vocals": ("vocals",), "instrumental": ("backing",), "lyrics": ("lyrics",), "composition": ("melody",)}


@dataclass(frozen=True)
class RoleAnswer:
    role: str  # vocals | instrumental | lyrics | composition
    machine: bool  # made by an engine, not performed or written by a person
    how: str  # "trained model" | "algorithmic (rule-based, no trained model)" | "human"
    made_by: str  # the engines (model) or people
    iptc: str  # the IPTC digital source type of this part

    @property
    def answer(self) -> str:
        return "Yes" if self.machine else "No"


@dataclass(frozen=True)
class AiRoles:
    vocals: RoleAnswer
    instrumental: RoleAnswer
    lyrics: RoleAnswer
    composition: RoleAnswer
    artwork_ai: bool | None  # the producer's statement (release.artwork_ai); None: not stated

    @property
    def roles(self) -> tuple[RoleAnswer, ...]:
        return (self.vocals, self.instrumental, self.lyrics, self.composition)

    @property
    def apple(self) -> dict[str, str]:
        """Apple Music Transparency Tags: Track (the sound), Composition (music and lyrics), Artwork."""
        artwork = {True: "AI", False: "not AI", None: "not stated (release.artwork_ai)"}[self.artwork_ai]
        return {"track": "AI" if self.vocals.machine or self.instrumental.machine else "not AI",
                "composition": "AI" if self.composition.machine or self.lyrics.machine else "not AI",
                "artwork": artwork, "music_video": "none delivered"}

    @property
    def ddex(self) -> dict[str, bool]:
        """Per-role flags as Spotify takes them through DDEX; post-production (mix, master) is
        rule-based DSP, never generative, and needs no declaration."""
        return {"vocals": self.vocals.machine, "instrumentation": self.instrumental.machine,
                "lyrics": self.lyrics.machine, "composition": self.composition.machine, "post_production": False}

    def to_dict(self) -> dict:
        return {"distrokid": {r.role: {"answer": r.answer, **asdict(r)} for r in self.roles},
                "apple": self.apple, "ddex": self.ddex}

    def tag_fields(self) -> dict[str, str]:
        """Per-role answers for the tags (TXXX / Vorbis): AI_VOCALS=Yes (trained model: ...)."""
        return {f"AI_{r.role.upper()}": f"{r.answer} ({r.how}: {r.made_by})" for r in self.roles}


def ai_roles(credits: list[StageCredit], artwork_ai: bool | None = None) -> AiRoles:
    by_stage = {c.stage: c for c in credits}
    answers = {}
    for role, stages in ROLE_STAGES.items():
        parts = [by_stage[s] for s in stages if s in by_stage]
        generators = [c.generator for c in parts]
        machine = any(g != "human" for g in generators)
        how = ("trained model" if "trained" in generators else
               "algorithmic (rule-based, no trained model)" if machine else "human")
        made_by = "; ".join(f"{c.engine} ({c.model})" if c.generator != "human" else (c.by or "a person")
                            for c in parts)
        # digitalCreation: "created by a human using non-generative tools" (IPTC digital source type)
        iptc = IPTC + (source_type_term(generators) if machine else "digitalCreation")
        answers[role] = RoleAnswer(role, machine, how, made_by, iptc)
    return AiRoles(**answers, artwork_ai=artwork_ai)


def distributor_text(title: str, artist: str, roles: AiRoles, *, signer: str, self_signed: bool) -> str:
    """masters/<slug>/distributor.txt: the answers a release manager pastes into upload forms."""
    lines = [f"AI disclosure for \"{title}\" by {artist}: answers for distributor forms, derived from the engines",
             "that made this render (release.json `ai_roles`; every master carries the same in its tags and its",
             "signed Content Credentials).", "",
             "DistroKid - AI Credits (\"Does this song include AI-generated music, vocals, or lyrics?\";",
             "mixing and mastering tools do not count):"]
    for role in roles.roles:
        lines.append(f"  {role.role.capitalize():<13} {role.answer:<4} {role.how}: {role.made_by}")
    lines += ["", "Apple Music - Transparency Tags:"]
    lines += [f"  {name.replace('_', ' ').capitalize():<13} {value}" for name, value in roles.apple.items()]
    lines += ["", "DDEX / Spotify per-role AI flags:"]
    lines += [f"  {name:<16} {'true' if value else 'false'}" for name, value in roles.ddex.items()]
    lines += ["", f"Signed Content Credentials (C2PA) in every master, signed by {signer}"
              + (" - a local self-signed identity: it proves the files are unchanged, not who signed them."
                 if self_signed else "."), "Check them with `millamusic check` or `millamusic provenance FILE`."]
    return "\n".join(lines) + "\n"
