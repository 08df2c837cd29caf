"""``mgnm serve``: a trained run behind HTTP (FastAPI + uvicorn, the optional extra ``serve``)."""

from __future__ import annotations

from mgnm.errors import MgnmError


class MissingExtraError(MgnmError):
    """An optional dependency is not installed."""


class ServeError(MgnmError):
    """The server cannot start (for example its port is taken)."""


def require_serve_extra() -> None:
    """One clear line when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"mgnm serve needs {exc.name}: pip install 'mgnm[serve]'") from None
