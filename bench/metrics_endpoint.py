"""GET /metrics with 500 roasters' label sets: latency through a real uvicorn server and body size.

Fills the app's registry the way 500 roasters' runs would (every fetch result per roaster, latency histogram,
bytes, retries, 429s, circuit state, every product outcome, validation errors, runs per mode and status, last
success), serves ``create_app`` with uvicorn on 127.0.0.1 and times 50 GETs with httpx (after 3 warm-ups).
httpx sends ``Accept-Encoding: gzip`` like Prometheus does; ``--identity`` asks for an uncompressed body.
`python -m bench.metrics_endpoint [--roasters 500 --requests 50 --identity]`.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from coffee_scraper.observability import metrics as m
from coffee_scraper.settings import Settings
from coffee_scraper.web import create_app

RESULTS = ("ok", "not_modified", "retry", "error", "rate_limited", "blocked")
OUTCOMES = ("stored", "unchanged", "quarantined", "review")


def populate(roasters: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(roasters):
        name = f"roaster-{i:03d}"
        platform = "shopify" if i % 3 else "woocommerce"
        for result in RESULTS:
            m.FETCH_REQUESTS.labels(name, platform, result).inc(rng.randint(1, 500))
        for _ in range(20):
            m.FETCH_DURATION.labels(name).observe(rng.expovariate(2.0))
        m.FETCH_BYTES.labels(name).inc(rng.randint(10_000, 50_000_000))
        m.FETCH_RETRIES.labels(name).inc(rng.randint(0, 20))
        m.FETCH_RATE_LIMITED.labels(name).inc(rng.randint(0, 5))
        m.CIRCUIT_STATE.labels(name).set(rng.choice((0, 0, 0, 1, 2)))
        for outcome in OUTCOMES:
            m.PRODUCTS_PROCESSED.labels(name, outcome).inc(rng.randint(0, 2000))
        m.VALIDATION_ERRORS.labels(name).inc(rng.randint(0, 30))
        for mode in ("full", "price"):
            for status in ("ok", "partial", "fail"):
                m.RUNS.labels(name, mode, status).inc(rng.randint(0, 50))
        m.LAST_SUCCESS.labels(name).set(time.time() - rng.randint(0, 7 * 86400))
    for mode in ("full", "price"):
        for _ in range(100):
            m.RUN_DURATION.labels(mode).observe(rng.uniform(1, 600))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--roasters", type=int, default=500)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--identity", action="store_true", help="send Accept-Encoding: identity (no gzip)")
    args = parser.parse_args()
    populate(args.roasters)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'c.db'}", log_dir=Path(tmp) / "logs")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        times: list[float] = []
        try:
            headers = {"Accept-Encoding": "identity"} if args.identity else {}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
                for _ in range(3):
                    client.get("/metrics").raise_for_status()
                for _ in range(args.requests):
                    started = time.perf_counter()
                    response = client.get("/metrics")
                    times.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                body = response.content
                wire = int(response.headers.get("content-length", len(body)))
                encoding = response.headers.get("content-encoding", "identity")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    times.sort()
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    print(f"roasters: {args.roasters}, requests: {args.requests}")
    print(f"GET /metrics: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms")
    print(f"body: {len(body):,} bytes ({len(body) / 1024:.0f} KiB), {samples:,} samples")
    print(f"on the wire: {wire:,} bytes ({encoding})")


if __name__ == "__main__":
    main()
