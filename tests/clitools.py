"""Run the installed ``mgnm`` command as a user does: in a subprocess, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def the_error(self) -> str:
        """The one ``error:`` line among the lines a command printed on stderr (progress
        lines may surround it)."""
        lines = [x for x in self.err.splitlines() if x.startswith("error: ")]
        assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{self.err}"
        return lines[0]

    def error_line(self) -> str:
        """The one line a failing command printed (its stderr, stripped)."""
        lines = [x for x in self.err.strip().splitlines() if x.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{self.err}"
        return lines[0]


def run_mgnm(*args: object, cwd: str | Path | None = None, env: dict | None = None,
             timeout: float = 300, preexec_fn=None) -> CliResult:
    """``mgnm ARGS`` in a subprocess (the console script of this interpreter's environment)."""
    exe = Path(sys.executable).with_name("mgnm")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mgnm.cli"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                **(env or {})}
    proc = subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    # whatever the command's outcome, a user never sees a traceback
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(res: CliResult, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code``, printed one ``error:`` line holding every fragment,
    and no traceback."""
    assert "Traceback" not in res.err + res.out, res.err
    assert res.code == code, (res.code, res.err)
    line = res.error_line()
    for f in fragments:
        assert f in line, (f, line)
    return line
