"""``mgnm serve``: the real server in a subprocess on a free loopback port, called with httpx."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import need  # noqa: E402

httpx = need("httpx", "fastapi", "uvicorn", "prometheus_client", extra="serve")

from clitools import assert_user_error, run_mgnm  # noqa: E402
from conftest import write_dataset  # noqa: E402
from servetools import start_server, stop, wait_for_line  # noqa: E402

from mgnm import api  # noqa: E402
from mgnm.data.idmap import write_id_map  # noqa: E402
from mgnm.predict.predictor import Predictor  # noqa: E402

FAST = {"epochs": 2, "batch_size": 64, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 1}


PROCS: dict[str, subprocess.Popen] = {}  # base URL -> the server process


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("srv"))
    run = tmp_path_factory.mktemp("run-mgnm")
    api.train("mgnm", root, overrides=FAST, run_dir=run)
    proc, base = start_server(run, "--max-body-kb", "16", "--access-log")
    PROCS[base] = proc
    yield run, base
    err = stop(proc)
    assert "Traceback" not in err, err


def test_start_line_names_the_model_and_the_address(served):
    run, base = served
    assert wait_for_line(PROCS[base], "serving") == \
        f"serving mgnm (run {run}: 60 users, 45 items) on {base} (Ctrl+C to stop)"


def test_access_log_has_a_line_per_request(served):
    _, base = served
    assert httpx.get(f"{base}/health", params={"probe": "a1b2"}).status_code == 200
    assert httpx.get(f"{base}/users/999/recommendations").status_code == 404
    line = wait_for_line(PROCS[base], "/health?probe=a1b2")
    assert line.endswith('"GET /health?probe=a1b2 HTTP/1.1" 200 OK'), line
    line = wait_for_line(PROCS[base], "/users/999/")
    assert line.endswith('"GET /users/999/recommendations HTTP/1.1" 404 Not Found'), line


@pytest.mark.parametrize("which", ["real run", "no run"])
def test_a_busy_port_is_one_line_before_the_model_loads(served, tmp_path, which):
    """The served fixture holds the port: a second server on it fails at once, before it
    even looks at the run (a missing run directory is not the error reported)."""
    run, base = served
    port = base.rsplit(":", 1)[1]
    res = run_mgnm("serve", run if which == "real run" else tmp_path / "no-such-run",
                   "--port", port)
    assert_user_error(res, f"cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert res.out == ""


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
    assert r.status_code == 201, r.text
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
    # strict types: true is not item 1, "5" is not 5
    ("post", "/recommendations", {"json": {"history": [True]}}, 422, "history.0"),
    ("post", "/recommendations", {"json": {"history": [1.0]}}, 422, "history.0"),
    ("post", "/recommendations", {"json": {"history": [1], "k": "5"}}, 422, "k"),
    ("post", "/recommendations", {"json": {"history": [1], "k": 5.0}}, 422, "k"),
    ("post", "/items", {"json": {"items": [{"features": {"image": ["1"] + [0.0] * 7,
                                                         "text": [0.0] * 5}}]}},
     422, "items.0.features.image.0"),
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


@pytest.mark.parametrize(("content", "message"), [
    (b'{"history": [2, NaN]}', "an ID is a string or an integer, got NaN"),
    (b'{"history": [true]}', "an ID is a string or an integer, got true"),
    (b'{"history": [null]}', "an ID is a string or an integer, got null"),
])
def test_a_bad_history_item_is_one_error(served, content, message):
    _, base = served
    r = httpx.post(f"{base}/recommendations", content=content,
                   headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"field": "history.1" if b"NaN" in content else "history.0",
                                   "message": message}]


@pytest.mark.parametrize("path", ["/users/abc/recommendations", "/users/60/recommendations"])
def test_a_user_that_is_no_index_is_404_naming_the_indices(served, path):
    _, base = served
    r = httpx.get(f"{base}{path}")
    assert r.status_code == 404
    assert r.json()["detail"].endswith("this dataset has no u_id_map.tsv, so users are "
                                       "indices 0..59")


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
    """A BPR run whose users have original IDs (u0..u59): new items 501, unknown users
    404 with examples of the real IDs."""
    root = write_dataset(tmp_path / "d")
    (root / "u_id_map.tsv").write_text(write_id_map(root, "user", [f"u{i}" for i in range(60)]))
    run = tmp_path / "bpr"
    api.train("bpr", root, overrides=FAST, run_dir=run)
    proc, base = start_server(run)
    try:
        assert httpx.get(f"{base}/users/u7/recommendations").json()["user"] == "u7"
        r = httpx.get(f"{base}/users/7/recommendations")
        assert r.status_code == 404
        assert r.json()["detail"] == ("unknown user '7': users are the original IDs of "
                                      "u_id_map.tsv, e.g. 'u0', 'u1', 'u2' (indices are not "
                                      "accepted where the dataset has an ID map)")
        r = httpx.post(f"{base}/items", json={"items": [{"features": {
            "image": [1.0] * 8, "text": [0.0] * 5}}]})
        assert r.status_code == 501 and "ID-only" in r.json()["detail"]
        r = httpx.post(f"{base}/recommendations", json={"history": [2, 3], "k": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
    finally:
        err = stop(proc)
    assert err.strip() == "stopped" and proc.returncode == 130, err  # Ctrl+C: one line
    # no access log unless asked for: the start line only
    assert [line.split(" (run")[0] for line in proc.lines] == ["serving bpr"], proc.lines


@pytest.mark.parametrize("name", ["mmgcn", "dualgnn", "lattice", "mgcn"])
def test_every_multimodal_model_serves_new_users_and_new_items(name, tmp_path):
    root = write_dataset(tmp_path / "d")
    run = tmp_path / name
    api.train(name, root, overrides=FAST, run_dir=run)
    proc, base = start_server(run)
    try:
        health = httpx.get(f"{base}/health").json()
        assert health["fold_in"] and health["cold_items"] and "tau" in health["cold_items"]
        feats = {"image": [0.0, 1.0] + [0.0] * 6, "text": [0.0, 1.0, 0, 0, 0]}
        r = httpx.post(f"{base}/items", json={"items": [{"features": feats}]})
        assert r.status_code == 201, r.text
        r = httpx.post(f"{base}/recommendations", json={"history": [1, 4, 9], "k": 5})
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 5 and not {1, 4, 9} & set(r.json()["items"])
    finally:
        err = stop(proc)
    assert "Traceback" not in err, err
