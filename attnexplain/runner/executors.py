"""Executors: how the units of a run are scheduled.

The interface is one method: given a worker and units in dependency order, run each unit once
the units it depends on are finished, and yield a :class:`~attnexplain.runner.store.Finished`
record as each one ends (or a :class:`UnitFailure`, for the executors that keep going past a
failing unit). The worker writes everything into the run store itself, so an executor moves
only units and records, never results.

- :class:`LocalExecutor` (the default): one unit after another in this process; an error
  propagates at once.
- :class:`ProcessExecutor`: ``workers`` processes on this machine, one torch thread each.
- :class:`RayExecutor`: the tasks of a Ray cluster, one CPU each.

The last two share :func:`schedule`: units go out as soon as their dependencies finish, a unit
that fails is reported with its traceback while the others keep going, and the units that
depend on it are reported as not run. Nothing finished is lost: re-running the plan runs only
what failed or never ran.
"""

from __future__ import annotations

import os
import socket
import traceback
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from attnexplain.errors import AttnExplainError
from attnexplain.runner.store import Finished
from attnexplain.runner.units import Unit

Work = Callable[[Unit], Finished]

# How long a Ray address may take to accept a connection before it is refused.
CONNECT_TIMEOUT_S = 10.0
# Where a local Ray instance of our own listens.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class UnitFailure:
    """A unit that did not finish: ``error`` is the traceback of its failure (or, for a unit
    whose dependency failed, why it did not run)."""

    key: str
    label: str
    error: str
    ran: bool = True

    @property
    def summary(self) -> str:
        """The traceback's last line: the exception and its message."""
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else "unknown error"


Outcome = Finished | UnitFailure


class Executor(Protocol):
    def map(self, work: Work, units: Sequence[Unit]) -> Iterator[Outcome]:
        """Call ``work(unit)`` for every unit, each only once every key in its ``depends_on``
        is finished (finished already, or earlier in ``units``), and yield the outcomes as the
        units end."""
        ...


class LocalExecutor:
    """One unit after another in this process, in the order given; an error in a unit
    propagates at once (with its own exception type, e.g. Ctrl-C)."""

    def map(self, work: Work, units: Sequence[Unit]) -> Iterator[Outcome]:
        for unit in units:
            yield work(unit)


class _Pool(Protocol):
    """What :func:`schedule` needs of a pool of workers."""

    def submit(self, unit: Unit) -> Hashable:
        """Start ``unit``; returns a handle for :meth:`wait`."""
        ...

    def wait(self, handles: list[Hashable]) -> list[tuple[Hashable, Outcome]]:
        """Block until at least one of ``handles`` ends; return those that ended."""
        ...


def schedule(pool: _Pool, units: Sequence[Unit]) -> Iterator[Outcome]:
    """Run ``units`` on ``pool``: each as soon as the units of ``units`` it depends on have
    finished (in the given order among those ready), yielding outcomes as they arrive. A unit
    whose dependency failed is not run and yields a :class:`UnitFailure` with ``ran=False``."""
    waiting = list(units)
    unfinished = {unit.key for unit in units}
    failed: dict[str, str] = {}
    running: dict[Hashable, Unit] = {}
    while waiting or running:
        still_waiting = []
        for unit in waiting:
            broken = [key for key in unit.depends_on if key in failed]
            if broken:
                failed[unit.key] = unit.label
                unfinished.discard(unit.key)
                yield UnitFailure(
                    unit.key, unit.label, f"not run: it needs {failed[broken[0]]}", ran=False
                )
            elif any(key in unfinished for key in unit.depends_on):
                still_waiting.append(unit)
            else:
                running[pool.submit(unit)] = unit
        waiting = still_waiting
        if not running:
            continue  # only units of failed dependencies were left; the loop reports them
        for handle, outcome in pool.wait(list(running)):
            unit = running.pop(handle)
            unfinished.discard(unit.key)
            if isinstance(outcome, UnitFailure):
                failed[unit.key] = unit.label
            yield outcome


def _failure(unit: Unit, error: BaseException) -> UnitFailure:
    text = "".join(traceback.format_exception(error))
    return UnitFailure(unit.key, unit.label, text)


# ------------------------------------------------------------------ processes on this machine

_PROCESS_WORK: Work | None = None


def _start_process(work: Work, threads: int) -> None:
    import torch

    global _PROCESS_WORK
    torch.set_num_threads(threads)
    _PROCESS_WORK = work


def _run_in_process(unit: Unit) -> Finished:
    assert _PROCESS_WORK is not None, "the pool initialiser sets the worker"
    return _PROCESS_WORK(unit)


class _ProcessPool:
    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool
        self.units: dict[Future, Unit] = {}

    def submit(self, unit: Unit) -> Future:
        future = self.pool.submit(_run_in_process, unit)
        self.units[future] = unit
        return future

    def wait(self, handles: list[Hashable]) -> list[tuple[Hashable, Outcome]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)  # type: ignore[arg-type]
        outcomes = []
        for future in done:
            unit = self.units.pop(future)
            error = future.exception()
            outcomes.append((future, _failure(unit, error) if error else future.result()))
        return outcomes


