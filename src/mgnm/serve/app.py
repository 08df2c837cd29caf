"""The HTTP application over a :class:`~mgnm.predict.Predictor`.

- ``GET /health`` -> ``{"status": "ok", "model", "n_users", "n_items", "fold_in", "cold_items"}``
- ``GET /users/{user_id}/recommendations?k=10`` -> ``{"user", "items", "scores"[, "titles"]}``
- ``POST /recommendations`` ``{"history": [item ids], "k": 10}`` -> the same shape (fold-in)
- ``POST /items`` ``{"items": [{"id": "...", "features": {"image": [...], ...}}]}`` ->
  201 ``{"items": [new ids]}``; recommendable from the next request on, and written to the
  catalogue store (fsynced) before the answer.
- ``GET /items/{item_id}`` -> ``{"id", "state"}`` (``trained``, ``added`` or ``retired``).
- ``DELETE /items/{item_id}`` -> ``{"id", "state": "retired"}``: never recommended again.
- ``POST /admin/reload`` ``{"run": "RUN_DIR"}`` -> the new run's ``/health`` answer; 422 with
  the reason when it cannot be loaded (the old run keeps serving).
- ``GET /metrics`` -> Prometheus text (requests, latencies, catalogue size, items added and
  retired).

Writes (``POST /items``, ``DELETE /items/...``, ``POST /admin/reload``) need
``Authorization: Bearer TOKEN`` when the server has a token (401 otherwise) and are refused
with 403 by a read-only server.

Statuses: 404 for an unknown user or item (and for a user without training rows), 422 for a
malformed body, a value of the wrong type (strict: an ID is a JSON string or integer, ``k`` an
integer, features numbers), a bad ``k`` (1..1000) or wrong feature dimensions, with the field
named in ``detail``, one error per bad value; 413 for a body over the size limit; 501 when
the run's model has no method for the request (an ID-only model asked for new items).
Bodies are parsed as JSON by pydantic: nothing is unpickled or evaluated.
"""

from __future__ import annotations

import copy
import hmac
import ipaddress
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from mgnm.errors import MgnmError, UnsupportedError
from mgnm.predict.catalogue import Catalogue
from mgnm.predict.predictor import MAX_K, Predictor, RequestError, UnknownIdError
from mgnm.serve import ServeError
from mgnm.serve.metrics import Metrics

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


class ReloadRequest(_Strict):
    run: StrictStr | None = None


class ReloadError(MgnmError):
    """A run that cannot replace the one served (HTTP 422; the old run keeps serving)."""


class Service:
    """What the server serves: the current :class:`Predictor` (replaced whole by
    :meth:`reload`, one reference swap), its run directory and the catalogue store."""

    def __init__(self, predictor: Predictor, run_dir: str | Path | None = None,
                 data: str | None = None) -> None:
        self.predictor = predictor
        self.run_dir = run_dir
        self.data = data
        self.writes = threading.Lock()  # adds, retirements and reloads one at a time

    def reload(self, run_dir: str | Path | None = None) -> Predictor:
        """Load ``run_dir`` (default: the run served) beside the one served, apply the
        catalogue store to it, then switch. Raises :class:`ReloadError` with the reason."""
        run_dir = run_dir if run_dir is not None else self.run_dir
        if run_dir is None:
            raise ReloadError("no run to reload: name one in 'run'")
        with self.writes:
            old = self.predictor
            try:
                data = self.data if str(run_dir) == str(self.run_dir) else None
                new = Predictor.load(run_dir, data)
            except (MgnmError, OSError, ValueError, RuntimeError) as exc:
                raise ReloadError(f"{run_dir}: cannot load ({exc})") from None
            mine = (old.dataset_name, old.n_users, old.n_trained_items, old.feature_dims)
            theirs = (new.dataset_name, new.n_users, new.n_trained_items, new.feature_dims)
            if mine != theirs:
                raise ReloadError(f"{run_dir}: a different dataset ({theirs[0]!r}, "
                                  f"{theirs[1]} users, {theirs[2]} items) than the one "
                                  f"served ({mine[0]!r}, {mine[1]} users, {mine[2]} items)")
            if old.catalogue is not None:
                try:
                    new.attach(old.catalogue)
                except MgnmError as exc:
                    raise ReloadError(str(exc)) from None
            self.predictor = new  # the switch: requests that began earlier keep ``old``
            self.run_dir = run_dir
            return new


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), status,
                    media_type="application/json")


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


