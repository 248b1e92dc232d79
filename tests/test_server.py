"""`llasa-rt serve` as a real process on loopback, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")

TOKENS = 40  # codes per piece the test server makes (random weights never stop on their own)
HOP = 320


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_load import LocalServer  # noqa: E402


class Server(LocalServer):
    """The test server: fixed codes per piece, 2 threads, stderr captured."""

    def __init__(self, bundle: Path, *extra: str) -> None:
        super().__init__(bundle, "--max-new-tokens", str(TOKENS), "--threads", "2", *extra, capture=True,
                         wait_s=120)


@pytest.fixture(scope="module")
def server(full_bundle):
    s = Server(full_bundle, "--max-batch", "4", "--max-queue", "8", "--body-timeout", "2")
    yield s
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err


def speech(server, timeout=120, **body):
    payload = {"model": "llasa", "input": "Hello from the kiosk.", "seed": 1, **body}
    return httpx.post(server.url + "/v1/audio/speech", json=payload, timeout=timeout)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mp3", "opus"])
def test_formats_decode_to_the_expected_length(server, fmt):
    r = speech(server, response_format=fmt)
    assert r.status_code == 200, r.text
    if fmt == "pcm":
        samples = np.frombuffer(r.content, "<i2")
        assert len(samples) == TOKENS * HOP
        return
    audio, rate = sf.read(io.BytesIO(r.content))
    assert rate == 16000
    if fmt in ("wav", "flac"):
        assert len(audio) == TOKENS * HOP
    else:  # lossy codecs pad their frames
        assert abs(len(audio) - TOKENS * HOP) < 4000


def test_search_request(server):
    r = speech(server, response_format="pcm", search="best-of-2", seed=9)
    assert r.status_code == 200 and len(r.content) == TOKENS * HOP * 2


def test_same_seed_same_audio_and_pieces(server):
    a = speech(server, response_format="pcm", seed=7).content
    b = speech(server, response_format="pcm", seed=7).content
    assert a == b
    two = speech(server, response_format="pcm", input="First sentence here, quite long. " * 7 + "And the second.")
    assert two.status_code == 200 and len(two.content) > 2 * TOKENS * HOP * 2  # two pieces and a pause


def test_streaming_sends_the_first_chunk_before_generation_ends(full_bundle):
    s = Server(full_bundle, "--max-batch", "2")
    try:
        start = time.perf_counter()
        first = None
        data = b""
        body = {"model": "llasa", "input": "A long streamed answer.", "response_format": "pcm", "stream": True,
                "seed": 3, "max_new_tokens": 400}
        with httpx.stream("POST", s.url + "/v1/audio/speech", json=body, timeout=120) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                if first is None and chunk:
                    first = time.perf_counter() - start
                data += chunk
        total = time.perf_counter() - start
        print(f"streamed: first bytes after {first:.2f} s, all after {total:.2f} s")
        assert len(data) == 400 * HOP * 2 and first < total / 2
        sse = {"model": "llasa", "input": "Events.", "response_format": "pcm", "stream_format": "sse", "seed": 3}
        r = httpx.post(s.url + "/v1/audio/speech", json=sse, timeout=120)
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1]["type"] == "speech.audio.done" and events[0]["type"] == "speech.audio.delta"
    finally:
        s.stop()


def test_voices_models_health_metrics(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert httpx.get(server.url + "/v1/audio/voices").json() == {"voices": []}
    m = server.metrics()
    assert {"llasa_queue_length", "llasa_active_slots", "llasa_tokens_per_second",
            "llasa_time_to_first_audio_seconds_count"} <= set(m)


BAD = [
    ({"input": "hi"}, 400, "'model' is required"),
    ({"model": "nope", "input": "hi"}, 404, "model 'nope' is not served here"),
    ({"model": "llasa"}, 400, "'input' is required"),
    ({"model": "llasa", "input": ""}, 400, "'input' is empty"),
    ({"model": "llasa", "input": "   "}, 400, "'input' is empty"),
    ({"model": "llasa", "input": 5}, 400, "'input' is required: the text to speak, as a string"),
    ({"model": "llasa", "input": "x" * 5000}, 400, "at most 4096 per request"),
    ({"model": "llasa", "input": "say <|eot_id|>"}, 400, "control token"),
    ({"model": "llasa", "input": "hi", "voice": "ghost"}, 400, "voice 'ghost' is not in this bundle"),
    ({"model": "llasa", "input": "hi", "voice": 3}, 400, "'voice' must be a string"),
    ({"model": "llasa", "input": "hi", "response_format": "aac"}, 400, "response_format 'aac' is not supported"),
    ({"model": "llasa", "input": "hi", "speed": 1.5}, 400, "speed 1.5 is not supported"),
    ({"model": "llasa", "input": "hi", "speed": "fast"}, 400, "speed 'fast' is not supported"),
    ({"model": "llasa", "input": "hi", "temperature": -1}, 400, "temperature must be a number in [0, 100]"),
    ({"model": "llasa", "input": "hi", "top_p": 2}, 400, "top_p must be a number in (0, 1]"),
    ({"model": "llasa", "input": "hi", "seed": -5}, 400, "seed must be an integer"),
    ({"model": "llasa", "input": "hi", "seed": "abc"}, 400, "seed must be an integer"),
    ({"model": "llasa", "input": "hi", "seed": 2**64}, 400, "seed must be an integer"),
    ({"model": "llasa", "input": "hi", "top_k": 1.5}, 400, "top_k must be an integer"),
    ({"model": "llasa", "input": "hi", "max_new_tokens": 0}, 400, "max_new_tokens must be an integer"),
    ({"model": "llasa", "input": "hi", "stream": "yes"}, 400, "'stream' must be true or false"),
    ({"model": "llasa", "input": "hi", "stream": True, "response_format": "flac"}, 400, "needs the whole utterance"),
    ({"model": "llasa", "input": "hi", "stream_format": "video"}, 400, "stream_format 'video' is not supported"),
    ({"model": "llasa", "input": "hi", "wat": 1}, 400, "unknown field(s) wat"),
    ({"model": "llasa", "input": "hi", "normalise": "no"}, 400, "'normalise' must be true or false"),
    ({"model": "llasa", "input": "hi", "search": "best-of-0"}, 400, "search n must be an integer"),
    ({"model": "llasa", "input": "hi", "search": "best-of-2", "orm": ["nope"]}, 400, "verifier 'nope'"),
    ({"model": "llasa", "input": "hi", "orm": "asr"}, 400, "'prm' and 'orm' need 'search'"),
    ([1, 2, 3], 400, "must be a JSON object"),
    ("just a string", 400, "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD)
def test_bad_request_bodies(server, body, status, message):
    r = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"] and {"message", "type", "param", "code"} <= set(err)
    assert "Traceback" not in r.text


def test_bad_requests_at_the_http_level_and_the_server_stays_healthy(server):
    url = server.url + "/v1/audio/speech"
    cases = [
        (httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
        (httpx.post(url, content=b"\xff\xfe", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
        (httpx.post(url, content=b"input=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
         "must be JSON"),
        (httpx.post(url, content=b"{}"), 415, "must be JSON"),
        (httpx.post(url, content=b"x" * 70_000, headers={"Content-Type": "application/json"}), 413,
         "larger than 65536 bytes"),
        (httpx.get(url), 405, "method not allowed"),
        (httpx.get(server.url + "/v1/nothing"), 404, "no such endpoint"),
    ]
    for r, status, message in cases:
        assert r.status_code == status, r.text
        assert message in r.json()["error"]["message"]
    # A slow client (slowloris): headers, then a body that trickles in more slowly than --body-timeout allows.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"mo")
        time.sleep(3)
        reply = sock.recv(4096).decode(errors="replace")
    assert " 408 " in reply.splitlines()[0] and "did not arrive within 2 s" in reply
    assert speech(server, response_format="pcm").status_code == 200  # the next good request succeeds


def test_client_disconnect_cancels_and_frees_slots(server):
    body = {"model": "llasa", "input": "I will hang up.", "response_format": "pcm", "stream": True,
            "max_new_tokens": 1500, "seed": 4}
    before = server.metrics().get("llasa_requests_cancelled_total", 0)
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=60) as r:
        next(r.iter_bytes())  # audio started; now the client goes away
    deadline = time.time() + 30
    while time.time() < deadline:
        m = server.metrics()
        if m["llasa_active_slots"] == 0 and m["llasa_running_requests"] == 0:
            break
        time.sleep(0.2)
    m = server.metrics()
    assert m["llasa_active_slots"] == 0 and m["llasa_running_requests"] == 0
    assert m["llasa_requests_cancelled_total"] == before + 1


def test_api_key_and_overload(full_bundle):
    s = Server(full_bundle, "--api-key", "sekrit", "--max-batch", "1", "--max-queue", "0")
    try:
        body = {"model": "llasa", "input": "hi", "response_format": "pcm"}
        r = httpx.post(s.url + "/v1/audio/speech", json=body, timeout=60)
        assert r.status_code == 401 and "Authorization: Bearer KEY" in r.json()["error"]["message"]
        wrong = httpx.post(s.url + "/v1/audio/speech", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(s.url + "/v1/models").status_code == 401
        auth = {"Authorization": "Bearer sekrit"}
        long = {**body, "max_new_tokens": 600, "stream": True}
        # The busy request goes out once the long one has sent its first audio, so it is in flight for sure
        # (a fixed sleep raced with a fast machine finishing all 600 codes first).
        with httpx.stream("POST", s.url + "/v1/audio/speech", json=long, headers=auth, timeout=120) as streamed:
            assert streamed.status_code == 200
            chunks = streamed.iter_bytes()
            data = next(chunks)
            busy = httpx.post(s.url + "/v1/audio/speech", json=body, headers=auth, timeout=60)
            data += b"".join(chunks)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert "busy" in busy.json()["error"]["message"]
        assert len(data) == 600 * HOP * 2
        assert httpx.post(s.url + "/v1/audio/speech", json=body, headers=auth, timeout=60).status_code == 200
    finally:
        s.stop()


def test_graceful_shutdown_finishes_running_requests(full_bundle):
    s = Server(full_bundle, "--shutdown-grace", "20")
    result = {}

    def long_request():
        r = httpx.post(s.url + "/v1/audio/speech", json={"model": "llasa", "input": "Finish me.",
                                                         "response_format": "pcm", "max_new_tokens": 200}, timeout=120)
        result["status"], result["bytes"] = r.status_code, len(r.content)

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(1.0)
    code, err = s.stop()  # SIGTERM while the request runs
    t.join()
    assert code == 0 and "Traceback" not in err
    assert result == {"status": 200, "bytes": 200 * HOP * 2}


@pytest.mark.slow
def test_short_load_mix(full_bundle):
    """A bounded mix of plain, streamed, cancelled and bad requests from concurrent clients (the CI version of
    bench/serve_load.py): no 5xx on good requests, no leaked slots, RSS flat after warm-up."""
    s = Server(full_bundle, "--max-batch", "4", "--max-queue", "16")
    try:
        from serve_load import run_load

        report = run_load(s.url, clients=6, seconds=20, rss=s.rss_mb, seed=0, max_new_tokens=TOKENS)
        print(json.dumps(report, indent=1))
        assert report["good_5xx"] == 0 and report["good_ok"] > 0
        assert report["bad_4xx"] == report["bad_sent"]
        m = s.metrics()
        assert m["llasa_active_slots"] == 0 and m["llasa_running_requests"] == 0
        assert report["rss_growth_mb"] < 50
    finally:
        code, err = s.stop()
        assert code == 0, err



def test_layered_bundle_serves_speech_and_search(layered_full_bundle):
    """The server's Scheduler (forward_rows, no shared prompt) on the layered LM."""
    s = Server(layered_full_bundle, "--max-batch", "4")
    try:
        r = speech(s, response_format="pcm", seed=5)
        assert r.status_code == 200 and len(r.content) == TOKENS * HOP * 2
        assert speech(s, response_format="pcm", seed=5).content == r.content
        r = speech(s, response_format="pcm", search="best-of-2", seed=9)
        assert r.status_code == 200 and len(r.content) == TOKENS * HOP * 2
    finally:
        code, err = s.stop()
    assert code == 0 and "Traceback" not in err, err
