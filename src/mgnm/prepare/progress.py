"""Progress of one pass over a file: a rich bar on a terminal, one summary line always.

The bar shows bytes read of the (possibly compressed) input against its size, the number of
records so far and their rate. It goes to stderr and is left out when stderr is not a
terminal; the closing line (``read FILE: N records in S s (R/s)``) is printed in both cases
unless ``quiet``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType


class Pass:
    """Context manager: ``with Pass("reviews", path_size, "records") as p: p.update(pos, n)``.

    ``total`` is the input's size in bytes, or with ``in_bytes=False`` the number of records.
    """

    def __init__(self, description: str, total: int | None, unit: str = "records",
                 quiet: bool = False, in_bytes: bool = True) -> None:
        self.description = description
        self.total = total
        self.in_bytes = in_bytes
        self.unit = unit
        self.quiet = quiet
        self.count = 0
        self._progress = None
        self._task = None
        self._start = time.perf_counter()

    def __enter__(self) -> Pass:
        self._start = time.perf_counter()
        if self.quiet:
            return self
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return self
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            *((DownloadColumn(), TransferSpeedColumn()) if self.in_bytes else
              (MofNCompleteColumn(),)),
            TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total, count="")
        return self

    def update(self, position: int, count: int | None = None) -> None:
        """``position``: bytes consumed of the input (or records); ``count``: records so far
        (default: the caller's own tally in :attr:`count`)."""
        if count is not None:
            self.count = count
        count = self.count
        if self._progress is not None:
            rate = count / max(time.perf_counter() - self._start, 1e-9)
            self._progress.update(self._task, completed=position,
                                  count=f"{count:,} {self.unit} ({rate:,.0f}/s)")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
        if exc_type is None and not self.quiet:
            secs = time.perf_counter() - self._start
            print(f"{self.description}: {self.count:,} {self.unit} in {secs:.1f} s "
                  f"({self.count / max(secs, 1e-9):,.0f}/s)", file=sys.stderr, flush=True)
