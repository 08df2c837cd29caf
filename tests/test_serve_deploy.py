"""``mgnm serve`` deployed: the durable catalogue store (items added and retired survive a
kill -9), bearer tokens on writes, refusing an open host without a token, Prometheus metrics
and reloading a run without downtime. The real server in a subprocess, called with httpx."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
from conftest import need  # noqa: E402

httpx = need("httpx", "fastapi", "uvicorn", "prometheus_client", extra="serve")

from clitools import assert_user_error, run_mgnm  # noqa: E402
from conftest import write_dataset  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from servetools import start_server, stop, wait_for_line  # noqa: E402

from mgnm import api  # noqa: E402
from mgnm.predict.catalogue import LOG_NAME, Catalogue  # noqa: E402
from mgnm.predict.predictor import Predictor  # noqa: E402

FAST = {"epochs": 2, "batch_size": 64, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 1}
TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FEATS = {"image": [0.0, 0.0, 1.0] + [0.0] * 5, "text": [0.0, 0.0, 1.0, 0.0, 0.0]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of one tiny dataset (seeds 1 and 2) and a run of another dataset."""
    root = write_dataset(tmp_path_factory.mktemp("data"))
    other = write_dataset(tmp_path_factory.mktemp("other"), name="other", n_users=50)
    out = {}
    for name, data, seed in (("a", root, 1), ("b", root, 2), ("other", other, 1)):
        out[name] = tmp_path_factory.mktemp(f"run-{name}")
        api.train("mgnm", data, overrides={**FAST, "seed": seed}, run_dir=out[name])
    return out


def _expected(run, catalogue, user: int, k: int = 1000) -> list:
    """What the library answers for ``user`` with the store applied (in this process)."""
    return Predictor.load(run, catalogue=catalogue).recommend([user], k)[0].items


def test_added_and_retired_items_survive_kill_9(runs, tmp_path):
    store = tmp_path / "store"
    proc, base = start_server(runs["a"], "--catalogue", str(store), "--token", TOKEN)
    try:
        r = httpx.post(f"{base}/items", json={"items": [{"features": FEATS}]}, headers=AUTH)
        assert r.status_code == 201, r.text
        (new,) = r.json()["items"]
        assert new == 45  # numbered after the 45 trained items
        top = httpx.get(f"{base}/users/2/recommendations", params={"k": 3}).json()["items"]
        gone = top[0] if top[0] != new else top[1]  # a trained item user 2 is shown
        assert httpx.delete(f"{base}/items/{gone}", headers=AUTH).status_code == 200
    finally:
        proc.kill()  # kill -9 right after the answers: nothing may be lost
        proc.wait()
    proc, base = start_server(runs["a"], "--catalogue", str(store), "--token", TOKEN)
    try:
        assert httpx.get(f"{base}/items/{new}").json() == {"id": new, "state": "added"}
        assert httpx.get(f"{base}/items/{gone}").json() == {"id": gone, "state": "retired"}
        assert httpx.get(f"{base}/items/3").json()["state"] in ("trained", "retired")
        assert httpx.get(f"{base}/items/999").status_code == 404
        got = httpx.get(f"{base}/users/2/recommendations", params={"k": 1000}).json()["items"]
        assert new in got and gone not in got
        # the library sees the same store: same answer, computed in this process
        reference = Predictor.load(runs["a"])
        reference.add_items({m: [v] for m, v in FEATS.items()})
        reference.retire([gone])
        assert got == reference.recommend([2], 1000)[0].items
        assert _expected(runs["a"], store, 2) == got
    finally:
        stop(proc)


def test_a_torn_last_record_is_skipped_with_a_warning(runs, tmp_path):
    store = tmp_path / "store"
    Catalogue(store).append({"op": "add", "items": [{"id": 45, "features": FEATS}]})
    with open(store / LOG_NAME, "ab") as f:  # a second record cut short by a crash
        f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78" + b'{"op":"add","it')
    proc, base = start_server(runs["a"], "--catalogue", str(store))
    try:
        assert httpx.get(f"{base}/items/45").json()["state"] == "added"
        assert httpx.get(f"{base}/items/46").status_code == 404
        assert httpx.get(f"{base}/health").json()["n_items"] == 46
        r = httpx.post(f"{base}/items", json={"items": [{"features": FEATS}]})
        assert r.status_code == 201 and r.json()["items"] == [46]  # appended after the cut
    finally:
        err = stop(proc)
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "skipped the last record (bytes" in warning[0], err
    assert "cut short" in warning[0]
    # the torn bytes were cut off before the append: the store reads whole, no warning
    again = Catalogue(store)
    assert again.warning is None
    assert [rec["items"][0]["id"] for rec in again.records] == [45, 46]


def test_a_damaged_record_in_the_middle_is_an_error(runs, tmp_path):
    store = tmp_path / "store"
    cat = Catalogue(store)
    cat.append({"op": "retire", "ids": [1]})
    cat.append({"op": "retire", "ids": [2]})
    cat.close()
    data = bytearray((store / LOG_NAME).read_bytes())
    data[10] ^= 0xFF  # inside the first payload
    (store / LOG_NAME).write_bytes(bytes(data))
    res = run_mgnm("serve", runs["a"], "--catalogue", store, "--port", "0")
    assert_user_error(res, f"{store / LOG_NAME}: record at byte 0 fails its checksum")


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"},
                                     {"authorization": TOKEN}])
