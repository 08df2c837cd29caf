"""The server's Prometheus metrics (prometheus-client, one registry per application).

- ``mgnm_requests_total{endpoint, method, status}``: requests answered, by route template
  (``/users/{user_id}/recommendations``, not the path asked for; ``unmatched`` for none)
- ``mgnm_request_duration_seconds{endpoint, method}``: latency histogram
- ``mgnm_catalogue_items``: items that can be recommended now (not retired)
- ``mgnm_items_added_total``, ``mgnm_items_retired_total``: changes since the start
- ``mgnm_reloads_total``: runs switched to without a restart
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """The metrics of one application; :attr:`middleware` counts its requests."""

    def __init__(self, predictor: Callable[[], Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mgnm_requests", "Requests answered.",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("mgnm_request_duration_seconds", "Time to answer a request.",
                                 ["endpoint", "method"], buckets=BUCKETS, registry=r)
        self.added = Counter("mgnm_items_added", "Items added since the start.", registry=r)
        self.retired = Counter("mgnm_items_retired", "Items retired since the start.",
                               registry=r)
        self.reloads = Counter("mgnm_reloads", "Runs switched to without a restart.",
                               registry=r)
        catalogue = Gauge("mgnm_catalogue_items", "Items that can be recommended now.",
                          registry=r)
        catalogue.set_function(lambda: float(predictor().eligible.sum()))
        metrics = self

        class Middleware:  # pure ASGI: reads the route template the router leaves in scope
            def __init__(self, app) -> None:
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)
                status = [500]

                async def sending(message):
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)

                t0 = time.perf_counter()
                try:
                    await self.app(scope, receive, sending)
                finally:
                    route = scope.get("route")
                    endpoint = getattr(route, "path", None) or "unmatched"
                    method = scope.get("method", "")
                    metrics.latency.labels(endpoint, method).observe(time.perf_counter() - t0)
                    metrics.requests.labels(endpoint, method, str(status[0])).inc()

        self.middleware = Middleware

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