@dataclass
class ProcessExecutor:
    """``workers`` processes on this machine (default: one per CPU, at most 4), each with
    ``cpu_count // workers`` torch threads (``OMP_NUM_THREADS`` where set). A worker process
    that dies (killed, out of memory) fails the units it and the pool had in hand; re-running
    the plan runs them again. ``fresh``: a new process for every unit (slower: each reloads
    its data), so that the memory a process reports is that unit's alone."""

    workers: int | None = None
    fresh: bool = False

    def __post_init__(self) -> None:
        # refused when made, so that a run that cannot start leaves no manifest behind
        if self.workers is not None and self.workers < 1:
            raise AttnExplainError(
                f"--workers must be at least 1, got {self.workers} (leave it out for one per "
                "CPU, at most 4)"
            )

    def map(self, work: Work, units: Sequence[Unit]) -> Iterator[Outcome]:
        cpus = os.cpu_count() or 1
        workers = self.workers or min(cpus, 4)
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),  # torch and threads do not survive fork
            initializer=_start_process,
            max_tasks_per_child=1 if self.fresh else None,
            initargs=(work, int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, cpus // workers)),
        )
        try:
            yield from schedule(_ProcessPool(pool), units)
        finally:
            # Ctrl-C or an abandoned generator: drop queued units, do not wait for the others
            pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------- Ray


def _run_on_ray(work: Work, unit: Unit) -> Finished:
    import torch

    torch.set_num_threads(1)
    return work(unit)


def _probe_path(path: str) -> bool:
    return Path(path).is_file()


class _RayPool:
    def __init__(self, ray: Any, work: Work) -> None:
        self.ray = ray
        self.task = ray.remote(num_cpus=1, max_retries=0)(_run_on_ray)
        self.work = ray.put(work)
        self.units: dict[Any, Unit] = {}

    def submit(self, unit: Unit) -> Any:
        ref = self.task.remote(self.work, unit)
        self.units[ref] = unit
        return ref

    def wait(self, handles: list[Hashable]) -> list[tuple[Hashable, Outcome]]:
        done, _ = self.ray.wait(handles, num_returns=1)
        outcomes = []
        for ref in done:
            unit = self.units.pop(ref)
            try:
                outcomes.append((ref, self.ray.get(ref)))
            except Exception as error:  # a unit's error, or its worker died (killed, OOM)
                outcomes.append((ref, _failure(unit, error)))
        return outcomes


@dataclass
class RayExecutor:
    """The tasks of a Ray cluster, one CPU each (``pip install 'attnexplain[ray]'``).

    ``address``: the cluster to join (``ray://host:10001`` or ``host:6379``; None: the one
    ``ray.init`` already joined in this process, else ``RAY_ADDRESS``, else a new local
    instance on the loopback interface, without a dashboard; to serve other machines, start
    a cluster with ``ray start --head`` and pass its address). An address that does not
    accept a connection within :data:`CONNECT_TIMEOUT_S` seconds is refused when the executor
    is made. Every node needs attnexplain installed, and the run directory and the data
    cache must be paths every node sees (a shared filesystem): workers write each unit's
    results into the run store themselves. A task is not retried by Ray: a unit whose worker
    dies is reported failed and runs again on the next invocation of the plan.
    """

    address: str | None = None
    probe_root: Path | None = None

    def __post_init__(self) -> None:
        # ray.init retries an unreachable cluster for minutes, printing warnings: ask first,
        # before the run writes anything
        if self.address is not None:
            _check_reachable(self.address)

    def map(self, work: Work, units: Sequence[Unit]) -> Iterator[Outcome]:
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is None and not os.environ.get("RAY_ADDRESS"):
                # a local instance of our own: reachable from this machine only
                ray.init(log_to_driver=True, include_dashboard=False, _node_ip_address=LOOPBACK)
            else:
                ray.init(address=self.address, log_to_driver=True)
        if self.probe_root is not None:
            self._check_shared(ray, self.probe_root)
        yield from schedule(_RayPool(ray, work), units)

    @staticmethod
    def _check_shared(ray: Any, root: Path) -> None:
        """Refuse a cluster whose workers cannot see ``root`` (the run directory)."""
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".ray-probe-{uuid.uuid4().hex}"
        probe.write_text("attnexplain")
        try:
            seen = ray.get(ray.remote(num_cpus=0)(_probe_path).remote(str(probe.resolve())))
        finally:
            probe.unlink()
        if not seen:
            raise AttnExplainError(
                f"the Ray workers cannot see the run directory {root.resolve()}; put it (and "
                "the data cache, --cache-dir) on a filesystem every node mounts at the same path"
            )


def _check_reachable(address: str) -> None:
    """Refuse a Ray ``address`` (``ray://host:port`` or ``host:port``; ``auto`` and ``local``
    are Ray's own to resolve) that accepts no TCP connection within :data:`CONNECT_TIMEOUT_S`."""
    target = address.removeprefix("ray://")
    if target in ("auto", "local"):
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise AttnExplainError(
            f"--address {address!r} is not a Ray address; pass host:port (e.g. head:6379) or "
            "ray://host:port (e.g. ray://head:10001)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise AttnExplainError(
            f"cannot reach the Ray cluster at {address} within {CONNECT_TIMEOUT_S:.0f} s "
            f"({reason}): start it (ray start --head) or check the address"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AttnExplainError(
            "the Ray executor needs ray: pip install 'attnexplain[ray]' (or pip install ray)"
        ) from None
    return ray


EXECUTORS = ("local", "processes", "ray")


def make_executor(
    name: str, workers: int | None = None, address: str | None = None, root: Path | None = None
) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``workers`` for
    ``processes``, ``address`` for ``ray``, ``root`` the run directory (Ray checks its workers
    see it)."""
    if name not in EXECUTORS:
        raise AttnExplainError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if name != "ray" and address is not None:
        raise AttnExplainError("--address is for --executor ray")
    if name != "processes" and workers is not None:
        raise AttnExplainError("--workers is for --executor processes")
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, root)
    return LocalExecutor()
