"""The album report: one self-contained HTML page a release manager opens in a browser.

Everything the page shows is inside the file: the cover and the master reports as data: URI
images, a 30 s MP3 preview per track as a data: URI <audio>, inline CSS, no script, no external
URL. The only links out are relative ones to the delivery files next to it ("full track").
The page holds no timestamp, so building it twice from the same inputs gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from millamusic import __version__
from millamusic.core.audio import Audio
from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_write_bytes
from millamusic.release.credits import licence_allows_commercial
from millamusic.release.mp3 import mp3_bytes
from millamusic.release.pcm import decode
from millamusic.release.tags import IPTC_DIGITAL_SOURCE_PREFIX
from millamusic.spec.profiles import LOUDNESS_TOLERANCE_LU, PROFILES

DASH = "\u2014"
COVER_PX = 600  # the cover's longer side on the page
REPORT_PX = 1000  # the master reports' width on the page
PREVIEW_SECONDS = 30.0
PREVIEW_START = 0.35  # of the track's length, clamped so the excerpt ends at the track's end
PREVIEW_FADE_SECONDS = 1.0  # fade in/out where the excerpt cuts into the music
PREVIEW_BITRATE = 128  # kbps
FILE_KINDS = ("wav", "flac", "mp3_320", "mp3_v0", "report")


_FILE_LABELS = {"wav": "WAV", "flac": "FLAC", "mp3_320": "MP3 320", "mp3_v0": "MP3 V0", "report": "report PNG"}


_CREDIT_COLUMNS = ("stage", "engine", "model", "version", "licence", "generator", "seed", "prompt", "by")


def write_album_report(path: Path, album: dict, *, root: Path) -> Path:
    """Write the album report for `album` to `path` (atomically) and return `path`.

    root: the build's output folder; every relative path in `album` is relative to it. `path`
    is usually inside it (e.g. root / "album.html"); the "full track" links are relative to
    `path`'s folder, so the page and the files move together.

    `album` (JSON-like; the album builder writes exactly this)::

        {"title": str, "artist": str, "year": int | None, "upc": str | None, "label": str | None,
         "copyright": str | None,
         "profiles": [str],                      # names in millamusic.spec.profiles.PROFILES, in order
         "loudness_mode": "album" | "track",
         "album_lufs": {profile: float | None},  # the album measured as one programme
         "artwork": str | None,                  # path relative to root
         "disclosure": str,                      # the album's AI disclosure sentence
         "tracks": [
           {"number": int, "title": str, "slug": str, "isrc": str | None, "duration_seconds": float,
            "engines": {"backing": str, "vocals": str},
            "cache_hits": int, "stages": int,
            "contains_ai": str,                  # "All" | "Partly" | "None"
            "digital_source_type": str,          # IPTC URI; the page shows its term only
            "credits": [{"stage", "engine", "model", "version", "licence", "generator", "seed",
                         "prompt", "by"}],       # StageCredit as a dict; values may be None
            "masters": {profile: {"integrated_lufs": float | None, "true_peak_dbtp": float | None,
                                  "lra_lu": float | None,
                                  "files": {"wav", "flac", "mp3_320", "mp3_v0", "report": relpath}}}}]}

    Pass marks: in "track" mode a master passes when its integrated loudness is within
    ±LOUDNESS_TOLERANCE_LU of the profile's target and its true peak is at or under the ceiling.
    In "album" mode the tracks keep their relative loudness, so each track shows its offset from
    the album loudness instead, and only the true peak is marked (the album loudness is marked
    against the target in the header).

    The preview of each track is a 30 s excerpt starting at 35 % of the track (clamped), decoded
    from the first profile's MP3 V0 (or WAV) and encoded as MP3 128 kbps.

    Raises ExportError naming the file when a referenced file does not exist, and when the
    record lacks a field or names an unknown profile.
    """
    path, root = Path(path), Path(root)
    profiles = _profiles(album)
    tracks = _need(album, "tracks", "the album record")
    if not isinstance(tracks, list) or not tracks:
        raise ExportError("album report: the album record has no tracks")
    for track in tracks:
        _check_track(track, profiles, root)
    artwork = album.get("artwork")
    cover = _image_data_uri(_existing(root, artwork, "the album artwork"), COVER_PX, "JPEG") if artwork else None
    page = _page(path, album, profiles, tracks, root, cover)
    return atomic_write_bytes(path, page.encode("utf-8"))


# --------------------------------------------------------------------------- record checks


def _need(record: dict, key: str, where: str):
    if not isinstance(record, dict) or key not in record:
        raise ExportError(f"album report: {where} has no {key!r}")
    return record[key]


def _profiles(album: dict) -> list[str]:
    names = list(_need(album, "profiles", "the album record"))
    unknown = [n for n in names if n not in PROFILES]
    if not names or unknown:
        raise ExportError(f"album report: unknown or no delivery profiles {unknown or names!r}; "
                          f"known: {', '.join(PROFILES)}")
    mode = _need(album, "loudness_mode", "the album record")
    if mode not in ("album", "track"):
        raise ExportError(f"album report: loudness_mode is {mode!r}; use 'album' or 'track'")
    return names


def _track_name(track: dict) -> str:
    return f"track {track.get('number', '?')} ({track.get('title', '?')!r})"


def _check_track(track: dict, profiles: list[str], root: Path) -> None:
    where = _track_name(track) if isinstance(track, dict) else "a track"
    for key in ("number", "title", "duration_seconds", "masters"):
        _need(track, key, where)
    for profile in profiles:
        master = _need(track["masters"], profile, f"{where}'s masters")
        files = _need(master, "files", f"{where}'s {profile} master")
        for kind in FILE_KINDS:
            rel = _need(files, kind, f"{where}'s {profile} files")
            _existing(root, rel, f"{where}'s {profile} {_FILE_LABELS[kind]}")


def _existing(root: Path, rel: str, what: str) -> Path:
    file = root / rel
    if not file.is_file():
        raise ExportError(f"album report: {what} {file} does not exist")
    return file


# --------------------------------------------------------------------------- media


def _image_data_uri(file: Path, longest: int, fmt: str, *, width_only: bool = False) -> str:
    """`file` scaled down (never up) to `longest` px (or that width), as a data: URI."""

    try:
        with Image.open(file) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            else:
                im = im.convert("RGB")
    except OSError as exc:
        raise ExportError(f"album report: cannot read the image {file} ({exc})") from exc
    scale = longest / (im.width if width_only else max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=85, optimize=True, progressive=False)
        mime = "image/jpeg"
    else:  # charts: few colours, so a palette PNG is small and sharp
        im.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def preview_window(seconds: float) -> tuple[float, float]:
    """(start, length) in seconds of the preview excerpt of a track `seconds` long."""
    length = min(PREVIEW_SECONDS, seconds)
    start = min(PREVIEW_START * seconds, max(0.0, seconds - PREVIEW_SECONDS))
    return start, length


def _preview_mp3(source: Path) -> bytes:
    audio = decode(source)
    rate = audio.sample_rate
    start, length = preview_window(audio.seconds)
    a, b = int(round(start * rate)), min(audio.frames, int(round((start + length) * rate)))
    x = np.array(audio.samples[:, a:b], dtype=np.float32)
    fade = min(int(PREVIEW_FADE_SECONDS * rate), x.shape[1] // 4)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        if a > 0:
            x[:, :fade] *= ramp
        if b < audio.frames:
            x[:, -fade:] *= ramp[::-1]
    try:
        return mp3_bytes(Audio(x, rate), PREVIEW_BITRATE)
    except ExportError as exc:
        raise ExportError(f"album report: cannot encode the preview of {source} ({exc})") from exc


def _href(target: Path, page: Path) -> str:
    """A relative URL from the page's folder to `target` (a file:// URL when there is no relative path)."""
    try:
        rel = os.path.relpath(target.resolve(), page.parent.resolve())
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()
    return urllib.parse.quote(Path(rel).as_posix())


