"""Where the parts of a sweep's cells run: a local process pool, or a Dask cluster.

Both yield `compute_part` results as parts finish, in whatever order, and
stop every part still running when the `with` block is left (Ctrl-C
included): a local pool terminates its processes, Dask cancels its tasks.
Results do not depend on the executor: every run is deterministic.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from pipebench.errors import InputError
from pipebench.sweep.cell import CellPart, PartResult, compute_part

EXECUTORS = ("local", "dask")


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the client, which terminates them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def local_pool(parts: list[CellPart], workers: int) -> Iterator[Iterator[PartResult]]:
    """A pool of `workers` fresh processes (spawned: no state forked from the client's threads)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(parts)), initializer=_ignore_sigint) as pool:
        yield pool.imap_unordered(compute_part, parts, chunksize=1)
    # leaving the `with` terminates the workers, also on Ctrl-C


@contextmanager
def dask_pool(
    parts: list[CellPart], workers: int, scheduler: str | None
) -> Iterator[Iterator[PartResult]]:
    """The cluster at `scheduler` (tcp://HOST:PORT), or a LocalCluster of `workers` processes."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError(
            "executor", "dask needs the dask extra: pip install 'pipebench[dask]'"
        ) from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    else:
        try:  # waits up to dask's distributed.comm.timeouts.connect (30 s by default)
            client = Client(scheduler)
        except (OSError, TimeoutError, ValueError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError("scheduler", f"cannot reach {scheduler!r}: {message}") from None
    futures = []
    try:
        futures = [client.submit(compute_part, part, pure=False) for part in parts]
        yield (future.result() for future in as_completed(futures))
    finally:
        client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()


def part_pool(
    executor: str, parts: list[CellPart], workers: int, scheduler: str | None
) -> AbstractContextManager[Iterator[PartResult]]:
    """The executor by name (see EXECUTORS)."""
    if executor == "dask":
        return dask_pool(parts, workers, scheduler)
    return local_pool(parts, workers)
