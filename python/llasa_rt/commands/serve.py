"""`llasa-rt serve`: the OpenAI-compatible speech server (needs the `server` extra: starlette, uvicorn)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve speech over HTTP (OpenAI's /v1/audio/speech), requests batched in one decode loop",
        description="Serve a bundle over HTTP: POST /v1/audio/speech (OpenAI-compatible), GET /v1/audio/voices, "
                    "/v1/models, /health (ready after warm-up), /metrics (Prometheus). Listens on 127.0.0.1 unless "
                    "--host says otherwise. Needs: pip install 'llasa-rt[server]'.",
        epilog="example: llasa-rt serve --bundle llasa-1b-int4 --port 8000 & curl -s localhost:8000/v1/audio/speech "
               "-H 'Content-Type: application/json' -d '{\"model\": \"llasa\", \"input\": \"Hello.\", "
               "\"response_format\": \"wav\"}' -o hello.wav")
    p.add_argument("--bundle", "-b", required=True, help="bundle folder")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default 8000)")
    p.add_argument("--max-batch", type=int, default=8, help="KV slots shared by running requests (default 8)")
    p.add_argument("--max-queue", type=int, default=32, help="waiting requests beyond those; more get 503 "
                                                              "(default 32)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every API call")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request before it is cancelled "
                                                                "(default 300)")
    p.add_argument("--body-timeout", type=float, default=10.0,
                   help="seconds a client may take to send its request body (default 10)")
    p.add_argument("--max-new-tokens", type=int, help="codes per piece of text (default: the bundle's)")
    p.add_argument("--no-normalise", action="store_true", help="read numbers, dates, ... as written")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all physical cores)")
    p.add_argument("--native-decode", default="auto", metavar="MODE",
                   help="layered int4/int8 bundles: decode steps on llasa-rt's own kernels: auto (on AVX-512 VNNI "
                        "CPUs), off (ONNX Runtime), or a kernel: avx512vnni, avx2, scalar (default auto)")
    p.add_argument("--fast-load", action="store_true", help="skip checking the bundle files' sha256 on load")
    p.add_argument("--shutdown-grace", type=float, default=10.0,
                   help="on SIGTERM, seconds to let running requests finish before they are cancelled (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import threading
    from contextlib import asynccontextmanager
    from pathlib import Path

    from llasa_rt.errors import LlasaError
    from llasa_rt.options import as_float, as_int

    port = as_int(args.port, "--port", 0, 65535)
    max_batch = as_int(args.max_batch, "--max-batch", 1, 64)
    max_queue = as_int(args.max_queue, "--max-queue", 0, 100_000)
    timeout = as_float(args.timeout, "--timeout", 0.0, 86_400.0, lo_open=True)
    grace = as_float(args.shutdown_grace, "--shutdown-grace", 0.0, 3600.0)
    body_timeout = as_float(args.body_timeout, "--body-timeout", 0.0, 3600.0, lo_open=True)
    if args.max_new_tokens is not None:
        as_int(args.max_new_tokens, "--max-new-tokens", 1, 1 << 20)
    if args.api_key is not None and not args.api_key.strip():
        raise LlasaError("--api-key is empty; pass a key or leave the option out")
    try:
        import uvicorn
        from starlette.applications import Starlette  # noqa: F401
    except ImportError as e:
        raise LlasaError(f"serve needs the server extra ({e.name} is missing): pip install 'llasa-rt[server]'") from e
    from llasa_rt.engine import Engine
    from llasa_rt.server import ServerConfig, SpeechService, create_app

    engine = Engine(args.bundle, threads=args.threads, verify="fast" if args.fast_load else "full",
                    native_decode=args.native_decode)
    engine._require_codec()
    config = ServerConfig(host=args.host, port=port, max_batch=max_batch, max_queue=max_queue, api_key=args.api_key,
                          timeout_s=timeout, body_timeout_s=body_timeout, model_name=Path(args.bundle).resolve().name,
                          normalise=not args.no_normalise, max_new_tokens=args.max_new_tokens)
    service = SpeechService(engine, config)
    app = create_app(service)

    @asynccontextmanager
    async def lifespan(_app):
        def warm() -> None:
            try:
                service.warm_up()
                print(f"llasa-rt serve: ready on http://{args.host}:{port} (model '{config.model_name}')",
                      file=sys.stderr, flush=True)
            except Exception as e:  # the server stays up and reports unhealthy
                print(f"llasa-rt serve: warm-up failed: {e}", file=sys.stderr, flush=True)

        threading.Thread(target=warm, name="llasa-rt-warm-up", daemon=True).start()
        yield
        service.closing = True
        service.batcher.close(timeout=5.0)

    app.router.lifespan_context = lifespan
    print(f"llasa-rt serve: loading, warming up; listening on http://{args.host}:{port}", file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=args.host, port=port, log_level="warning", timeout_graceful_shutdown=grace,
                timeout_keep_alive=5, limit_concurrency=max_batch + max_queue + 16)
    return 0
