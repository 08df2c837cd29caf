"""The real ``mgnm serve`` in a subprocess on a free loopback port (for the serving tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, *extra: str, env: dict | None = None):
    """The server and its base URL; its stdout lines are collected in ``proc.lines``."""
    port = free_port()
    exe = Path(sys.executable).with_name("mgnm")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mgnm.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(cmd + ["serve", str(run), "--port", str(port), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.lines = []
    threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
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


def wait_for_line(proc, fragment: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in list(proc.lines) if fragment in line]
        if found:
            return found[0].rstrip("\n")
        time.sleep(0.05)
    raise AssertionError(f"no line with {fragment!r} on stdout: {proc.lines}")


def stop(proc) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.stderr.read()
