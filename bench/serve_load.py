"""Load and faults against a running `llasa-rt serve`, and the kiosk throughput table.

    python bench/serve_load.py --url http://127.0.0.1:8000 --clients 8 --seconds 60      # mix of requests
    python bench/serve_load.py --table [--bundle B]     # starts a server: 1/2/4/8 clients vs sequential
    python bench/serve_load.py --soak 30 [--bundle B]   # 30-minute soak: requests, errors, RSS start/end

`run_load` (also used by the CI test) runs `clients` threads for `seconds`, each picking plain, streamed,
cancelled (hangs up mid-stream) and bad requests; it reports statuses, p50/p95 time to first audio and total
latency, the server's RSS growth after warm-up and the metrics it ends with. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

TEXTS = ["Welcome to the museum.", "The next train leaves at platform four.", "Please take your ticket.",
         "Thank you for your visit, and have a pleasant day."]
BAD_BODIES = [{"input": "no model"}, {"model": "llasa", "input": ""}, {"model": "llasa", "input": "hi", "speed": 2},
              {"model": "llasa", "input": "hi", "response_format": "aac"}]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run_load(url: str, clients: int, seconds: float, rss: Callable[[], float] | None = None, seed: int = 0,
             max_new_tokens: int | None = None) -> dict:
    """Concurrent mixed load for a bounded time; returns counts, latencies and RSS growth."""
    stop = time.time() + seconds
    lock = threading.Lock()
    out = {"good_ok": 0, "good_5xx": 0, "good_other": 0, "bad_sent": 0, "bad_4xx": 0, "cancelled": 0,
           "client_errors": 0, "ttfa": [], "latency": []}
    rss_start = rss() if rss else 0.0

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        with httpx.Client(timeout=300) as http:
            while time.time() < stop:
                try:
                    one(http, rng)
                except httpx.HTTPError as e:  # a timeout or a dropped connection counts as an error, then goes on
                    with lock:
                        out["client_errors"] += 1
                        out.setdefault("client_error_kinds", []).append(type(e).__name__)

    def one(http: httpx.Client, rng: random.Random) -> None:
        kind = rng.choices(["plain", "stream", "cancel", "bad"], [4, 3, 1, 1])[0]
        body = {"model": "llasa", "input": rng.choice(TEXTS), "seed": rng.randrange(1 << 30),
                "response_format": "pcm"}
        if max_new_tokens:
            body["max_new_tokens"] = max_new_tokens
        t0 = time.perf_counter()
        if kind == "bad":
            r = http.post(url + "/v1/audio/speech", json=rng.choice(BAD_BODIES))
            with lock:
                out["bad_sent"] += 1
                out["bad_4xx"] += 400 <= r.status_code < 500
            return
        if kind == "plain":
            r = http.post(url + "/v1/audio/speech", json=body)
            status = r.status_code
            first = time.perf_counter() - t0
        else:
            body["stream"] = True
            first = None
            with http.stream("POST", url + "/v1/audio/speech", json=body) as r:
                status = r.status_code
                for chunk in r.iter_bytes():
                    if chunk and first is None:
                        first = time.perf_counter() - t0
                        if kind == "cancel":
                            break
        with lock:
            if kind == "cancel":
                out["cancelled"] += 1
            elif status == 200:
                out["good_ok"] += 1
                out["latency"].append(time.perf_counter() - t0)
                if first is not None:
                    out["ttfa"].append(first)
            elif status >= 500:
                out["good_5xx"] += 1
            else:
                out["good_other"] += 1

    samples: list[tuple[float, float]] = []

    def sample_rss() -> None:
        while time.time() < stop:
            samples.append((time.time(), rss()))
            time.sleep(max(1.0, seconds / 60))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    if rss:
        threads.append(threading.Thread(target=sample_rss))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    half = [(t, v) for t, v in samples if t >= samples[0][0] + seconds / 2] if samples else []
    slope = (float(np.polyfit([t / 60 for t, _ in half], [v for _, v in half], 1)[0]) if len(half) >= 3 else None)
    report = {k: v for k, v in out.items() if k not in ("ttfa", "latency")}
    report.update({"ttfa_p50_s": _pct(out["ttfa"], 0.5), "ttfa_p95_s": _pct(out["ttfa"], 0.95),
                   "latency_p50_s": _pct(out["latency"], 0.5), "latency_p95_s": _pct(out["latency"], 0.95),
                   "rss_growth_mb": (rss() - rss_start) if rss else None,
                   "rss_slope_second_half_mb_per_min": slope})
    return report


class LocalServer:
    """`llasa-rt serve` on a free loopback port, waited for until /health answers 200."""

    def __init__(self, bundle: str | Path, *extra: str, capture: bool = False, wait_s: float = 600.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "llasa_rt.cli", "serve", "-b", str(bundle), "--port",
                                      str(self.port), "--fast-load", *extra], stdout=out, stderr=out, text=True)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read() if capture else ''}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not become healthy")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    def metrics(self) -> dict[str, float]:
        """GET /metrics as {series: value}."""
        out = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self, timeout: float = 60.0) -> tuple[int, str]:
        """SIGTERM, then the exit code and what it wrote on stderr (when captured)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err or ""

    def close(self) -> None:
        self.stop()