def test_writes_without_the_token_get_401(runs, tmp_path, headers):
    proc, base = start_server(runs["a"], "--catalogue", str(tmp_path / "s"),
                              env={"MGNM_SERVE_TOKEN": TOKEN})
    try:
        for method, path, kw in (("post", "/items", {"json": {"items": [{"features": FEATS}]}}),
                                 ("delete", "/items/3", {}),
                                 ("post", "/admin/reload", {"json": {}})):
            r = getattr(httpx, method)(f"{base}{path}", headers=headers, **kw)
            assert r.status_code == 401, (path, r.text)
            assert "Bearer" in r.json()["detail"]
        assert httpx.get(f"{base}/items/3").json()["state"] == "trained"  # nothing changed
        assert httpx.get(f"{base}/users/2/recommendations").status_code == 200  # reads open
        assert httpx.delete(f"{base}/items/3", headers=AUTH).status_code == 200
        assert httpx.get(f"{base}/items/3").json()["state"] == "retired"
    finally:
        stop(proc)


def test_read_only_refuses_writes_with_403(runs, tmp_path):
    proc, base = start_server(runs["a"], "--catalogue", str(tmp_path / "s"), "--read-only")
    try:
        r = httpx.post(f"{base}/items", json={"items": [{"features": FEATS}]})
        assert r.status_code == 403 and r.json()["detail"] == "this server is read-only"
        assert httpx.delete(f"{base}/items/3").status_code == 403
    finally:
        stop(proc)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_an_open_host_without_a_token_is_refused(runs, host):
    res = run_mgnm("serve", runs["a"], "--host", host, "--port", "0",
                   env={"MGNM_SERVE_TOKEN": ""})
    assert_user_error(res, f"refusing to serve writes on {host} without a token: pass "
                           f"--token (or set MGNM_SERVE_TOKEN), or --read-only")
    assert res.out == ""


def _metrics(base: str) -> dict[tuple, float]:
    text = httpx.get(f"{base}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_by_route_and_the_catalogue(runs, tmp_path):
    proc, base = start_server(runs["a"], "--catalogue", str(tmp_path / "s"))
    try:
        route = (("endpoint", "/users/{user_id}/recommendations"), ("method", "GET"))
        before = _metrics(base)
        for user in (1, 2, 3):
            assert httpx.get(f"{base}/users/{user}/recommendations").status_code == 200
        assert httpx.get(f"{base}/users/999/recommendations").status_code == 404
        eligible = int(Predictor.load(runs["a"]).eligible.sum())
        after = _metrics(base)
        ok = ("mgnm_requests_total", tuple(sorted((*route, ("status", "200")))))
        missing = ("mgnm_requests_total", tuple(sorted((*route, ("status", "404")))))
        assert after[ok] - before.get(ok, 0) == 3 and after[missing] == 1
        assert after[("mgnm_request_duration_seconds_count", route)] == 4
        assert after[("mgnm_catalogue_items", ())] == eligible
        httpx.post(f"{base}/items", json={"items": [{"features": FEATS}] * 2})
        httpx.delete(f"{base}/items/5")
        after = _metrics(base)
        assert after[("mgnm_items_added_total", ())] == 2
        assert after[("mgnm_items_retired_total", ())] == 1
        assert after[("mgnm_catalogue_items", ())] == eligible + 2 - 1
        assert not any("999" in dict(labels).get("endpoint", "") for _, labels in after)
    finally:
        stop(proc)


def test_reload_under_load_has_no_errors_and_keeps_the_catalogue(runs, tmp_path):
    store = tmp_path / "s"
    proc, base = start_server(runs["a"], "--catalogue", str(store), "--token", TOKEN)
    statuses: list[int] = []
    done = threading.Event()

    def hammer(user: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not done.is_set():
                statuses.append(c.get(f"/users/{user}/recommendations").status_code)

    try:
        (new,) = httpx.post(f"{base}/items", json={"items": [{"features": FEATS}]},
                            headers=AUTH).json()["items"]
        assert httpx.delete(f"{base}/items/4", headers=AUTH).status_code == 200
        threads = [threading.Thread(target=hammer, args=(u,)) for u in (1, 2, 3)]
        for t in threads:
            t.start()
        r = httpx.post(f"{base}/admin/reload", json={"run": str(runs["b"])}, headers=AUTH,
                       timeout=120)
        done.set()
        for t in threads:
            t.join(timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["run"] == str(runs["b"]) and r.json()["n_items"] == 46
        assert len(statuses) > 0 and set(statuses) == {200}, statuses
        # answers now come from run b, with the added item re-placed by b's model
        got = httpx.get(f"{base}/users/2/recommendations", params={"k": 1000}).json()["items"]
        assert got == _expected(runs["b"], store, 2)
        assert got != _expected(runs["a"], store, 2)
        assert new in got and 4 not in got
        # SIGHUP reloads the run last given
        proc.send_signal(signal.SIGHUP)
        assert f"reloaded {runs['b']} in" in wait_for_line(proc, "reloaded", timeout=120)
        assert httpx.get(f"{base}/users/2/recommendations",
                         params={"k": 1000}).json()["items"] == got
    finally:
        done.set()
        stop(proc)


@pytest.mark.parametrize(("which", "reason"), [
    ("missing", "cannot load"), ("other", "a different dataset")])
def test_a_failed_reload_leaves_the_old_run_serving(runs, tmp_path, which, reason):
    proc, base = start_server(runs["a"], "--catalogue", str(tmp_path / "s"))
    try:
        before = httpx.get(f"{base}/users/2/recommendations", params={"k": 20}).json()
        run = tmp_path / "no-such-run" if which == "missing" else runs["other"]
        r = httpx.post(f"{base}/admin/reload", json={"run": str(run)}, timeout=120)
        assert r.status_code == 422
        assert r.json()["detail"].startswith(f"{run}: {reason}"), r.json()
        after = httpx.get(f"{base}/users/2/recommendations", params={"k": 20}).json()
        assert after == before
        np.testing.assert_equal(after["items"], _expected(runs["a"], None, 2, 20))
    finally:
        stop(proc)
