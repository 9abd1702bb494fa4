"""The album report page (src/millamusic/album_report.py): parsed as HTML and shown in headless Chromium.

A small fake album (3 tracks of 6 s, two profiles) is written with the real export and report
functions; the page is then checked the way a person would see it, in a real browser.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from millamusic.core.audio import Audio
from millamusic.core.errors import ExportError
from millamusic.dsp.loudness import measure
from millamusic.qa.album_report import preview_window, write_album_report
from millamusic.release.flac import write_flac
from millamusic.release.mp3 import write_mp3
from millamusic.release.pcm import write_wav
from millamusic.release.report import write_master_report
from millamusic.release.tags import IPTC_DIGITAL_SOURCE_PREFIX, ReleaseTags
from millamusic.spec.profiles import PROFILES
from tests.programs import require_program
from tests.signals import two_tone_mix

pytestmark = pytest.mark.slow  # writes and encodes a small album (setup 14 s, tests 2-3 s)

RATE = 44100
SECONDS = 6.0
PROFILE_NAMES = ["spotify", "apple"]
IPTC = IPTC_DIGITAL_SOURCE_PREFIX
TITLES = ["Neon Rain", "Glass <Harbour> & \"Ünïcödé\"", "Last Light"]
DISCLOSURE = "Milla is a virtual artist. Music, vocals and lyrics of this album were made with AI tools."
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _png(w: int, h: int) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (w, h), (200, 40, 90))
    for x in range(0, w, 100):  # something to look at, not a flat colour
        im.paste((40, 90, 200), (x, 0, x + 50, h))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _signal(number: int) -> Audio:
    f = 220.0 * (1 + number / 4)
    return two_tone_mix(SECONDS, rate=RATE, freqs=(f, f * 1.5), level=0.3, noise=0.04, seed=number, swell_hz=0.5)


def _at(audio: Audio, lufs: float) -> Audio:
    gain = 10 ** ((lufs - measure(audio).integrated_lufs) / 20)
    return Audio((audio.samples * gain).astype(np.float32), audio.sample_rate)


def _build_album(root: Path, *, mode: str) -> dict:
    """Write 3 tracks x 2 profiles of delivery files under `root`; return the album record."""
    (root / "artwork").mkdir(parents=True)
    (root / "artwork" / "cover.png").write_bytes(_png(1400, 1400))
    tracks = []
    for number, title in enumerate(TITLES, start=1):
        slug = f"{number:02d}-track-{number}"
        credits = [
            {"stage": "lyrics", "engine": "human", "model": "-", "version": "-", "licence": "-",
             "generator": "human", "seed": None, "prompt": None, "by": "A. Writer"},
            {"stage": "backing", "engine": "musicgen", "model": "facebook/musicgen-small", "version": "1.0",
             "licence": "cc-by-nc-4.0", "generator": "trained", "seed": 40 + number,
             "prompt": "synth-pop <with> \"neon\" pads & drums", "by": None},
            {"stage": "vocals", "engine": "piper", "model": "en_US-joe", "version": "1.0", "licence": "MIT",
             "generator": "trained", "seed": 40 + number, "prompt": None, "by": None},
        ]
        tags = ReleaseTags(title=title, artist="Milla", album="First Light", track_number=number, track_total=3,
                             year=2026, isrc=f"QZABC26{number:05d}", disclosure=DISCLOSURE, contains_ai="Partly",
                             digital_source_type=IPTC + "compositeWithTrainedAlgorithmicMedia",
                             ai_credits_json=json.dumps(credits))
        mix = _signal(number)
        masters = {}
        for profile in PROFILE_NAMES:
            p = PROFILES[profile]
            # album mode: the tracks keep their relative loudness around the target
            lufs = p.integrated_lufs + (number - 2) * 1.5 if mode == "album" else p.integrated_lufs
            audio = _at(mix, lufs)
            folder = root / "tracks" / slug / profile
            files = {"wav": folder / f"{slug}.wav", "flac": folder / f"{slug}.flac",
                     "mp3_320": folder / f"{slug}.mp3", "mp3_v0": folder / f"{slug}.v0.mp3",
                     "report": folder / f"{slug}.report.png"}
            write_wav(audio, files["wav"])
            write_flac(audio, files["flac"], tags)
            write_mp3(audio, files["mp3_320"], tags, mode="cbr320")
            write_mp3(audio, files["mp3_v0"], tags, mode="v0")
            m = measure(audio).to_dict()
            write_master_report(audio, files["report"], title=title, profile=profile, target_lufs=p.integrated_lufs,
                                ceiling_dbtp=p.true_peak_dbtp, measured=m)
            masters[profile] = {"integrated_lufs": m["integrated_lufs"], "true_peak_dbtp": m["true_peak_dbtp"],
                                "lra_lu": m["lra_lu"],
                                "files": {k: v.relative_to(root).as_posix() for k, v in files.items()}}
        tracks.append({"number": number, "title": title, "slug": slug, "isrc": tags.isrc,
                       "duration_seconds": SECONDS, "engines": {"backing": "musicgen", "vocals": "piper"},
                       "cache_hits": number - 1, "stages": 5, "contains_ai": "Partly",
                       "digital_source_type": IPTC + "compositeWithTrainedAlgorithmicMedia",
                       "credits": credits, "masters": masters})
    return {"title": "First Light", "artist": "Milla", "year": 2026, "upc": "012345678905", "label": "Milla Records",
            "copyright": "(P) 2026 Milla Records", "profiles": PROFILE_NAMES, "loudness_mode": mode,
            "album_lufs": {p: PROFILES[p].integrated_lufs + 0.05 for p in PROFILE_NAMES},
            "artwork": "artwork/cover.png", "disclosure": DISCLOSURE, "tracks": tracks}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("album")
    album = _build_album(root, mode="album")
    page = write_album_report(root / "album.html", album, root=root)
    return root, album, page


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def _parse(text: str) -> _Page:
    parser = _Page()
    parser.feed(text)
    parser.close()
    return parser


# --------------------------------------------------------------------------- 1. the HTML itself


def test_page_is_self_contained(built):
    root, album, page = built
    text = page.read_text(encoding="utf-8")
    parsed = _parse(text)
    audios = [a for t, a in parsed.tags if t == "audio"]
    assert len(audios) == len(album["tracks"])
    for a in audios:
        assert a["src"].startswith("data:audio/mpeg;base64,"), a["src"][:40]
        assert "controls" in a
    images = [a for t, a in parsed.tags if t == "img"]
    assert len(images) == 1 + len(album["tracks"]) * len(PROFILE_NAMES)  # cover + one report per master
    assert all(a["src"].startswith("data:image/") for a in images)
    body = "".join(parsed.text)
    for title in TITLES:
        assert title in body
    assert DISCLOSURE in body
    assert "First Light" in parsed.title and "Milla" in parsed.title
    assert not re.search(r"https?://", text, re.I)
    # nothing loaded from anywhere else: no scripts, stylesheets or frames by URL
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "iframe"), tag
    # "full track" links point, relatively, at files that exist
    links = [a["href"] for t, a in parsed.tags if t == "a" and not a.get("href", "#").startswith("#")]
    assert links
    for href in links:
        assert (page.parent / html.unescape(href)).is_file(), href
    full = re.findall(r'<a href="([^"]+)">full track</a>', text)
    assert full == [t["masters"]["spotify"]["files"]["mp3_320"] for t in album["tracks"]]
    # escaped, never raw markup from the record
    assert "<Harbour>" not in text and "&lt;Harbour&gt;" in text
    assert "<with>" not in text
    size = page.stat().st_size
    print(f"album report: {size / 1e6:.2f} MB for {len(album['tracks'])} tracks x {len(PROFILE_NAMES)} profiles")
    assert size < 3_000_000


def test_album_mode_shows_offsets_and_the_caption_says_so(built):
    _, _, page = built
    text = page.read_text(encoding="utf-8")
    assert "Album loudness mode" in text
    assert "\u0394 album" in text
    # track 1 sits 1.5 LU under the target and 1.55 under the album loudness, yet passes (peak only)
    row = re.search(r'<tr><td class="num">1</td>.*?</tr>', text).group(0)
    assert "\u22121.6" in row or "\u22121.5" in row
    assert "fail" not in row


def test_track_mode_marks_loudness(tmp_path, built):
    root, album, _ = built
    record = json.loads(json.dumps(album))
    record["loudness_mode"] = "track"
    for t, spotify, apple in zip(record["tracks"], (-13.5, -14.2, -14.0), (-16.0, -16.3, -16.1)):
        t["masters"]["spotify"]["integrated_lufs"] = spotify  # track 1: 0.5 LU over the target, fails
        t["masters"]["apple"]["integrated_lufs"] = apple  # track 2: exactly 0.3 LU off still passes
    record["tracks"][2]["masters"]["apple"]["true_peak_dbtp"] = -0.4  # over the -1.0 ceiling: fails
    page = write_album_report(tmp_path / "track.html", record, root=root)
    text = page.read_text(encoding="utf-8")
    rows = re.findall(r'<tr><td class="num">\d</td>.*?</tr>', text)
    assert len(rows) == 3
    assert rows[0].count("\u2717 fail") == 1  # spotify loudness
    assert "\u2717 fail" not in rows[1]
    assert rows[2].count("\u2717 fail") == 1  # apple true peak
    assert "Album loudness mode" not in text
    # the links are relative to the page's own folder, wherever it is written
    mp3 = record["tracks"][0]["masters"]["spotify"]["files"]["mp3_320"]
    href = re.search(r'<a href="([^"]+)">full track</a>', text).group(1)
    assert href.startswith("../")
    assert (tmp_path / html.unescape(href)).resolve() == (root / mp3).resolve()


def test_preview_window_is_clamped():
    assert preview_window(200.0) == (70.0, 30.0)  # 35 %
    assert preview_window(40.0) == (10.0, 30.0)  # 35 % would run past the end
    assert preview_window(6.0) == (0.0, 6.0)  # shorter than a preview: all of it


# --------------------------------------------------------------------------- 2. in a real browser

_PROBE = """
<pre id="probe"></pre>
<script>
(function () {
  function visible(el) {
    if (!el) return false;
    const s = getComputedStyle(el), r = el.getBoundingClientRect();
    return s.display !== "none" && s.visibility === "visible" && parseFloat(s.opacity) > 0 && r.width > 0 && r.height > 0;
  }
  function ready(a) {
    return new Promise(function (done) {
      if (a.readyState >= 1 || a.error) { done(); return; }
      a.addEventListener("loadedmetadata", done);
      a.addEventListener("error", done);
      let n = 0;
      (function poll() { if (a.readyState >= 1 || a.error || ++n > 400) done(); else setTimeout(poll, 25); })();
    });
  }
  window.addEventListener("load", function () {
    const audios = Array.from(document.querySelectorAll("audio"));
    Promise.all(audios.map(ready)).then(function () {
      const d = document.getElementById("disclosure");
      const out = {
        title: document.title,
        images: Array.from(document.images).map(function (i) {
          return {w: i.naturalWidth, h: i.naturalHeight, complete: i.complete, alt: i.alt}; }),
        audios: audios.map(function (a) {
          return {duration: isFinite(a.duration) ? a.duration : String(a.duration), readyState: a.readyState,
                  error: a.error ? a.error.code : null, networkState: a.networkState}; }),
        titles: Array.from(document.querySelectorAll("td.track-title")).map(function (td) {
          return {text: td.innerText.trim(), visible: visible(td)}; }),
        disclosure: d ? {visible: visible(d), text: d.innerText, visibility: getComputedStyle(d).visibility} : null,
      };
      document.getElementById("probe").textContent = JSON.stringify(out);
    });
  });
})();
</script>
"""


def _browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    return require_program(found, "Chromium (looked for chromium, chromium-browser, google-chrome)",
                           "apt-get install chromium; .ci/run installs it")


def _dump_dom(browser: str, page: Path, profile_dir: Path) -> tuple[str, str]:
    """The page's DOM after load, as Chromium serialises it; tries --headless=new, then old --headless."""
    errors = []
    for headless in ("--headless=new", "--headless"):
        cmd = [browser, headless, "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--mute-audio", f"--user-data-dir={profile_dir}", "--virtual-time-budget=10000", "--dump-dom",
               page.as_uri()]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            errors.append(f"{headless}: timed out")
            continue
        if run.returncode == 0 and 'id="probe">{' in run.stdout:
            return run.stdout, " ".join(cmd)
        errors.append(f"{headless}: exit {run.returncode}; stderr tail: {run.stderr[-800:]}")
    pytest.fail(f"{browser} did not render the page: " + " | ".join(errors))


