"""Screenshot of runs compared in MLflow's own UI, taken by a real browser.

Starts ``mlflow ui`` on loopback over a tracking store, opens MLflow's metric comparison
page for the chosen runs in headless Chromium (driven over the DevTools protocol on a pipe,
no extra Python package), closes MLflow's assistant side panel as a user would, and saves
a PNG. The network is not needed: the browser runs with a fresh profile and without
background networking.

    mgnm track RUN_DIR ... --to mlflow --tracking-uri sqlite:///path/to/mlflow.db
    python scripts/track_screenshot.py --tracking-uri sqlite:///path/to/mlflow.db \\
        --experiment NAME --metric valid/recall_at_20 --out docs/tracking-mlflow.png

Needs the extra ``track`` and Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--remote-debugging-pipe"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url}: no answer within {seconds:.0f} s")


class DevTools:
    """The Chrome DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4: one JSON
    message per NUL-terminated chunk)."""

    def __init__(self, chromium: str, profile: str, width: int, height: int) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: the browser reads fd 3, writes fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next = 0
        self.session: str | None = None

    def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if self.session and method.split(".")[0] in ("Page", "Runtime", "Emulation"):
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self._buf += chunk
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.evaluate(expression):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the page never satisfied: {expression}")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)


def run_ids(uri: str, experiment: str, names: list[str] | None
            ) -> tuple[str, list[str], list[str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"{uri}: no experiment {experiment!r}")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    by_name = {r.info.run_name: r.info.run_id for r in runs}
    order = names or sorted(by_name)
    missing = [n for n in order if n not in by_name]
    if missing:
        raise SystemExit(f"{experiment}: no finished run named {', '.join(missing)}")
    return exp.experiment_id, [by_name[n] for n in order], order


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", required=True, help="the MLflow store, e.g. sqlite:///x.db")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--runs", help="comma-separated run names (default: every finished run)")
    ap.add_argument("--metric", default="valid/recall_at_20")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)

    exp_id, ids, names = run_ids(args.tracking_uri, args.experiment,
                          args.runs.split(",") if args.runs else None)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    profile = tempfile.mkdtemp(prefix="mgnm-chromium-")
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", 300)
        query = urllib.parse.urlencode({
            "runs": json.dumps(ids), "metric": json.dumps(args.metric),
            "experiments": json.dumps([exp_id]), "plot_metric_keys": json.dumps([args.metric]),
            "x_axis": "step", "plot_layout": "{}"}, quote_via=urllib.parse.quote)
        url = f"{base}/#/metric?{query}"
        browser = DevTools(args.chromium, profile, args.width, args.height)
        targets = browser.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        browser.session = browser.call("Target.attachToTarget",
                                       {"targetId": page, "flatten": True})["sessionId"]
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": args.width, "height": args.height, "deviceScaleFactor": 1,
                      "mobile": False})
        browser.call("Page.enable")
        browser.call("Page.navigate", {"url": url})
        # the chart is drawn once every run's history has arrived: a legend entry each
        entries = json.dumps([f"{n} ({args.metric})" for n in names])
        browser.wait_for(f"!!document.querySelector('.js-plotly-plot') && {entries}.every("
                         f"t => document.body.innerText.includes(t))", 180)
        # MLflow opens its assistant side panel on a first visit: close it as a user would
        browser.evaluate("document.querySelectorAll("
                         "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
                         ".forEach(b => b.click())")
        time.sleep(3)  # the chart re-lays out to the wider page
        png = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp.png")
        tmp.write_bytes(base64.b64decode(png))
        os.replace(tmp, args.out)
        print(f"wrote {args.out} ({len(ids)} runs, {args.metric}; {url})")
    finally:
        if browser is not None:
            browser.close()
        os.killpg(server.pid, signal.SIGTERM)  # mlflow ui and the server it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
