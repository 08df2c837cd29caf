"""Which mgnm made a run: its version and, when it runs from a git checkout, the commit."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import mgnm


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout mgnm is imported from, or None (an installed package, no
    git, a file git does not track). Asked once per process, never for longer than 5 s."""
    here = Path(mgnm.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(here), *args], capture_output=True,
                                  text=True, timeout=5, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    # a package installed inside some other repository (a venv in a checkout) is not tracked
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    return git("rev-parse", "HEAD") or None


def software() -> dict[str, str | None]:
    """``{"mgnm_version": ..., "git_commit": ... or None}``."""
    return {"mgnm_version": mgnm.__version__, "git_commit": git_commit()}
