"""Cache keys follow the code: a changed setting re-renders exactly the stages it shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from millamusic.mastering.config import MASTERING
from millamusic.mix import MIX
from millamusic.pipeline.render import render
from millamusic.pipeline.stages import RenderOptions
from millamusic.pipeline.status import song_status
from millamusic.spec.song import load_song
from tests.conftest import SHORT_SONG


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A short song rendered once with the default settings: (song, options)."""
    root = tmp_path_factory.mktemp("cache-keys")
    (root / "songs").mkdir()
    spec = root / "songs" / "cache-keys.yaml"
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=4, extra=""))
    song = load_song(spec)
    options = RenderOptions(out_root=root / "out", cache_dir=root / "cache")
    first = render(song, options)
    assert not any(stage.cached for stage in first.stages)
    return song, options


def ran(song, options) -> set[str]:
    """The stages a render with `options` ran (not served from the cache), without their profiles."""
    return {stage.name.split("[")[0] for stage in render(song, options).stages if not stage.cached}


def test_a_mastering_constant_re_runs_master_and_export_only(rendered):
    song, options = rendered
    stiffer = replace(options, mastering=replace(MASTERING, glue=replace(MASTERING.glue, ratio=2.0)))
    predicted = {row.stage: row for row in song_status(song, stiffer)}
    assert predicted["master[spotify]"].state == "runs"
    assert predicted["master[spotify]"].why == "the mastering chain's settings changed"
    assert ran(song, stiffer) == {"master", "export"}
    assert ran(song, stiffer) == set()  # and now both are cached under the new settings
    assert ran(song, options) == set()  # the old settings' entries are still there


def test_a_limiter_constant_is_a_mastering_constant_too(rendered):
    song, options = rendered
    slower = replace(options, mastering=replace(MASTERING, limiter=replace(MASTERING.limiter, release_db_per_s=30.0)))
    assert ran(song, slower) == {"master", "export"}


def test_a_mix_setting_re_runs_mix_master_and_export_only(rendered):
    song, options = rendered
    drier = replace(options, mix=replace(MIX, plate=replace(MIX.plate, room_size=0.3)))
    assert ran(song, drier) == {"mix", "master", "export"}
