"""The HTTP application over a :class:`~mgnm.predict.Predictor`.

- ``GET /health`` -> ``{"status": "ok", "model", "n_users", "n_items", "fold_in", "cold_items"}``
- ``GET /users/{user_id}/recommendations?k=10`` -> ``{"user", "items", "scores"[, "titles"]}``
- ``POST /recommendations`` ``{"history": [item ids], "k": 10}`` -> the same shape (fold-in)
- ``POST /items`` ``{"items": [{"id": "...", "features": {"image": [...], ...}}]}`` ->
  ``{"items": [new ids]}``; recommendable from the next request on.

Statuses: 404 for an unknown user or item (and for a user without training rows), 422 for a
malformed body, a value of the wrong type (strict: an ID is a JSON string or integer, ``k`` an
integer, features numbers), a bad ``k`` (1..1000) or wrong feature dimensions, with the field
named in ``detail``, one error per bad value; 413 for a body over the size limit; 501 when
the run's model has no method for the request (an ID-only model asked for new items).
Bodies are parsed as JSON by pydantic: nothing is unpickled or evaluated.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from mgnm.errors import UnsupportedError
from mgnm.predict.predictor import MAX_K, Predictor, RequestError, UnknownIdError
from mgnm.serve import ServeError

DEFAULT_MAX_BODY = 1 << 20  # bytes

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # 1 and 1.5, not "1"


def _one_id(value: Any) -> Any:
    """A JSON string or integer, and one error for anything else (``true`` is not item 1,
    and NaN is not two errors, one per member of ``str | int``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        shown = {dict: "an object", list: "an array"}.get(type(value)) or \
            json.dumps(value)[:40]
        raise PydanticCustomError("item_id", "an ID is a string or an integer, got {shown}",
                                  {"shown": shown})
    return value


ItemId = Annotated[StrictStr | StrictInt, BeforeValidator(_one_id)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryRequest(_Strict):
    history: list[ItemId] = Field(min_length=1, max_length=10_000)
    k: int = Field(10, ge=1, le=MAX_K, strict=True)  # 5, not "5" or 5.0


class NewItem(_Strict):
    id: ItemId | None = None
    features: dict[str, list[FiniteFloat]]


class NewItemsRequest(_Strict):
    items: list[NewItem] = Field(min_length=1)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is parsed
    (by its Content-Length, and by counting when it is streamed without one); the body is
    buffered here (at most ``limit`` bytes) and handed on whole."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._reject(send)
        # read the whole body first (at most ``limit`` bytes), then replay it to the app
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._reject(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # loc = ("body", character offset)
            where = err.get("loc", ("body", "?"))[-1]
            out.append({"field": "body", "message": f"not valid JSON (at character {where})"})
            continue
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return out


def create_app(predictor: Predictor, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The application serving ``predictor``."""
    app = FastAPI(title="mgnm", version="1", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(RequestError)
    async def _bad(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": [{"field": exc.field, "message": exc.reason}]},
                            status_code=422)

    @app.exception_handler(UnknownIdError)
    async def _unknown(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnsupportedError)
    async def _unsupported(request: Request, exc: UnsupportedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=501)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **predictor.info()}

    @app.get("/users/{user_id}/recommendations")
    def user_recommendations(user_id: str,
                             k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> dict[str, Any]:
        return predictor.recommend([user_id], k)[0].to_dict()

    @app.post("/recommendations")
    def history_recommendations(body: HistoryRequest) -> dict[str, Any]:
        return predictor.recommend_for_history(body.history, body.k).to_dict()

    @app.post("/items")
    def add_items(body: NewItemsRequest) -> dict[str, Any]:
        names = list(predictor.feature_dims)
        for j, item in enumerate(body.items):
            unknown = [m for m in item.features if m not in predictor.feature_dims]
            missing = [m for m in names if m not in item.features]
            if unknown or missing:
                what = f"unknown modality {unknown[0]!r}" if unknown else \
                    f"missing modality {missing[0]!r}"
                raise RequestError(f"items.{j}.features", f"{what}; the run uses {names}")
            for m, dim in predictor.feature_dims.items():
                if len(item.features[m]) != dim:
                    raise RequestError(f"items.{j}.features.{m}", f"expected {dim} numbers, "
                                                                  f"got {len(item.features[m])}")
        feats = {m: [item.features[m] for item in body.items] for m in names}
        ids = [item.id for item in body.items]
        new = predictor.add_items(feats, None if all(x is None for x in ids) else ids)
        return {"items": new}

    app.add_middleware(BodyLimit, limit=max_body)
    return app


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn binds one (``SO_REUSEADDR``), so that a
    taken port or an unknown host is one line before the model is loaded, not after."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def _log_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's logging with its own messages at WARNING and, with ``access_log``, one line
    per request (time, client, request line, status)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"]["fmt"] = \
        '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'
    for name in ("uvicorn", "uvicorn.error"):
        config["loggers"][name]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    return config


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(run_dir: str, host: str = "127.0.0.1", port: int = 8000, *,
               data: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               access_log: bool = False, echo: Callable[[str], None] = print) -> None:
    """Take ``host:port`` (a busy port fails here, before the load), load ``run_dir`` once,
    say where it is served and serve it with uvicorn until interrupted."""
    import uvicorn

    sock = listen_socket(host, port)
    try:
        predictor = Predictor.load(run_dir, data)
        info = predictor.info()
        echo(f"serving {info['model']} (run {run_dir}: {info['n_users']:,} users, "
             f"{info['n_items']:,} items) on {url_of(sock)} (Ctrl+C to stop)")
        config = uvicorn.Config(create_app(predictor, max_body), log_level=None,
                                log_config=_log_config(access_log), access_log=access_log)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
