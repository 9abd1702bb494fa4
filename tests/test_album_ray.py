"""`millamusic album --executor ray`: the album's songs as tasks on a Ray cluster (a local one,
started here as a user would start a head node), with the same output as a local build."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from millamusic.cli import main
from tests.test_album_build import build, make_album, masters_bytes

pytestmark = pytest.mark.slow  # a Ray cluster and an album build (40 s)


ray = pytest.importorskip("ray", reason="the Ray executor needs millamusic[ray] (installed by .ci/run)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray cluster: 2 CPUs and one (declared) GPU, so the GPU requests are scheduled
    for real; the arranger does not touch it."""
    command = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([str(command), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=1",
                              "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                             capture_output=True, text=True, env=env, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(command), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_builds_the_same_album_as_a_local_build_with_backing_on_gpu_workers(tmp_path, ray_head, monkeypatch):
    from millamusic.engines import REGISTRY

    album = make_album(tmp_path / "songs", loudness="album")
    local, _ = build(album, tmp_path / "local")
    # The arranger standing in for MusicGen: the driver splits a GPU engine's tracks into a
    # backing task that asks for the GPU and a CPU task for the rest.
    monkeypatch.setitem(REGISTRY, "arranger", REGISTRY["arranger"].__class__(**{**REGISTRY["arranger"].__dict__,
                                                                                 "gpu": True}))
    on_ray, output = build(album, tmp_path / "ray", "--executor", "ray", "--address", ray_head)
    assert "Ray cluster: 2 CPUs, 1 GPUs, 1 node(s)" in output
    assert output.count("backing            on ") == 3 and "GPU 0" in output  # each track's backing had the GPU
    assert masters_bytes(tmp_path / "ray", signed=False) == masters_bytes(tmp_path / "local", signed=False)
    assert [t["masters"] for t in on_ray["tracks"]] == [t["masters"] for t in local["tracks"]]
    lyrics = sorted(p.name for p in (tmp_path / "ray" / "lyrics").iterdir())
    assert lyrics == sorted(p.name for p in (tmp_path / "local" / "lyrics").iterdir())
    assert (tmp_path / "ray" / "album" / "short-album" / "report.html").is_file()
    # the record says what ran: the backing made on the GPU worker is not a "cache hit"
    assert all(t["cache_hits"] == 0 for t in on_ray["tracks"])


def test_ray_option_errors(tmp_path):
    album = make_album(tmp_path / "songs", loudness="track")
    for args, message in ((["--executor", "ray", "--jobs", "2"], "--jobs is for the local executor"),
                          (["--address", "127.0.0.1:6379"], "use it with --executor ray")):
        result = CliRunner().invoke(main, ["album", str(album), "--out", str(tmp_path / "out"), *args])
        assert result.exit_code == 2 and message in result.output
    port = free_port()  # nobody listens there
    result = CliRunner().invoke(main, ["album", str(album), "--out", str(tmp_path / "out"), "--executor", "ray",
                                       "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 3 and f"no Ray cluster answers at 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "out" / "masters").exists()