def create_app(predictor: Predictor | Service, max_body: int = DEFAULT_MAX_BODY, *,
               token: str | None = None, read_only: bool = False) -> FastAPI:
    """The application serving ``predictor`` (or a :class:`Service`, which can reload).
    ``token``: the bearer token writes need; ``read_only``: writes answer 403."""
    service = predictor if isinstance(predictor, Service) else Service(predictor)
    app = FastAPI(title="mgnm", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)
    metrics = Metrics(lambda: service.predictor)
    app.state.service = service
    expected = token.encode() if token else None

    def writer(request: Request) -> None:
        if read_only:
            raise _Refused(403, "this server is read-only")
        if expected is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 expected):
            raise _Refused(401, "writes need 'Authorization: Bearer <token>' with the "
                                "server's token")

    @app.exception_handler(_Refused)
    async def _refused(request: Request, exc: _Refused) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(RequestError)
    async def _bad(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": [{"field": exc.field, "message": exc.reason}]},
                            status_code=422)

    @app.exception_handler(ReloadError)
    async def _no_reload(request: Request, exc: ReloadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(UnknownIdError)
    async def _unknown(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnsupportedError)
    async def _unsupported(request: Request, exc: UnsupportedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=501)

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok", **service.predictor.info()})

    @app.get("/metrics")
    async def metrics_text() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # the answers are computed on the event loop (a top-k over the item table is short):
    # no thread hand-off per request
    @app.get("/users/{user_id}/recommendations")
    async def user_recommendations(user_id: str,
                                   k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> Response:
        return _json(service.predictor.recommend([user_id], k)[0].to_dict())

    @app.post("/recommendations")
    async def history_recommendations(body: HistoryRequest) -> Response:
        return _json(service.predictor.recommend_for_history(body.history, body.k).to_dict())

    @app.get("/items/{item_id}")
    async def item_state(item_id: str) -> Response:
        p = service.predictor
        return _json({"id": _shown_id(p, item_id), "state": p.item_state(item_id)})

    @app.post("/items", status_code=201, dependencies=[Depends(writer)])
    def add_items(body: NewItemsRequest) -> Response:
        with service.writes:
            p = service.predictor
            names = list(p.feature_dims)
            for j, item in enumerate(body.items):
                unknown = [m for m in item.features if m not in p.feature_dims]
                missing = [m for m in names if m not in item.features]
                if unknown or missing:
                    what = f"unknown modality {unknown[0]!r}" if unknown else \
                        f"missing modality {missing[0]!r}"
                    raise RequestError(f"items.{j}.features", f"{what}; the run uses {names}")
                for m, dim in p.feature_dims.items():
                    if len(item.features[m]) != dim:
                        raise RequestError(f"items.{j}.features.{m}",
                                           f"expected {dim} numbers, got "
                                           f"{len(item.features[m])}")
            feats = {m: [item.features[m] for item in body.items] for m in names}
            ids = [item.id for item in body.items]
            new = p.add_items(feats, None if all(x is None for x in ids) else ids)
        metrics.added.inc(len(new))
        return _json({"items": new}, 201)

    @app.delete("/items/{item_id}", dependencies=[Depends(writer)])
    def retire_item(item_id: str) -> Response:
        with service.writes:
            p = service.predictor
            done = p.retire([item_id], "item_id")
        metrics.retired.inc(len(done))
        return _json({"id": _shown_id(p, item_id), "state": "retired"})

    @app.post("/admin/reload", dependencies=[Depends(writer)])
    def reload(body: ReloadRequest | None = None) -> Response:
        new = service.reload(body.run if body is not None else None)
        metrics.reloads.inc()
        return _json({"status": "ok", "run": str(service.run_dir), **new.info()})

    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(metrics.middleware)
    return app


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _shown_id(p: Predictor, item_id: str) -> str | int:
    return item_id if p.item_map is not None else int(p.item_indices([item_id])[0])


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


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
               access_log: bool = False, token: str | None = None, read_only: bool = False,
               catalogue: str | None = None,
               echo: Callable[[str], None] = print) -> None:
    """Take ``host:port`` (a busy port fails here, before the load), load ``run_dir`` once
    with its catalogue store (default ``RUN_DIR/catalogue``), say where it is served and
    serve it with uvicorn until interrupted; SIGHUP reloads the run served."""
    import uvicorn

    token = token or None
    if not read_only and token is None and not is_loopback(host):
        raise ServeError(f"refusing to serve writes on {host} without a token: pass --token "
                         f"(or set MGNM_SERVE_TOKEN), or --read-only")
    sock = listen_socket(host, port)
    try:
        store = Catalogue(catalogue if catalogue is not None else Path(run_dir) / "catalogue")
        if store.warning:
            print(f"warning: {store.warning}", file=sys.stderr, flush=True)
        predictor = Predictor.load(run_dir, data, catalogue=store)
        service = Service(predictor, run_dir, data)
        info = predictor.info()
        echo(f"serving {info['model']} (run {run_dir}: {info['n_users']:,} users, "
             f"{info['n_items']:,} items) on {url_of(sock)} (Ctrl+C to stop)")
        _reload_on_sighup(service)
        config = uvicorn.Config(create_app(service, max_body, token=token,
                                           read_only=read_only),
                                log_level=None, log_config=_log_config(access_log),
                                access_log=access_log)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _reload_on_sighup(service: Service) -> None:
    """SIGHUP: reload the run served (in a thread: requests go on meanwhile)."""
    if not hasattr(signal, "SIGHUP"):
        return

    def reload() -> None:
        t0 = time.monotonic()
        try:
            service.reload()
        except ReloadError as exc:
            print(f"reload failed, still serving the old run: {exc}", file=sys.stderr,
                  flush=True)
            return
        print(f"reloaded {service.run_dir} in {time.monotonic() - t0:.1f} s", flush=True)

    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload,
                                                            daemon=True).start())