# --------------------------------------------------------------------------- formatting


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, spec: str, unit: str = "") -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{format(value, spec)}{unit}".replace("-", "\u2212")


def _source_type(uri) -> str:
    """The IPTC term alone ("compositeSynthetic"): the page carries no http(s) URL, not even as text."""
    text = str(uri or "")
    if text.startswith(IPTC_DIGITAL_SOURCE_PREFIX):
        return text[len(IPTC_DIGITAL_SOURCE_PREFIX):] + " (IPTC)"
    return text or DASH


def _mmss(seconds) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "n/a"
    total = int(round(seconds))
    return f"{total // 60}:{total % 60:02d}"


def _mark(ok: bool, why: str = "") -> str:
    title = f' title="{_e(why)}"' if why else ""
    return (f'<span class="mark pass"{title}>\u2713 pass</span>' if ok
            else f'<span class="mark fail"{title}>\u2717 fail</span>')


def _loud_ok(lufs, target: float) -> bool:
    return isinstance(lufs, (int, float)) and math.isfinite(lufs) and \
        round(abs(lufs - target), 6) <= LOUDNESS_TOLERANCE_LU


def _peak_ok(tp, ceiling: float) -> bool:
    return isinstance(tp, (int, float)) and math.isfinite(tp) and tp <= ceiling


