"""`llasa-rt serve`: an OpenAI-compatible speech endpoint for kiosks, with requests batched in one decode loop.

    POST /v1/audio/speech   {"model": ..., "input": "Hello.", "voice": "alice", "response_format": "wav",
                             "stream": false, "seed": 1, "temperature": 0.8, "top_p": 1.0}
    GET  /v1/audio/voices   the bundle's voices
    GET  /v1/models         the served model
    GET  /health            200 once warmed up (503 before, and while shutting down)
    GET  /metrics           Prometheus text: queue, active slots, tokens/s, time to first audio, errors

Concurrent requests share decode steps (`llasa_rt.batching.RequestBatcher`, the C++ Scheduler). Audio is made
per piece of text (long input is split at sentences; later pieces keep the first piece's voice); a streamed
request (`"stream": true`, or `"stream_format": "audio"`/`"sse"`) gets audio chunks as they are decoded. Every
error is JSON in OpenAI's shape with the same one-line message as the CLI; nothing leaks a traceback, and a bad
request never harms the next one. Beyond `max_queue` waiting requests the server answers 503 at once with
`Retry-After`. A client that disconnects cancels its generation and frees its slots.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import to_pcm16
from .codec import StreamingConfig
from .errors import InputError, LlasaError
from .options import GenerationOptions

FIRST_CHUNK_FRAMES = 5  # streamed requests: the first audio leaves after 5 codes (+ look-ahead), not 50
FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}
STREAM_FORMATS = ("wav", "pcm")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
FIELDS = {"model", "input", "voice", "response_format", "speed", "stream", "stream_format", "seed", "temperature",
          "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "instructions", "normalise", "search",
          "prm", "orm"}


@dataclass
class ServerConfig:
    """How the server runs."""

    host: str = "127.0.0.1"  # listen address (loopback unless told otherwise)
    port: int = 8000  # listen port
    max_batch: int = 8  # KV slots shared by all running requests (bounds KV memory)
    max_queue: int = 32  # requests waiting beyond the running ones; more get 503 + Retry-After
    api_key: str | None = None  # require "Authorization: Bearer KEY"
    max_body_bytes: int = 64 * 1024  # largest request body
    max_input_chars: int = 4096  # longest input text (OpenAI's limit)
    timeout_s: float = 300.0  # per request, from arrival to the last byte
    body_timeout_s: float = 10.0  # to receive a request body (slow clients are cut off)
    model_name: str = "llasa"  # the id GET /v1/models reports (the bundle folder's name by default)
    normalise: bool = True  # spell out numbers, dates, ... in English input (when the front end is installed)
    max_new_tokens: int | None = None  # codes per piece (None: the bundle's default)


class ApiError(Exception):
    """An error answered as JSON in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}


@dataclass
class Metrics:
    """Counters for /metrics."""

    requests: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    completed: int = 0
    cancelled: int = 0
    audio_seconds: float = 0.0
    first_audio_sum: float = 0.0
    first_audio_count: int = 0
    started: float = field(default_factory=time.time)

    def error(self, status: int) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1