def throughput(url: str, clients: int, requests_per_client: int, tokens: int, stream: bool = True) -> dict:
    """`clients` threads each sending `requests_per_client` requests of `tokens` codes (streamed, or whole
    utterances); tokens/s overall and the median time to the first audio byte."""
    ttfa: list[float] = []

    def client(k: int) -> None:
        with httpx.Client(timeout=600) as http:
            for i in range(requests_per_client):
                body = {"model": "llasa", "input": TEXTS[(k + i) % len(TEXTS)], "seed": k * 100 + i,
                        "response_format": "pcm", "max_new_tokens": tokens, "stream": stream}
                t0 = time.perf_counter()
                first = None
                with http.stream("POST", url + "/v1/audio/speech", json=body) as r:
                    for chunk in r.iter_bytes():
                        if chunk and first is None:
                            first = time.perf_counter() - t0
                ttfa.append(first)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"tok_s": clients * requests_per_client * tokens / wall, "wall_s": wall,
            "ttfa_p50_s": statistics.median(ttfa)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (loopback)")
    ap.add_argument("--bundle", help="start a server on this bundle (default: the bench's Llasa-1B int4 + codec)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--table", action="store_true", help="throughput with 1/2/4/8 clients vs sequential")
    ap.add_argument("--soak", type=float, help="minutes of mixed load, reporting RSS at start and end")
    ap.add_argument("--tokens", type=int, default=100,
                    help="codes per request (random weights never end an utterance on their own)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    server = None
    url = a.url
    if url is None:
        bundle = a.bundle
        if bundle is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from speak import bundle_with_codec

            bundle = str(bundle_with_codec("int4"))
        server = LocalServer(bundle, "--threads", str(a.threads), "--max-batch", "8")
        url = server.url
    try:
        if a.table:
            per = {1: 4, 2: 4, 4: 2, 8: 1}
            whole = {n: throughput(url, n, per[n], a.tokens, stream=False) for n in per}
            streamed = {n: throughput(url, n, per[n], a.tokens, stream=True) for n in per}
            print("\n| concurrent clients | whole utterances: tokens/s | vs sequential | streamed: tokens/s | "
                  "vs sequential | streamed: median time to first audio |")
            print("|---|---|---|---|---|---|")
            for n in per:
                w, st = whole[n], streamed[n]
                print(f"| {n} | {w['tok_s']:.1f} | {w['tok_s'] / whole[1]['tok_s']:.2f}x | {st['tok_s']:.1f} | "
                      f"{st['tok_s'] / streamed[1]['tok_s']:.2f}x | {st['ttfa_p50_s']:.2f} s |")
        elif a.soak:
            rss = server.rss_mb if server else None
            start_rss = rss() if rss else None
            report = run_load(url, a.clients, a.soak * 60, rss, max_new_tokens=a.tokens)
            print(json.dumps({**report, "rss_start_mb": start_rss, "rss_end_mb": rss() if rss else None}, indent=1))
        else:
            print(json.dumps(run_load(url, a.clients, a.seconds, server.rss_mb if server else None,
                                      max_new_tokens=a.tokens), indent=1))
    finally:
        if server:
            server.close()


if __name__ == "__main__":
    main()