def _master_verdict(master: dict, profile: str, mode: str) -> tuple[bool, list[str]]:
    p = PROFILES[profile]
    problems = []
    if mode == "track" and not _loud_ok(master.get("integrated_lufs"), p.integrated_lufs):
        problems.append(f"loudness {_num(master.get('integrated_lufs'), '.2f')} LUFS is not within "
                        f"\u00b1{LOUDNESS_TOLERANCE_LU} LU of {_num(p.integrated_lufs, '.1f')}")
    if not _peak_ok(master.get("true_peak_dbtp"), p.true_peak_dbtp):
        problems.append(f"true peak {_num(master.get('true_peak_dbtp'), '.2f')} dBTP is over "
                        f"{_num(p.true_peak_dbtp, '.1f')}")
    return not problems, problems


# --------------------------------------------------------------------------- the page

_CSS = """
:root { --ink:#1d1f23; --muted:#5d6470; --line:#d9dde3; --soft:#f4f6f8; --pass:#1a7f37; --fail:#c62828;
        --accent:#6b3fa0; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:#fff; }
main { max-width:1320px; margin:0 auto; padding:28px 28px 12px; }
header.album { display:flex; gap:28px; align-items:flex-start; flex-wrap:wrap; }
header.album img.cover { width:300px; height:300px; object-fit:cover; border-radius:6px;
                         box-shadow:0 2px 12px rgba(0,0,0,.18); }
header.album .nocover { width:300px; height:300px; border-radius:6px; background:var(--soft);
                        display:flex; align-items:center; justify-content:center; color:var(--muted); }
header.album .facts { flex:1; min-width:320px; }
h1 { font-size:32px; margin:0 0 2px; line-height:1.15; }
h1 + .artist { font-size:20px; color:var(--muted); margin:0 0 14px; }
h2 { font-size:21px; margin:34px 0 10px; }
h3 { font-size:16px; margin:18px 0 6px; }
dl.meta { display:grid; grid-template-columns:max-content 1fr; gap:3px 16px; margin:0; }
dl.meta dt { color:var(--muted); }
dl.meta dd { margin:0; }
.disclosure { margin:22px 0 6px; padding:14px 18px; border-left:6px solid var(--accent);
              background:#f3eef9; font-size:17px; border-radius:0 6px 6px 0; }
.disclosure strong { display:block; font-size:12px; letter-spacing:.08em; text-transform:uppercase;
                     color:var(--accent); margin-bottom:3px; }
table { border-collapse:collapse; width:100%; margin:6px 0; }
th, td { border-bottom:1px solid var(--line); padding:5px 7px; text-align:left; vertical-align:top; }
thead th { background:var(--soft); font-weight:600; font-size:13px; }
caption { caption-side:bottom; text-align:left; color:var(--muted); font-size:13px; padding-top:6px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.tracks { overflow-x:auto; }
table.tracklist { font-size:14px; }
table.tracklist td.track-title { min-width:9em; }
table.tracklist td.nowrap { white-space:nowrap; }
thead th.profile { text-align:center; border-left:2px solid var(--line); }
th.first, td.first { border-left:2px solid var(--line); }
.mark { font-weight:600; white-space:nowrap; }
.mark.pass { color:var(--pass); }
.mark.fail { color:var(--fail); }
.ai { display:inline-block; padding:0 7px; border-radius:10px; background:#efe6fa; color:var(--accent);
      font-size:13px; font-weight:600; white-space:nowrap; }
section.track { border-top:2px solid var(--line); margin-top:30px; padding-top:6px; }
section.track h2 { margin-top:14px; }
.player { display:flex; gap:16px; align-items:center; flex-wrap:wrap; margin:8px 0; }
.player audio { width:420px; max-width:100%; }
.small { color:var(--muted); font-size:13px; }
.files a { margin-right:10px; }
details { margin:6px 0; }
summary { cursor:pointer; font-weight:600; }
img.report { width:100%; max-width:1000px; height:auto; border:1px solid var(--line); margin-top:6px; }
table.credits td { font-size:14px; }
table.credits td.prompt { max-width:380px; }
.warn { color:var(--fail); font-weight:600; }
footer { max-width:1320px; margin:30px auto 0; padding:14px 28px 28px; border-top:1px solid var(--line);
         color:var(--muted); font-size:13px; }
@media print { .player audio { display:none; } details { break-inside:avoid; } }
"""