def _wav_header(sample_rate: int, frames: int | None) -> bytes:
    size = 0xFFFFFFFF if frames is None else 36 + 2 * frames
    data = 0xFFFFFFFF - 36 if frames is None else 2 * frames
    return (b"RIFF" + size.to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little") +
            (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + sample_rate.to_bytes(4, "little") +
            (2 * sample_rate).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little") +
            b"data" + data.to_bytes(4, "little"))


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Whole-utterance audio in a response format."""
    if fmt == "pcm":
        return to_pcm16(samples)
    if fmt == "wav":
        return _wav_header(sample_rate, len(samples)) + to_pcm16(samples)
    import soundfile as sf

    buf = io.BytesIO()
    kind = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}[fmt]
    sf.write(buf, np.asarray(samples, np.float32), sample_rate, format=kind[0], subtype=kind[1])
    return buf.getvalue()


class SpeechService:
    """What the HTTP layer calls: request checking, pieces and voices, batching, decoding."""

    def __init__(self, engine: Any, config: ServerConfig) -> None:
        from .batching import RequestBatcher

        self.engine, self.config = engine, config
        self.batcher = RequestBatcher(engine, max_batch=config.max_batch)
        self.metrics = Metrics()
        self.ready = False
        self.closing = False
        self.in_flight = 0
        self.normaliser = _normaliser() if config.normalise else None

    def warm_up(self) -> None:
        """One short generation and one decode, so the first real request does not pay for kernel set-up."""
        self.batcher.start()
        request = self.batcher.submit("Warm up.", GenerationOptions(seed=0, max_new_tokens=4))
        result = request.wait(timeout=300)
        if self.engine.codec is not None and len(result.codes):
            self.engine.codec.decode(result.codes)
        self.ready = True

    # ---- request checking ---------------------------------------------------------------------------------------
    def parse(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}",
                           param=unknown[0])
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "'model' is required: a string (GET /v1/models lists it)", param="model")
        if model not in (self.config.model_name, "llasa", "llasa-rt", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
            raise ApiError(404, f"model '{model}' is not served here; this server speaks with "
                                f"'{self.config.model_name}'", kind="not_found_error", param="model",
                           code="model_not_found")
        text = body.get("input")
        if not isinstance(text, str):
            raise ApiError(400, "'input' is required: the text to speak, as a string", param="input")
        if not text.strip():
            raise ApiError(400, "'input' is empty; give the words to speak", param="input")
        if len(text) > self.config.max_input_chars:
            raise ApiError(400, f"'input' has {len(text)} characters; at most {self.config.max_input_chars} per "
                                "request", param="input")
        fmt = body.get("response_format", "mp3")
        if fmt not in FORMATS:
            raise ApiError(400, f"response_format {fmt!r} is not supported; use one of {', '.join(FORMATS)}",
                           param="response_format")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or float(speed) != 1.0:
            raise ApiError(400, f"speed {speed!r} is not supported: Llasa speaks at its own pace (use 1.0)",
                           param="speed")
        stream_format = body.get("stream_format")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be true or false", param="stream")
        if stream_format not in (None, "audio", "sse"):
            raise ApiError(400, f"stream_format {stream_format!r} is not supported; use 'audio' or 'sse'",
                           param="stream_format")
        streaming = stream or stream_format is not None
        if streaming and fmt not in STREAM_FORMATS:
            raise ApiError(400, f"streamed audio is sent as {' or '.join(STREAM_FORMATS)}; response_format {fmt!r} "
                                "needs the whole utterance (drop stream)", param="response_format")
        voice = body.get("voice")
        if voice is not None and not isinstance(voice, str):
            raise ApiError(400, "'voice' must be a string (GET /v1/audio/voices lists them)", param="voice")
        if voice in OPENAI_VOICES or voice in ("", "default"):
            voice = None  # OpenAI clients always send a voice; without a bundle voice of that name, speak plainly
        if voice is not None and voice not in self.engine.bundle.manifest.voices:
            have = ", ".join(self.engine.voices) or "none"
            raise ApiError(400, f"voice {voice!r} is not in this bundle (voices: {have})", param="voice")
        normalise = body.get("normalise", True)
        if not isinstance(normalise, bool):
            raise ApiError(400, "'normalise' must be true or false", param="normalise")
        try:
            search = None
            if body.get("search") is not None:
                from .search import Search

                prm, orm = body.get("prm") or [], body.get("orm") or []
                for name, value in (("prm", prm), ("orm", orm)):
                    if not isinstance(value, (str, list)) or not all(isinstance(v, str) for v in value):
                        raise ApiError(400, f"'{name}' must be a verifier name or a list of names", param=name)
                search = Search.parse(body["search"], prm=prm, orm=orm)
                for scorers in (search.prm, search.orm):
                    self.engine._scorers(scorers)  # unknown verifiers are refused now, not after the queue
            elif body.get("prm") or body.get("orm"):
                raise ApiError(400, "'prm' and 'orm' need 'search' (e.g. \"best-of-4\")", param="search")
            options = GenerationOptions(
                seed=body.get("seed"), temperature=body.get("temperature"), top_p=body.get("top_p"),
                top_k=body.get("top_k"), min_p=body.get("min_p"), repetition_penalty=body.get("repetition_penalty"),
                max_new_tokens=body.get("max_new_tokens", self.config.max_new_tokens), search=search)
        except InputError as e:
            raise ApiError(400, str(e)) from None
        if normalise and self.normaliser is not None:
            text = self.normaliser(text)
        try:
            pieces = self.engine._pieces(text, True, 200, "sentences")
            voice = self.engine._voice(voice)  # read once here; the generation uses it
        except LlasaError as e:
            raise ApiError(400, str(e), param="input") from None
        return {"pieces": pieces, "voice": voice, "format": fmt, "streaming": streaming,
                "sse": stream_format == "sse", "options": options}

    # ---- generation -----------------------------------------------------------------------------------------------
    async def pieces_audio(self, req: dict[str, Any], disconnected: Any, deadline: float):
        """Yields float32 audio chunks of the whole request (pieces joined by a short pause)."""
        from .engine import _PieceVoices

        engine = self.engine
        codec = engine._require_codec()
        voices = _PieceVoices(req["voice"], len(req["pieces"]))
        options = req["options"].seeded()
        for i, piece in enumerate(req["pieces"]):
            voice = voices.voice()
            if i:
                yield np.zeros(int(0.15 * engine.sample_rate), np.float32)
            if options.search is not None:  # a search keeps its own candidates: it runs on the Engine, one at a time
                try:
                    gen = await asyncio.to_thread(engine._generate, piece, voice, options.for_piece(i), None, 0)
                except LlasaError as e:
                    raise ApiError(400, str(e), param="search") from None
                yield await asyncio.to_thread(engine._decode, gen.codes, voice)
                voices.spoken(i, piece, gen.codes)
                self.metrics.audio_seconds += len(gen.codes) / engine.bundle.manifest.audio.tokens_per_second
                continue
            try:
                handle = self.batcher.submit(piece, options.for_piece(i), voice)
            except LlasaError as e:
                raise ApiError(400, str(e), param="input") from None
            streamer = codec.streaming(StreamingConfig(first_chunk_frames=FIRST_CHUNK_FRAMES) if req["streaming"]
                                       else None)
            if voice is not None:
                streamer.prime(voice.codes)
            codes: list[np.ndarray] = []
            try:
                while True:
                    if time.monotonic() > deadline:
                        raise ApiError(504, f"the request took longer than {self.config.timeout_s:g} s; it was "
                                            "cancelled (split the input, or raise --timeout)", kind="timeout_error")
                    if await disconnected():
                        raise asyncio.CancelledError
                    try:
                        item = await asyncio.to_thread(handle._queue.get, True, 0.25)
                    except queue.Empty:
                        continue
                    if isinstance(item, BaseException):
                        raise ApiError(500, f"the decode loop failed ({item}); the server must be restarted",
                                       kind="server_error")
                    if isinstance(item, np.ndarray):
                        codes.append(item)
                        if req["streaming"]:
                            for chunk in await asyncio.to_thread(streamer.push, item):
                                yield chunk
                        continue
                    handle.result = item
                    break
            except BaseException:
                handle.cancel()
                raise
            result = handle.result
            if result.cancelled:
                raise ApiError(503, "the request was cancelled (the server is shutting down)", kind="server_error")
            all_codes = np.concatenate(codes) if codes else np.zeros(0, np.int32)
            if len(result.codes) > len(all_codes):  # several candidates: the chosen one's codes past the shared part
                all_codes = result.codes
                if req["streaming"]:
                    for chunk in await asyncio.to_thread(streamer.push, result.codes[sum(map(len, codes)):]):
                        yield chunk
            if req["streaming"]:
                for chunk in await asyncio.to_thread(streamer.flush):
                    yield chunk
            else:
                yield await asyncio.to_thread(engine._decode, all_codes, voice)
            voices.spoken(i, piece, all_codes)
            self.metrics.audio_seconds += len(all_codes) / engine.bundle.manifest.audio.tokens_per_second

    def metrics_text(self) -> str:
        m, b = self.metrics, self.batcher
        up = max(1e-9, time.time() - m.started)
        lines = [
            "# HELP llasa_requests_total Speech requests received.", "# TYPE llasa_requests_total counter",
            f"llasa_requests_total {m.requests}",
            "# HELP llasa_requests_completed_total Speech requests answered in full.",
            "# TYPE llasa_requests_completed_total counter", f"llasa_requests_completed_total {m.completed}",
            "# HELP llasa_requests_cancelled_total Requests whose client went away.",
            "# TYPE llasa_requests_cancelled_total counter", f"llasa_requests_cancelled_total {m.cancelled}",
            "# HELP llasa_errors_total Error responses by status.", "# TYPE llasa_errors_total counter",
            *[f'llasa_errors_total{{status="{s}"}} {n}' for s, n in sorted(m.errors.items())],
            "# HELP llasa_queue_length Requests waiting for KV slots.", "# TYPE llasa_queue_length gauge",
            f"llasa_queue_length {b.queued}",
            "# HELP llasa_active_slots KV slots of live candidates.", "# TYPE llasa_active_slots gauge",
            f"llasa_active_slots {b.scheduler.live_slots}",
            "# HELP llasa_running_requests Requests being generated.", "# TYPE llasa_running_requests gauge",
            f"llasa_running_requests {b.running}",
            "# HELP llasa_in_flight_requests HTTP requests being served.", "# TYPE llasa_in_flight_requests gauge",
            f"llasa_in_flight_requests {self.in_flight}",
            "# HELP llasa_decode_steps_total Batched decode steps.", "# TYPE llasa_decode_steps_total counter",
            f"llasa_decode_steps_total {b.steps}",
            "# HELP llasa_tokens_total Speech tokens decoded (all rows of all steps).",
            "# TYPE llasa_tokens_total counter", f"llasa_tokens_total {b.step_tokens}",
            "# HELP llasa_tokens_per_second Tokens decoded per second since start.",
            "# TYPE llasa_tokens_per_second gauge", f"llasa_tokens_per_second {b.step_tokens / up:.3f}",
            "# HELP llasa_audio_seconds_total Seconds of speech produced.",
            "# TYPE llasa_audio_seconds_total counter", f"llasa_audio_seconds_total {m.audio_seconds:.3f}",
            "# HELP llasa_time_to_first_audio_seconds Time to first audio of streamed requests.",
            "# TYPE llasa_time_to_first_audio_seconds summary",
            f"llasa_time_to_first_audio_seconds_sum {m.first_audio_sum:.6f}",
            f"llasa_time_to_first_audio_seconds_count {m.first_audio_count}",
        ]
        return "\n".join(lines) + "\n"


def _normaliser() -> Any:
    from .normalise import normalise

    return normalise


def create_app(service: SpeechService) -> Any:
    """The Starlette application over a SpeechService."""
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    config = service.config

    def error_response(e: ApiError) -> JSONResponse:
        service.metrics.error(e.status)
        return JSONResponse({"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}},
                            status_code=e.status, headers=e.headers)

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {config.api_key}":
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                           kind="authentication_error", code="invalid_api_key")

    async def read_json(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, f"the body must be JSON (Content-Type: application/json), not {ctype or 'none'!r}")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body_bytes):
            raise ApiError(413, f"the body is larger than {config.max_body_bytes} bytes")
        chunks, size = [], 0

        async def receive() -> bytes:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_body_bytes:
                    raise ApiError(413, f"the body is larger than {config.max_body_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            raw = await asyncio.wait_for(receive(), config.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {config.body_timeout_s:g} s") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON ({e})") from None

    async def speech(request: Request) -> Response:
        service.metrics.requests += 1
        try:
            check_key(request)
            if not service.ready or service.closing:
                raise ApiError(503, "the server is not ready (warming up or shutting down); retry shortly",
                               kind="server_error", headers={"Retry-After": "2"})
            if service.in_flight >= config.max_batch + config.max_queue:
                raise ApiError(503, f"the server is busy ({service.in_flight} requests in flight); retry shortly",
                               kind="server_error", code="overloaded", headers={"Retry-After": "1"})
            req = service.parse(await read_json(request))
        except ApiError as e:
            return error_response(e)
        except ClientDisconnect:
            service.metrics.cancelled += 1
            return Response(status_code=499)
        deadline = time.monotonic() + config.timeout_s
        rate = service.engine.sample_rate
        start = time.perf_counter()
        if req["streaming"]:
            async def body():
                # Counted from the first iteration: a body that never starts (the client left) has nothing to undo.
                service.in_flight += 1
                first = True
                try:
                    if req["format"] == "wav" and not req["sse"]:
                        yield _wav_header(rate, None)
                    async for chunk in service.pieces_audio(req, request.is_disconnected, deadline):
                        if first:
                            service.metrics.first_audio_sum += time.perf_counter() - start
                            service.metrics.first_audio_count += 1
                            first = False
                        data = to_pcm16(chunk)
                        if req["sse"]:
                            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                            yield f"data: {json.dumps(event)}\n\n".encode()
                        else:
                            yield data
                    if req["sse"]:
                        yield b'data: {"type": "speech.audio.done"}\n\n'
                    service.metrics.completed += 1
                except ApiError as e:  # headers are sent: the stream ends early; the error is counted and logged
                    service.metrics.error(e.status)
                    print(f"llasa-rt serve: streamed request ended: {e.message}", file=sys.stderr)
                except (asyncio.CancelledError, GeneratorExit):
                    service.metrics.cancelled += 1
                    raise
                finally:
                    service.in_flight -= 1

            media = "text/event-stream" if req["sse"] else FORMATS[req["format"]]
            return StreamingResponse(body(), media_type=media)
        service.in_flight += 1
        try:
            chunks = [c async for c in service.pieces_audio(req, request.is_disconnected, deadline)]
            samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            data = await asyncio.to_thread(encode_audio, samples, rate, req["format"])
            service.metrics.completed += 1
            return Response(data, media_type=FORMATS[req["format"]])
        except ApiError as e:
            return error_response(e)
        except asyncio.CancelledError:
            service.metrics.cancelled += 1
            return Response(status_code=499)
        finally:
            service.in_flight -= 1

    async def voices(request: Request) -> Response:
        try:
            check_key(request)
        except ApiError as e:
            return error_response(e)
        m = service.engine.bundle.manifest
        return JSONResponse({"voices": [{"name": n, "seconds": v.seconds, "transcript": v.transcript}
                                        for n, v in sorted(m.voices.items())]})

    async def models(request: Request) -> Response:
        try:
            check_key(request)
        except ApiError as e:
            return error_response(e)
        return JSONResponse({"object": "list", "data": [{"id": config.model_name, "object": "model",
                                                         "created": int(service.metrics.started),
                                                         "owned_by": "llasa-rt"}]})

    async def health(request: Request) -> Response:
        if service.ready and not service.closing and service.batcher.error is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "starting" if not service.ready else "unavailable"}, status_code=503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such endpoint" if status == 404 else "method not allowed for this endpoint"
        return error_response(ApiError(status, f"{message}: {request.method} {request.url.path}"))

    async def server_error(request: Request, exc: Exception) -> Response:
        print(f"llasa-rt serve: internal error on {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return error_response(ApiError(500, "internal error; the server logged it", kind="server_error"))

    routes = [Route("/v1/audio/speech", speech, methods=["POST"]), Route("/v1/audio/voices", voices),
              Route("/v1/models", models), Route("/health", health), Route("/metrics", metrics)]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, 500: server_error,
                                                        Exception: server_error})
