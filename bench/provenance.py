"""What signing the Content Credentials costs, next to mastering the same song.

    python bench/provenance.py [--seconds 180] [--repeats 3]

Masters a 3-minute pop/rock-like test mix (bench/mastering.py's, fixed seed) to the spotify
profile, exports it as the pipeline does (24-bit WAV, FLAC, MP3 320 CBR and V0, fully tagged),
then signs each file with a throwaway certificate chain (release.signing.certificate_chain) and
reads it back (validation included). Prints the median of --repeats runs, per format: seconds to
sign, seconds to read and verify, the bytes signing added; and the mastering time for scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/mastering.py's test mix

from mastering import make_mix  # noqa: E402

from millamusic.engines.arranger import Arranger  # noqa: E402
from millamusic.engines.singer import Singer  # noqa: E402
from millamusic.mastering.chain import master  # noqa: E402
from millamusic.release.credits import (  # noqa: E402
    contains_ai,
    credits_json,
    digital_source_type,
    disclosure,
    song_credits,
)
from millamusic.release.distributor import ai_roles  # noqa: E402
from millamusic.release.flac import write_flac  # noqa: E402
from millamusic.release.mp3 import write_mp3_under  # noqa: E402
from millamusic.release.pcm import write_wav  # noqa: E402
from millamusic.release.provenance import read_provenance, sign_masters  # noqa: E402
from millamusic.release.signing import SigningIdentity, certificate_chain  # noqa: E402
from millamusic.release.tags import ReleaseTags  # noqa: E402
from millamusic.spec.profiles import PROFILES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    profile = PROFILES["spotify"]
    mix = make_mix(args.seconds, seed=1)
    started = time.perf_counter()
    mastered, _ = master(mix, profile)
    mastering_seconds = time.perf_counter() - started
    credits = song_credits(artist="Milla Virta", lyricist="Milla Virta", melody_from_midi=False, composer=None,
                           seed=1, backing=Arranger.info, backing_prompt=None, vocals=Singer.info)
    tags = ReleaseTags(title="Bench", artist="Milla Virta", disclosure=disclosure("Milla Virta", credits),
                       contains_ai=contains_ai(credits), digital_source_type=digital_source_type(credits),
                       ai_credits_json=credits_json(credits), isrc="FIMLA2600001", upc="6418000000014",
                       ai_roles=tuple(ai_roles(credits).tag_fields().items()))
    chain, key = certificate_chain("Bench Signer", "Bench")
    identity = SigningIdentity(chain, key, False, "bench")
    roles = ai_roles(credits)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {"wav": folder / "bench.wav", "flac": folder / "bench.flac", "mp3_320": folder / "bench.320.mp3",
                 "mp3_v0": folder / "bench.v0.mp3"}
        write_wav(mastered, files["wav"], bit_depth=profile.bit_depth)
        write_flac(mastered, files["flac"], tags, bit_depth=profile.bit_depth)
        ceiling = profile.lossy_true_peak_dbtp
        write_mp3_under(mastered, files["mp3_320"], tags, mode="cbr320", max_true_peak_dbtp=ceiling)
        write_mp3_under(mastered, files["mp3_v0"], tags, mode="v0", max_true_peak_dbtp=ceiling)
        results = {}
        for role, path in files.items():
            sign_times, read_times, size = [], [], 0
            for _ in range(args.repeats):
                copy = path.with_name(f"copy-{path.name}")
                shutil.copyfile(path, copy)
                before = copy.stat().st_size
                t0 = time.perf_counter()
                sign_masters([copy], tags=tags, credits=credits, roles=roles, identity=identity, version="bench")
                t1 = time.perf_counter()
                found = read_provenance(copy)
                t2 = time.perf_counter()
                assert found.present and not found.failures, found
                sign_times.append(t1 - t0)
                read_times.append(t2 - t1)
                size = copy.stat().st_size - before
            results[role] = {"sign_seconds": statistics.median(sign_times),
                             "read_seconds": statistics.median(read_times), "bytes_added": size,
                             "file_bytes": path.stat().st_size}
    print(f"{args.seconds:g}-s master, spotify profile; mastering took {mastering_seconds:.2f} s (one run)")
    # bytes added: the manifest, less what c2pa-rs leaves out when it rewrites an MP3's ID3 tag (the SYLT)
    print(f"{'file':<8} {'MB':>6} {'sign s':>7} {'verify s':>8} {'bytes added':>12}")
    for role, r in results.items():
        print(f"{role:<8} {r['file_bytes'] / 1e6:6.1f} {r['sign_seconds']:7.3f} {r['read_seconds']:8.3f} "
              f"{r['bytes_added']:12d}")
    total = sum(r["sign_seconds"] for r in results.values())
    print(f"all four signed in {total:.2f} s = {100 * total / mastering_seconds:.0f} % of the mastering time")
    if args.json:
        args.json.write_text(json.dumps({"mastering_seconds": mastering_seconds, "files": results}, indent=1))


if __name__ == "__main__":
    main()
