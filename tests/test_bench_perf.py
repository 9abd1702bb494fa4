"""bench/perf.py runs from a checkout: the four scenarios on a short song, its JSON, and its check
that each edit re-ran exactly what depends on it (no timing is asserted: figures are bench's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHORT_SONG

pytestmark = pytest.mark.slow  # runs bench/perf.py: 10 s

ROOT = Path(__file__).resolve().parents[1]


def test_perf_harness_runs_every_scenario_and_writes_json(tmp_path):
    spec = tmp_path / "songs" / "tiny.yaml"
    spec.parent.mkdir()
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3,
                                      extra="master: {profiles: [spotify]}\n"))
    result_path = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "perf.py"), "--runs", "1", "--spec", str(spec),
                           "--json", str(result_path)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-ran as expected" in done.stdout and " NO:" not in done.stdout, done.stdout
    result = json.loads(result_path.read_text())
    scenarios = result["scenarios"]
    assert list(scenarios) == ["cold", "unchanged", "master", "lyric"]
    assert scenarios["unchanged"]["ran"] == [] and scenarios["unchanged"]["cache_hits"] == 8
    assert scenarios["master"]["ran"] == ["export[apple]", "master[apple]"]
    assert "backing" not in scenarios["lyric"]["ran"] and "vocals" in scenarios["lyric"]["ran"]
    for figures in scenarios.values():
        assert figures["as_expected"] and figures["wall_s"] > 0 and figures["peak_rss_mb"] > 0
        assert figures["rtf"] == round(figures["wall_s"] / result["audio_seconds"], 4)
    assert result["machine"]["cores"] >= 1 and result["runs"] == 1
    assert spec.read_text().count("[spotify]") == 1, "the harness edits a copy, never the song itself"
