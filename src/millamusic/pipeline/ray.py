"""Album tracks as Ray tasks (`millamusic album --executor ray`, extra `millamusic[ray]`).

We use Ray rather than a scheduler of our own: a studio that already runs a Ray cluster gets
placement, retries of lost nodes and GPU accounting from it. Each track is one task that
renders it exactly as a local build does (`pipeline.tracks.render_track`, the same cache and
publishing), so results land in the same layout. A track whose backing engine wants a GPU
(MusicGen, `EngineEntry.gpu`) is split in two: its compose and backing stages run as a task
that asks for one GPU, the rest as a CPU task that finds them in the shared stage cache.
Every worker must see the output and cache folders at the same paths (a shared file system)
and have millamusic installed.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from millamusic.core.errors import EngineUnavailable, MillaError
from millamusic.engines import REGISTRY
from millamusic.pipeline.tracks import QueueProgress, drain, render_track


def wants_gpu(song, render_options) -> bool:
    """Whether the track's backing stage should be given a GPU: its engine can use one and the
    spec (or --device) does not pin it to the CPU."""

    name = render_options.backing or song.spec.engines.backing
    device = render_options.device or song.spec.engines.backing_options.get("device", "auto")
    return REGISTRY[name].gpu and device != "cpu"


def _import_ray():
    try:
        import ray  # ray: an optional extra, seconds to import
    except ImportError as error:  # missing, or installed but broken (the cause says which)
        raise EngineUnavailable(f"--executor ray needs Ray, which cannot be imported ({error}). Fix: pip install "
                                "'millamusic[ray]' (on this machine and every worker of the cluster)") from error
    return ray


@contextmanager
def ray_cluster(address: str | None, note: Callable[[str], None]) -> Iterator[None]:
    """Connected to the Ray cluster at `address` for the whole build (None: start a local Ray
    instance of this machine's CPUs and GPUs, and stop it at the end). A driver that is already
    connected (ray.init before the build) keeps its connection."""
    if _use_cluster_token(address) and "ray" in sys.modules:
        note("note: RAY_AUTH_MODE=token was set after Ray was imported in this process; Ray reads it at import. "
             "Fix: set RAY_AUTH_MODE=token before starting the build")
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as error:
            raise EngineUnavailable(f"could not reach the Ray cluster at {address!r}: {error}. Fix: give the head "
                                    "node's address with --address (ray://HOST:10001 or HOST:6379)") from None
    try:
        resources = ray.cluster_resources()
        note(f"Ray cluster: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs, "
             f"{len(ray.nodes())} node(s)")
        yield
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """Fail in seconds on a wrong host or port: Ray itself retries for minutes before it says so."""

    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit() or not host:
        raise EngineUnavailable(f"--address {address!r} is not HOST:PORT. Fix: give the head node's address, e.g. "
                                "ray://10.0.0.5:10001 (Ray client) or 10.0.0.5:6379 (on a cluster node), or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise EngineUnavailable(f"no Ray cluster answers at {address} ({error}). Fix: check the head node's address "
                                "and port (`ray status` on the head node), and that this machine can reach it") from None


def _use_cluster_token(address: str | None) -> bool:
    """Ray 2.5x clusters require a token by default (`ray start` makes ~/.ray/auth_token), but a
    driver connecting to an address does not send it unless RAY_AUTH_MODE=token: set that when a
    token is at hand and the user has not chosen a mode. Ray reads the mode when it is imported,
    so this runs before the import. Returns whether it set the mode."""
    if address is None or "RAY_AUTH_MODE" in os.environ:
        return False
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


def _backing_task(song, render_options, progress, earlier: tuple) -> tuple:
    """A track's compose and backing on a GPU worker; says which GPU it had."""

    import ray  # ray: an optional extra, seconds to import

    reports = render_track(song, render_options, progress, "backing", None, earlier)
    progress("backing", f"on {socket.gethostname()}, GPU {', '.join(map(str, ray.get_gpu_ids())) or 'none'}")
    return reports


def run_on_ray(calls: list[tuple], report: Callable[[int, str, str], None], note: Callable[[str], None]) -> list:
    """Run `album_build._render_track(*call)` for every call (song, render options, until,
    album masters, earlier reports) as Ray tasks (inside `ray_cluster`); results in call order.
    `report(index, stage, state)` gets every finished stage of every track as it happens."""

    ray = _import_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
    from ray.util.queue import Queue  # ray: an optional extra, seconds to import

    queue = Queue()
    task, backing_task = ray.remote(render_track), ray.remote(_backing_task)
    refs = []
    warned = False
    for index, (song, render_options, until, masters, earlier) in enumerate(calls):
        song = dataclasses.replace(song, path=Path(song.path).resolve())  # the workers' folder is not ours
        progress = QueueProgress(queue, index)
        if masters is None and wants_gpu(song, render_options):
            if not gpus and not warned:
                note("no GPU in the cluster: MusicGen stages run on CPU workers (slow)")
                warned = True
            earlier = backing_task.options(num_cpus=1, num_gpus=1 if gpus else 0, name=f"{song.slug}:backing").remote(
                song, render_options, progress, earlier)  # Ray hands its result to the task below
        refs.append(task.options(num_cpus=1, name=song.slug).remote(
            song, render_options, progress, until, masters, earlier))
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
        drain(queue, report)
        _raise_failed(ray, refs, pending)
    drain(queue, report)  # (a task's puts are synchronous: all of them are in the queue)
    return ray.get(refs)


def _raise_failed(ray, refs: list, pending: list) -> None:
    """The first finished task that failed: its own error (a MillaError keeps its exit code)."""
    waiting = set(pending)
    for ref in refs:
        if ref in waiting:
            continue
        try:
            ray.get(ref, timeout=0)
        except ray.exceptions.RayTaskError as error:
            for other in pending:
                ray.cancel(other)
            cause = getattr(error, "cause", None)
            if isinstance(cause, MillaError):
                raise cause from None
            raise
