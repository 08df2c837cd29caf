"""``mgnm serve``: the real server in a subprocess on a free loopback port, called with httpx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import write_dataset  # noqa: E402

from mgnm import api  # noqa: E402
from mgnm.predict.predictor import Predictor  # noqa: E402

FAST = {"epochs": 2, "batch_size": 64, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, *extra: str):
    port = free_port()
    exe = Path(sys.executable).with_name("mgnm")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mgnm.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["serve", str(run), "--port", str(port), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a loaded machine imports torch slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start within 300 s")


def stop(proc) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("srv"))
    run = tmp_path_factory.mktemp("run-mgnm")
    api.train("mgnm", root, overrides=FAST, run_dir=run)
    proc, base = start_server(run, "--max-body-kb", "16")
    yield run, base
    err = stop(proc)
    assert "Traceback" not in err, err


def test_health_and_known_user(served):
    run, base = served
    h = httpx.get(f"{base}/health").json()
    assert h["status"] == "ok" and h["model"] == "mgnm"
    assert h["n_users"] == 60 and h["n_items"] == 45 and h["fold_in"] and h["cold_items"]
    r = httpx.get(f"{base}/users/7/recommendations", params={"k": 4})
    assert r.status_code == 200
    body = r.json()
    expect = Predictor.load(run).recommend([7], 4)[0]
    assert body["user"] == 7 and body["items"] == expect.items
    np.testing.assert_allclose(body["scores"], expect.scores, rtol=1e-5)


def test_fold_in_endpoint(served):
    run, base = served
    r = httpx.post(f"{base}/recommendations", json={"history": [1, 4, 9], "k": 5})
    assert r.status_code == 200
    expect = Predictor.load(run).recommend_for_history([1, 4, 9], 5)
    assert r.json()["items"] == expect.items and r.json()["user"] is None


def test_new_items_become_recommendable(served):
    run, base = served
    feats = {"image": [1.0] + [0.0] * 7, "text": [1.0, 0, 0, 0, 0]}
    r = httpx.post(f"{base}/items", json={"items": [{"features": feats}, {"features": feats}]})
    assert r.status_code == 200, r.text
    new = r.json()["items"]
    assert len(new) == 2 and new[0] >= 45
    assert httpx.get(f"{base}/health").json()["n_items"] >= 47
    r = httpx.get(f"{base}/users/3/recommendations", params={"k": 1000}).json()
    assert set(new) <= set(r["items"])


@pytest.mark.parametrize(("method", "path", "kw", "status", "field"), [
    ("get", "/users/999/recommendations", {}, 404, None),
    ("get", "/users/abc/recommendations", {}, 404, None),  # no map: users are indices
    ("get", "/users/1/recommendations", {"params": {"k": 0}}, 422, "k"),
    ("get", "/users/1/recommendations", {"params": {"k": 1001}}, 422, "k"),
    ("get", "/users/1/recommendations", {"params": {"k": "x"}}, 422, "k"),
    ("post", "/recommendations", {"json": {"history": [1, 999]}}, 404, None),
    ("post", "/recommendations", {"json": {"history": []}}, 422, "history"),
    ("post", "/recommendations", {"json": {"history": [1], "k": 0}}, 422, "k"),
    ("post", "/recommendations", {"json": {"histroy": [1]}}, 422, "history"),
    ("post", "/recommendations", {"content": b"{not json", "headers":
                                  {"content-type": "application/json"}}, 422, "body"),
    ("post", "/items", {"json": {"items": [{"features": {"image": [1.0] * 3,
                                                         "text": [0.0] * 5}}]}},
     422, "items.0.features.image"),
    ("post", "/items", {"json": {"items": [{"features": {"image": [1.0] * 8}}]}},
     422, "items.0.features"),
    ("post", "/items", {"content": b'{"items": [{"features": {"image": [NaN, 0, 0, 0, 0, 0, 0, 0],'
                                   b' "text": [0, 0, 0, 0, 0]}}]}',
                        "headers": {"content-type": "application/json"}}, 422,
     "items.0.features.image.0"),
    ("post", "/items", {"json": {"items": [{"id": "x", "features": {
        "image": [1.0] * 8, "text": [0.0] * 5}}]}}, 422, "items[0].id"),
])
def test_error_statuses_name_the_field(served, method, path, kw, status, field):
    _, base = served
    r = getattr(httpx, method)(f"{base}{path}", **kw)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if field is None:
        assert isinstance(detail, str) and "unknown" in detail
    else:
        assert any(d["field"] == field for d in detail), detail


def test_oversized_body_gets_413(served):
    _, base = served
    big = {"history": [1] * 20_000}
    r = httpx.post(f"{base}/recommendations", json=big)
    assert r.status_code == 413 and "larger than 16384 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streamed
        yield b'{"history": ['
        for _ in range(4000):
            yield b"1, 1, 1, 1, "
        yield b"1]}"

    r = httpx.post(f"{base}/recommendations", content=chunks(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_id_only_run_refuses_new_items_with_501(tmp_path):
    root = write_dataset(tmp_path / "d")
    run = tmp_path / "bpr"
    api.train("bpr", root, overrides=FAST, run_dir=run)
    proc, base = start_server(run)
    try:
        r = httpx.post(f"{base}/items", json={"items": [{"features": {
            "image": [1.0] * 8, "text": [0.0] * 5}}]})
        assert r.status_code == 501 and "ID-only" in r.json()["detail"]
        r = httpx.post(f"{base}/recommendations", json={"history": [2, 3], "k": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
    finally:
        assert "Traceback" not in stop(proc)