def test_page_in_headless_chromium(built, tmp_path):
    browser = _browser()
    _, album, page = built
    probed = tmp_path / "probed.html"
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1
    probed.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom, _ = _dump_dom(browser, probed, tmp_path / "chromium-profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    probe = json.loads(html.unescape(found.group(1)))

    assert "First Light" in probe["title"]
    images = probe["images"]
    assert len(images) == 1 + len(album["tracks"]) * len(PROFILE_NAMES)
    broken = [i for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, broken
    assert images[0]["w"] == 600 and images[0]["h"] == 600  # the cover, downscaled from 1400
    assert all(i["w"] == 1000 for i in images[1:])  # the master reports, downscaled from 1600

    audios = probe["audios"]
    assert len(audios) == len(album["tracks"])
    for a in audios:
        assert a["error"] is None and a["networkState"] != 3, a  # 3: NETWORK_NO_SOURCE
        assert isinstance(a["duration"], (int, float)) and SECONDS - 0.5 < a["duration"] < SECONDS + 0.5, a

    assert [t["text"] for t in probe["titles"]] == TITLES
    assert all(t["visible"] for t in probe["titles"]), probe["titles"]
    assert probe["disclosure"] and probe["disclosure"]["visible"], probe["disclosure"]
    assert DISCLOSURE in probe["disclosure"]["text"]


# --------------------------------------------------------------------------- 3. and 4.


def test_rebuild_is_byte_identical(built):
    root, album, page = built
    first = page.read_bytes()
    again = write_album_report(page, json.loads(json.dumps(album)), root=root)  # the same path, a fresh record
    assert again.read_bytes() == first


def test_missing_file_is_named(built, tmp_path):
    root, album, _ = built
    record = json.loads(json.dumps(album))
    record["tracks"][1]["masters"]["apple"]["files"]["report"] = "tracks/nowhere/gone.report.png"
    with pytest.raises(ExportError, match=r"gone\.report\.png"):
        write_album_report(tmp_path / "x.html", record, root=root)
    assert not (tmp_path / "x.html").exists()
    record = json.loads(json.dumps(album))
    record["artwork"] = "artwork/missing-cover.png"
    with pytest.raises(ExportError, match=r"missing-cover\.png"):
        write_album_report(tmp_path / "x.html", record, root=root)
