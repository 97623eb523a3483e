"""What a person watching a long command sees: progress lines that say how far it got, the
time spent and the time left, at most :data:`WIDTH` (120) columns, each flushed at once so
that a run whose output goes to a file (a cluster job, ``> log.txt``) shows it as it
happens.

:class:`Progress` follows one phase of work counted in units (feature batches, SVM fits,
probe steps, t-SNE iterations): it prints a line after the first unit (the first estimate
of the time left), then at most every ``every_seconds``, and a last line when the phase
ends. :class:`RemainingTime` estimates the time left from the units after the first (which
carries tracing and warm-up). It and the formatting (:func:`format_seconds`,
:func:`fit_columns`, :func:`format_value`) are shared by the pretraining progress lines
(:class:`burn_tf.callbacks.ProgressLines`) and the evaluators' fits
(:class:`burn_tf.callbacks.FitProgress`). Imports nothing of burn_tf: any layer may use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

WIDTH = 120
EVERY_SECONDS = 30.0


def format_seconds(seconds: float) -> str:
    """A duration in its largest sensible unit: ``41 s``, ``2.7 min``, ``1.4 h``."""
    seconds = max(float(seconds), 0.0)
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def elapsed_and_left(elapsed: float, left: float | None) -> str:
    """``41 s, ~2.7 min left``; just the elapsed time when nothing is left or the time left
    is unknown."""
    if not left:
        return format_seconds(elapsed)
    return f"{format_seconds(elapsed)}, ~{format_seconds(left)} left"


class RemainingTime:
    """The time a phase has run and the time its remaining units will take, at the rate of
    the units after the first one: the first carries the one-off costs (tracing a
    ``tf.function``, warming caches) and would make every early estimate far too long."""

    def __init__(self):
        self.started = time.monotonic()
        self.done = 0
        self._first_done_at = None

    def advance(self, units: int = 1) -> None:
        self.done += int(units)
        if self._first_done_at is None and self.done:
            self._first_done_at, self._first_units = time.monotonic(), self.done

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self, remaining_units: float | None) -> float | None:
        """Seconds for ``remaining_units`` more (None while nothing is done or when unknown)."""
        if remaining_units is None or not self.done:
            return None
        since_first = self.done - self._first_units
        if since_first > 0:
            rate = (time.monotonic() - self._first_done_at) / since_first
        else:
            rate = (self._first_done_at - self.started) / self._first_units
        return rate * max(remaining_units, 0)

    def line(self, remaining_units: float | None) -> str:
        """``41 s, ~2.7 min left`` (:func:`elapsed_and_left`)."""
        return elapsed_and_left(self.elapsed, self.left(remaining_units))


def fit_columns(head: str, fields: Iterable[str], width: int = WIDTH, sep: str = "  ") -> str:
    """``head`` followed by as many of ``fields`` (in their order, the important ones first)
    as fit in ``width`` columns; the rest are left out, never wrapped."""
    line = head
    for field in fields:
        if len(line) + len(sep) + len(field) > width:
            break
        line += sep + field
    return line


def format_value(value) -> str:
    """A logged number in at most 3 significant digits (``0.621``, ``8.07``, ``1.2e+03``)."""
    return f"{float(value):.3g}"


class Progress:
    """Progress of one phase of ``total`` units (None: unknown), printed as lines such as

        svm few-shot: 1200/10400 SVMs (11%)  2.1 min, ~16 min left

    after the first unit, then at most every ``every_seconds``, and when the count reaches
    ``total`` (``… (100%)  18 min``). Call :meth:`advance` after each unit (or several),
    :meth:`finish` when a phase of unknown total ends. ``stream`` defaults to the
    ``sys.stdout`` of the moment of printing; every line is flushed.
    """

    def __init__(self, what: str, total: int | None, unit: str = "", *,
                 every_seconds: float = EVERY_SECONDS, stream=None):
        self.what, self.unit = what, unit
        self.total = None if total is None else int(total)
        self.every_seconds = float(every_seconds)
        self.stream = stream
        self.time = RemainingTime()
        self._printed_at = None
        self._finished = False

    @property
    def done(self) -> int:
        return self.time.done

    def line(self, note: str = "") -> str:
        count = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        unit = f" {self.unit}" if self.unit else ""
        percent = f" ({100 * self.done // max(self.total, 1)}%)" if self.total is not None else ""
        remaining = None if self.total is None else self.total - self.done
        head = f"{self.what}: {count}{unit}{percent}  {self.time.line(remaining)}"
        return fit_columns(head, [note] if note else [])

    def _print(self, note: str) -> None:
        print(self.line(note), file=self.stream or sys.stdout, flush=True)
        self._printed_at = time.monotonic()

    def advance(self, units: int = 1, note: str = "") -> None:
        """``units`` more done; prints when a line is due (``note``: e.g. the latest loss)."""
        first = self.done == 0
        self.time.advance(units)
        if self.total is not None and self.done >= self.total:
            self.finish(note)
        elif first or time.monotonic() - self._printed_at >= self.every_seconds:
            self._print(note)

    def finish(self, note: str = "") -> None:
        """Prints the last line (once)."""
        if not self._finished:
            self._finished = True
            self._print(note)
