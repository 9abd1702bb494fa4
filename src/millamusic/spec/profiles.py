"""Delivery profiles: the loudness, peak and file format each outlet expects. Data, one place.

Sources (re-check before relying on them; services change their normalisation):
  spotify  Spotify for Artists, "Loudness normalization" FAQ (official): plays at -14 LUFS
           integrated; masters should stay below -1 dBTP ("-2 dBTP if louder than -14 LUFS").
  apple    Apple Digital Masters guide and Sound Check: about -16 LUFS; -1 dBTP keeps the AAC
           encode clean (third-party figure, Apple publishes no number).
  youtube  YouTube normalises to about -14 LUFS (measured by third parties); -1 dBTP ceiling.
  amazon   Amazon Music: -14 LUFS (third-party, -13..-15 reported), true peak -2 dBTP.
  deezer   Deezer normalises to about -15 LUFS (third-party); -1 dBTP.
  cd       Red Book (IEC 60908): 16-bit, 44.1 kHz. It sets no loudness; -10 LUFS is a common
           modern pop/rock CD level, and -1 dBTP keeps later rips and encodes from clipping.
  loud     A club/DJ master: -8 LUFS, -1 dBTP. Streaming services turn it down; only for
           outlets that do not normalise.
  ebu_r128 EBU R 128 broadcast: -23 LUFS, -1 dBTP (useful for checks, not a store).

Every profile writes the same set of files (delivery WAV, FLAC, MP3 320 kbps CBR and V0);
the profile sets the loudness, the peak ceiling, the sample rate and the PCM bit depth.
"""

from __future__ import annotations

from dataclasses import dataclass

# An MP3 decoded back may overshoot the PCM master's true peak (the encoder's filtering and
# quantisation ring); AAC adds up to ~1.5 dB (DESIGN.md). Lossy files are trimmed until their
# decoded true peak is at or under this much above the profile's ceiling, and never above
# LOSSY_CEILING_DBTP, so a store's or player's decoder never clips.
LOSSY_MARGIN_DB = 0.5
LOSSY_CEILING_DBTP = -0.5
LOUDNESS_TOLERANCE_LU = 0.3  # a PCM master must be this close to the profile's loudness
LOSSY_LOUDNESS_TOLERANCE_LU = 1.0  # a trimmed MP3 may sit up to this far under it


@dataclass(frozen=True)
class DeliveryProfile:
    name: str
    integrated_lufs: float
    true_peak_dbtp: float
    sample_rate: int = 44100
    bit_depth: int = 24  # PCM bits of the WAV and FLAC
    description: str = ""

    @property
    def lossy_true_peak_dbtp(self) -> float:
        """Highest true peak an MP3 of this profile may decode to."""
        return min(self.true_peak_dbtp + LOSSY_MARGIN_DB, LOSSY_CEILING_DBTP)

    def to_dict(self) -> dict:
        return {"name": self.name, "integrated_lufs": self.integrated_lufs, "true_peak_dbtp": self.true_peak_dbtp,
                "sample_rate": self.sample_rate, "bit_depth": self.bit_depth,
                "lossy_true_peak_dbtp": self.lossy_true_peak_dbtp}


PROFILES: dict[str, DeliveryProfile] = {
    p.name: p
    for p in (
        DeliveryProfile("spotify", -14.0, -1.0, description="Spotify: -14 LUFS, -1 dBTP"),
        DeliveryProfile("apple", -16.0, -1.0, description="Apple Music: -16 LUFS, -1 dBTP"),
        DeliveryProfile("youtube", -14.0, -1.0, description="YouTube: -14 LUFS, -1 dBTP"),
        DeliveryProfile("amazon", -14.0, -2.0, description="Amazon Music: -14 LUFS, -2 dBTP"),
        DeliveryProfile("deezer", -15.0, -1.0, description="Deezer: -15 LUFS, -1 dBTP"),
        DeliveryProfile("cd", -10.0, -1.0, bit_depth=16, description="CD (Red Book): 16-bit 44.1 kHz, -10 LUFS"),
        DeliveryProfile("loud", -8.0, -1.0, description="Club / non-normalising outlets: -8 LUFS, -1 dBTP"),
        DeliveryProfile("ebu_r128", -23.0, -1.0, description="EBU R 128 broadcast: -23 LUFS, -1 dBTP"),
    )
}


def profile_names_problem(names: list[str]) -> str | None:
    """A sentence naming what is wrong with a list of profile names, or None when it is fine."""
    if not names:
        return "no delivery profile given"
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        return f"unknown delivery profile {', '.join(map(repr, unknown))}"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f"profile {', '.join(map(repr, repeated))} given more than once"
    return None


def profile_choices() -> str:
    return ", ".join(PROFILES)