def _page(path: Path, album: dict, profiles: list[str], tracks: list[dict], root: Path, cover: str | None) -> str:
    title, artist = str(_need(album, "title", "the album record")), str(_need(album, "artist", "the album record"))
    mode = album["loudness_mode"]
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="millamusic ' + _e(__version__) + '">',
        f"<title>{_e(title)} \u2014 {_e(artist)} \u00b7 album report</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
    ]
    out += _header(album, profiles, title, artist, cover, len(tracks))
    out += _track_table(album, profiles, tracks, mode)

    # Each section encodes a preview MP3 and scales plots: independent, and LAME and Pillow release the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="millamusic-report") as pool:
        for section in pool.map(lambda track: _track_section(path, track, profiles, mode, root), tracks):
            out += section
    out += [
        "</main>",
        f'<footer>Generated by millamusic {_e(__version__)}. Previews are 30 s MP3 128 kbps excerpts '
        "starting at 35 % of each track; the \u201cfull track\u201d links open the delivered MP3 320 next to "
        "this page.</footer>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _header(album: dict, profiles: list[str], title: str, artist: str, cover: str | None, n_tracks: int) -> list[str]:
    mode = album["loudness_mode"]
    album_lufs = album.get("album_lufs") or {}
    out = ['<header class="album">']
    if cover:
        out.append(f'<img class="cover" src="{cover}" alt="Cover art of {_e(title)}" width="300" height="300">')
    else:
        out.append('<div class="nocover">no artwork</div>')
    out += ['<div class="facts">', f'<h1 id="album-title">{_e(title)}</h1>', f'<p class="artist">{_e(artist)}</p>',
            '<dl class="meta">']
    rows = [("Year", album.get("year")), ("Label", album.get("label")), ("UPC", album.get("upc")),
            ("Copyright", album.get("copyright")), ("Tracks", n_tracks)]
    for name, value in rows:
        out.append(f"<dt>{name}</dt><dd>{_e(value) if value not in (None, '') else DASH}</dd>")
    out.append("<dt>Profiles</dt><dd>" + ", ".join(
        f'<span title="{_e(PROFILES[p].description)}">{_e(p)}</span>' for p in profiles) + "</dd>")
    mode_text = ("album (one gain for all tracks; they keep their relative loudness)" if mode == "album"
                 else "track (each track mastered to the profile's target)")
    out.append(f"<dt>Loudness mode</dt><dd>{_e(mode_text)}</dd>")
    parts = []
    for p in profiles:
        target = PROFILES[p].integrated_lufs
        value = album_lufs.get(p)
        mark = ""
        if mode == "album":
            mark = " " + _mark(_loud_ok(value, target),
                               f"album loudness within \u00b1{LOUDNESS_TOLERANCE_LU} LU of {_num(target, '.1f')} LUFS")
        parts.append(f"{_e(p)}: {_num(value, '.2f', ' LUFS')} (target {_num(target, '.1f')}){mark}")
    out.append("<dt>Album loudness</dt><dd>" + "<br>".join(parts) + "</dd>")
    out += ["</dl>", "</div>", "</header>"]
    out.append('<div class="disclosure" id="disclosure" role="note"><strong>AI disclosure</strong>'
               f"{_e(album.get('disclosure') or '')}</div>")
    return out


def _track_table(album: dict, profiles: list[str], tracks: list[dict], mode: str) -> list[str]:
    album_lufs = album.get("album_lufs") or {}
    out = ['<h2 id="tracks">Tracks</h2>', '<div class="tracks">', '<table class="tracklist">']
    if mode == "album":
        caption = ("Album loudness mode: the tracks share one gain and keep their relative loudness, so a track "
                   "is not meant to sit at the profile's target. \u0394 album is the track's integrated loudness "
                   "minus the album's; the pass mark checks the true peak against the profile's ceiling only.")
    else:
        caption = (f"Pass: integrated loudness within \u00b1{LOUDNESS_TOLERANCE_LU} LU of the profile's target and "
                   "true peak at or under its ceiling.")
    out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(
        f'<th rowspan="2"{cls}>{name}</th>' for name, cls in
        (("#", ' class="num"'), ("Title", ""), ("ISRC", ""), ("Length", ' class="num"'), ("Engines<br><span class=\"small\">backing / vocals</span>", ""),
         ("ContainsAI", ""))) + "".join(
        f'<th colspan="4" class="profile">{_e(p)}<br><span class="small">{_num(PROFILES[p].integrated_lufs, ".1f")} '
        f'LUFS \u00b7 \u2264 {_num(PROFILES[p].true_peak_dbtp, ".1f")} dBTP</span></th>' for p in profiles) + "</tr>")
    lufs_head = "LUFS<br>(\u0394 album)" if mode == "album" else "LUFS"
    out.append("<tr>" + "".join(
        f'<th class="num first">{lufs_head}</th><th class="num">TP<br>dBTP</th><th class="num">LRA<br>LU</th><th>Check</th>'
        for _ in profiles) + "</tr></thead>")
    out.append("<tbody>")
    for track in tracks:
        engines = track.get("engines") or {}
        cells = [
            f'<td class="num">{_e(track["number"])}</td>',
            f'<td class="track-title"><a href="#track-{_e(track["number"])}">{_e(track["title"])}</a></td>',
            f"<td class=\"nowrap\">{_e(track.get('isrc') or DASH)}</td>",
            f'<td class="num">{_mmss(track["duration_seconds"])}</td>',
            f"<td>{_e(engines.get('backing') or DASH)} / {_e(engines.get('vocals') or DASH)}</td>",
            f'<td><span class="ai">{_e(track.get("contains_ai") or "?")}</span></td>',
        ]
        for p in profiles:
            m = track["masters"][p]
            lufs = m.get("integrated_lufs")
            loud = _num(lufs, ".2f")
            if mode == "album":
                ref = album_lufs.get(p)
                delta = (lufs - ref) if isinstance(lufs, (int, float)) and isinstance(ref, (int, float)) else None
                loud += f' <span class="small">({_num(delta, "+.1f")})</span>'
            ok, problems = _master_verdict(m, p, mode)
            cells += [f'<td class="num first">{loud}</td>', f'<td class="num">{_num(m.get("true_peak_dbtp"), ".2f")}</td>',
                      f'<td class="num">{_num(m.get("lra_lu"), ".1f")}</td>',
                      f"<td>{_mark(ok, '; '.join(problems) or 'within the profile')}</td>"]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>", "</div>"]
    return out


