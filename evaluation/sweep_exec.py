"""Where sweep points run: in this process, a local process pool (`--jobs`) or as Ray tasks
(`--ray [ADDRESS]`). Every executor returns results in the order of the points given."""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import socket
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from evaluation.sweep_points import Point, run_point
from llmsim_core.cli_guard import worker_signals
from llmsim_core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


class PointRunner:
    """Runs batches of points; `close()` releases the workers."""

    def map(self, points: list[Point]) -> list[dict[str, Any]]:
        """Each point's metrics, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> PointRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalRunner(PointRunner):
    """Points in this process (`jobs` 1), or in a pool of `jobs` worker processes."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.pool: ProcessPoolExecutor | None = None

    def map(self, points: list[Point]) -> list[dict[str, Any]]:
        if self.jobs == 1 or len(points) == 1:
            return [run_point(p) for p in points]
        if self.pool is None:
            # fork reuses this process's imports; each worker then starts in milliseconds.
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            # Workers leave Ctrl-C to this process, which reports it once and stops them.
            workers = min(self.jobs, max(len(points), os.cpu_count() or 1))
            self.pool = ProcessPoolExecutor(max_workers=workers,
                                            mp_context=context, initializer=worker_signals)
        try:
            return list(self.pool.map(run_point, points))
        except BaseException:
            self._stop_workers()
            raise

    def _stop_workers(self) -> None:
        """End the pool at once: cancel the points not started, stop the running ones."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class RayRunner(PointRunner):
    """Points as Ray tasks of one CPU each: on a new local Ray instance of `jobs` CPUs, or on
    the cluster at `address` (whose nodes need this checkout at the same path)."""

    def __init__(self, address: str | None, jobs: int) -> None:
        if importlib.util.find_spec("ray") is None:
            raise InputError("Ray is not installed", "--ray", "pip install "
                             "'llmservingsim-py[ray]' (in a checkout: ./compile.sh ray)")
        if address:
            _check_reachable(address)
        import ray

        self.ray = ray
        # Workers import evaluation/ and dataset/ from the checkout, as this process does.
        runtime_env = {"env_vars": {"PYTHONPATH": str(REPO)}}
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": jobs}
        try:
            ray.init(runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot start or reach Ray ({str(exc).splitlines()[0]})",
                             f"--ray {address or ''}".strip(),
                             "check the address (ray://HOST:PORT or HOST:PORT) or drop it "
                             "for a local Ray") from None
        self.task = ray.remote(num_cpus=1)(run_point)

    def map(self, points: list[Point]) -> list[dict[str, Any]]:
        return self.ray.get([self.task.remote(p) for p in points])

    def close(self) -> None:
        self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address that refuses connections is an error now;
    Ray itself would retry it for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(f"no Ray cluster answers at {address} ({exc.strerror or exc})",
                         f"--ray {address}", "start the cluster (ray start --head) or drop "
                         "ADDRESS for a local Ray") from None


def make_runner(jobs: int, ray_address: str | None, use_ray: bool) -> PointRunner:
    """The executor the command line asks for."""
    return RayRunner(ray_address, jobs) if use_ray else LocalRunner(jobs)
