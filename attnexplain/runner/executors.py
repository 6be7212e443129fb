"""Executors: how the units of a run are scheduled.

The interface is one method, so that a cluster executor (Ray, a job queue) can stand in for
the local one: given a worker and units in dependency order, run each and yield its
:class:`~attnexplain.runner.store.Finished` record as it ends. Units are independent apart
from ``unit.depends_on``; the worker writes everything into the run store itself, so an
executor moves only units and records, never results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from attnexplain.runner.store import Finished
from attnexplain.runner.units import Unit


class Executor(Protocol):
    def map(self, work: Callable[[Unit], Finished], units: Sequence[Unit]) -> Iterator[Finished]:
        """Call ``work(unit)`` for every unit, each only once every key in its ``depends_on``
        is finished (finished already, or earlier in ``units``), and yield the records as the
        units end. An error in ``work`` propagates to the caller."""
        ...


class LocalExecutor:
    """One unit after another in this process, in the order given."""

    def map(self, work: Callable[[Unit], Finished], units: Sequence[Unit]) -> Iterator[Finished]:
        for unit in units:
            yield work(unit)
