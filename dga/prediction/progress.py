"""Progress of a long prediction where its user looks: a bar on a terminal, plain lines in a log.

A job counts its work in bases: each base is read twice by the network (both strands) and decoded
once. When standard output is not a terminal (a log file, a SLURM job), a line is printed every
`interval` seconds (DGA_PROGRESS_SECONDS, default 30) and when the job ends, so a long run is never
silent.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

READS, DECODE = 2, 1  # passes over every base: the two network reads, the decoder


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _seconds_from_env() -> float:
    text = os.environ.get("DGA_PROGRESS_SECONDS", "30")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        from dga.errors import InputError

        raise InputError(None, f"DGA_PROGRESS_SECONDS={text!r}: give the seconds between progress lines (e.g. 30)")
    return seconds


class JobProgress:
    """Bases read and decoded by one job, shown as a tqdm bar on a terminal or as periodic lines."""

    def __init__(self, bases: int, label: str = "predict", *, interval: float | None = None,
                 stream: TextIO | None = None, terminal: bool | None = None):
        self.total = (READS + DECODE) * bases
        self.label = label
        self.interval = _seconds_from_env() if interval is None else interval
        self.stream = stream or sys.stdout
        self.done, self.units_done, self.units = 0, 0, 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        if terminal if terminal is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="b", unit_scale=True, desc=label, mininterval=1)

    def read(self, bases: int) -> None:
        """`bases` of one strand read by the network."""
        self._add(bases)

    def decoded(self, bases: int) -> None:
        """`bases` decoded."""
        self._add(bases)

    def unit_done(self) -> None:
        self.units_done += 1

    def advance(self, n: int) -> None:
        """`n` units of work done at once (a worker process's whole group: each base counted
        READS + DECODE times)."""
        self._add(n)

    def _add(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.perf_counter() - self.last >= self.interval:
            self.line()

    def line(self) -> None:
        """One plain line: share done, elapsed, time left at the rate so far."""
        now = time.perf_counter()
        self.last = now
        share = self.done / max(self.total, 1)
        left = (now - self.start) * (1 - share) / share if share > 0 else float("nan")
        left_text = _clock(left) if left == left else "?"
        units = f", {self.units_done} of {self.units} sequence groups" if self.units else ""
        print(f"{self.label}: {100 * share:.1f} % of {self.total // (READS + DECODE):,} bases{units}; "
              f"{_clock(now - self.start)} elapsed, ~{left_text} left", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print(f"{self.label}: done, {self.total // (READS + DECODE):,} bases in "
                  f"{_clock(time.perf_counter() - self.start)}", file=self.stream, flush=True)