def _track_section(page: Path, track: dict, profiles: list[str], mode: str, root: Path) -> list[str]:
    number, title = track["number"], track["title"]
    first = track["masters"][profiles[0]]["files"]
    source = root / (first.get("mp3_v0") or first["wav"])
    preview = base64.b64encode(_preview_mp3(source)).decode("ascii")
    full = _href(root / first["mp3_320"], page)
    start, length = preview_window(float(track["duration_seconds"]))
    out = [f'<section class="track" id="track-{_e(number)}">',
           f'<h2><span class="small">{_e(number)}.</span> {_e(title)}</h2>',
           f'<p class="small">ISRC {_e(track.get("isrc") or DASH)} \u00b7 {_mmss(track["duration_seconds"])} \u00b7 '
           f'ContainsAI <span class="ai">{_e(track.get("contains_ai") or "?")}</span> \u00b7 digital source type '
           f'{_e(_source_type(track.get("digital_source_type")))} \u00b7 {_e(track.get("stages", "?"))} stages, '
           f'{_e(track.get("cache_hits", "?"))} from cache</p>',
           '<div class="player">',
           f'<audio controls preload="metadata" src="data:audio/mpeg;base64,{preview}" '
           f'aria-label="Preview of {_e(title)}"></audio>',
           f'<span class="small">Preview: {_mmss(length)} from {_mmss(start)} (MP3 128 kbps, {_e(profiles[0])} master)'
           f' \u00b7 <a href="{_e(full)}">full track</a> (MP3 320, {_e(profiles[0])})</span>',
           "</div>"]
    for i, p in enumerate(profiles):
        m = track["masters"][p]
        ok, problems = _master_verdict(m, p, mode)
        files = " ".join(f'<a href="{_e(_href(root / m["files"][k], page))}">{_FILE_LABELS[k]}</a>'
                         for k in FILE_KINDS)
        image = _image_data_uri(root / m["files"]["report"], REPORT_PX, "PNG", width_only=True)
        out += [f"<details{' open' if i == 0 else ''}>",
                f"<summary>Master report \u00b7 {_e(p)} \u00b7 {_num(m.get('integrated_lufs'), '.2f', ' LUFS')}, "
                f"{_num(m.get('true_peak_dbtp'), '.2f', ' dBTP')} {_mark(ok, '; '.join(problems))}</summary>",
                f'<p class="files small">Files: {files}</p>',
                *(['<p class="small">Album loudness mode: the report\u2019s loudness verdict compares this track '
                   'with the profile\u2019s target; its offset from the album loudness is intended, so only the true '
                   'peak counts here.</p>'] if mode == "album" else []),
                f'<img class="report" src="{image}" alt="Master report of {_e(title)} for {_e(p)}">',
                "</details>"]
    out += _credits(track)
    out.append("</section>")
    return out


def _credits(track: dict) -> list[str]:
    credits = track.get("credits") or []
    out = ["<h3>Credits</h3>", '<table class="credits">',
           "<thead><tr>" + "".join(f"<th>{c}</th>" for c in _CREDIT_COLUMNS) + "</tr></thead>", "<tbody>"]
    if not credits:
        out.append(f'<tr><td colspan="{len(_CREDIT_COLUMNS)}">no credits recorded</td></tr>')
    for credit in credits:
        cells = []
        for col in _CREDIT_COLUMNS:
            value = credit.get(col)
            text = _e(value) if value not in (None, "") else DASH
            if col == "licence" and credit.get("generator") != "human" and not licence_allows_commercial(
                    str(value or "")):
                text += ' <span class="warn" title="not cleared for commercial release">\u26a0 non-commercial or unknown</span>'
            cells.append(f'<td class="{col}">{text}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return out
