"""Write a float32 ``.npy`` matrix row by row, in any row order, without holding it in memory.

The file is created at a temporary name beside the target with its full size; rows go to
their place with ``os.pwrite``; rows never written get a fill row (the mean of the written
ones, as MMRec did for items without an image); :meth:`NpyRows.commit` renames it into place.
Memory stays at one row plus a float64 running sum, whatever the number of rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mgnm.errors import DataError


class NpyRows:
    """``with NpyRows(path, n, d) as w: w.write(i, row) ...; w.fill_missing(); w.commit()``."""

    def __init__(self, path: str | Path, n_rows: int, dim: int) -> None:
        self.path = Path(path)
        self.n, self.dim = n_rows, dim
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.present = np.zeros(n_rows, dtype=bool)
        self.total = np.zeros(dim, dtype=np.float64)
        self._fd = -1
        self._offset = 0

    def __enter__(self) -> NpyRows:
        try:
            with open(self.tmp, "wb") as fh:
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": "<f4", "fortran_order": False, "shape": (self.n, self.dim)})
                self._offset = fh.tell()
                fh.truncate(self._offset + self.n * self.dim * 4)
            self._fd = os.open(self.tmp, os.O_WRONLY)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot write ({exc.strerror})") from None
        return self

    def _put(self, index: int, row: np.ndarray) -> None:
        data = np.ascontiguousarray(row, dtype="<f4").tobytes()
        try:
            os.pwrite(self._fd, data, self._offset + index * self.dim * 4)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, index: int, row: np.ndarray) -> None:
        """Row ``index`` (written once; its values count towards the mean)."""
        self._put(index, row)
        self.present[index] = True
        self.total += row

    def fill_missing(self) -> int:
        """Give every unwritten row the mean of the written ones; returns how many."""
        missing = np.flatnonzero(~self.present)
        if len(missing) == len(self.present) and len(missing):
            raise DataError(f"{self.path}: no row to take a mean from (no item has a value)")
        mean = (self.total / max(int(self.present.sum()), 1)).astype(np.float32)
        for i in missing.tolist():
            self._put(i, mean)
        return int(len(missing))

    def commit(self) -> Path:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.tmp, self.path)
        return self.path

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
