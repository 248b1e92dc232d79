"""Request batching: many requests share the decode steps of one C++ `Scheduler` (continuous batching).

    batcher = RequestBatcher(engine, max_batch=8).start()
    request = batcher.submit("Hello there.", GenerationOptions(seed=1))
    for codes in request.codes():          # final codes as they come; the whole candidate list at the end
        ...
    request.cancel()                       # frees its KV slots at the next step

Each request has its own prompt, voice, sampling options, seed and candidate count; it joins between two decode
steps (its prompt prefilled in chunks of `prefill_chunk` tokens, one chunk per step, so running streams are never
held up by more than one chunk) and leaves when it finishes or is cancelled. With fp32/fp16 graphs every request
gets exactly what `Engine.generate_codes` gives it alone (int8/int4 graphs: ONNX Runtime's batch-1 kernel differs,
see README Limits). One loop thread steps the scheduler; `submit` and `cancel` may be called from any thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from .errors import InputError
from .options import GenerationOptions, as_int
from .search import mean_logprob

MAX_BATCH = 64


@dataclass
class BatchedResult:
    """A finished request: its candidates (as `Engine.generate_codes` reports them) and where its time went."""

    codes: np.ndarray  # the chosen candidate's codes (most likely per token)
    candidates: list[Any]  # _core.Candidate snapshots, uids 0..N-1
    seed: int
    cancelled: bool
    timings: dict[str, float] = field(default_factory=dict)


class BatchedRequest:
    """A submitted request: its final codes arrive on a queue as the loop produces them."""

    def __init__(self, batcher: RequestBatcher, request_id: int, seed: int, prompt_tokens: int) -> None:
        self.batcher, self.id, self.seed, self.prompt_tokens = batcher, request_id, seed, prompt_tokens
        self.submitted = time.perf_counter()
        self.first_codes_at: float | None = None
        self.result: BatchedResult | None = None
        self._queue: queue.Queue = queue.Queue()

    def _deliver(self, item: Any) -> None:
        if isinstance(item, np.ndarray) and self.first_codes_at is None:
            self.first_codes_at = time.perf_counter()
        self._queue.put(item)

    def codes(self, timeout: float | None = None) -> Iterator[np.ndarray]:
        """Yields final codes (int32 arrays) as they become final; returns when the request ends (then `result`
        is set). Raises what the loop raised, or queue.Empty after `timeout` seconds without news."""
        while True:
            item = self._queue.get(timeout=timeout)
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, BatchedResult):
                self.result = item
                return
            yield item

    def wait(self, timeout: float | None = None) -> BatchedResult:
        """Waits for the end; returns the result."""
        for _ in self.codes(timeout):
            pass
        assert self.result is not None
        return self.result

    def cancel(self) -> bool:
        """Stops the request at the next step; its slots are freed."""
        return self.batcher.cancel(self)


class RequestBatcher:
    """An Engine's LM behind a Scheduler with `max_batch` KV slots (the KV memory never grows)."""

    def __init__(self, engine: Any, max_batch: int = 8, prefill_chunk: int = 256) -> None:
        self.engine = engine
        self.max_batch = as_int(max_batch, "max_batch", 1, MAX_BATCH)
        runner = engine.lm
        self.backend = runner.new_backend(self.max_batch)
        self.scheduler = _core.Scheduler(self.backend, runner.config,
                                         _core.SchedulerConfig(prefill_chunk=as_int(prefill_chunk, "prefill_chunk",
                                                                                    1, 1 << 16)))
        self._requests: dict[int, BatchedRequest] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.steps = 0
        self.step_tokens = 0  # candidate-tokens decoded in all steps
        self.error: BaseException | None = None

    # ---- requests -------------------------------------------------------------------------------------------------
    def submit(self, text: str, options: GenerationOptions | None = None, voice: Any = None) -> BatchedRequest:
        """Queues one piece of text (no splitting); returns its handle. Checks the request before queueing.

        `voice` is a bundle voice's name, or a voice prompt the Engine made (its `_Voice`)."""
        options = GenerationOptions.build(options)
        if options.search is not None:
            raise InputError("a search cannot share batched steps yet; run it with Engine.speak(search=...)")
        from .prompt import PromptBuilder

        PromptBuilder.check_text(text)
        v = self.engine._voice(voice) if voice is None or isinstance(voice, str) else voice
        prompt, core_options, seed = self.engine.prepare(text, v, options.seeded())
        if options.num_candidates > self.max_batch:
            raise InputError(f"num_candidates={options.num_candidates} does not fit the {self.max_batch} KV slots "
                             "of this batcher")
        with self._lock:
            if self.error is not None:
                raise InputError(f"the decode loop has stopped after an error ({self.error}); restart the server")
            request_id = self.scheduler.submit(np.asarray(prompt, np.int64), options=core_options,
                                               num_candidates=options.num_candidates)
            request = BatchedRequest(self, request_id, seed, len(prompt))
            self._requests[request_id] = request
            self._wake.notify()
        return request

    def cancel(self, request: BatchedRequest) -> bool:
        """Cancels a request (queued or running); its slots are freed at the next step."""
        with self._lock:
            ok = self.scheduler.cancel(request.id)
            self._wake.notify()
        return ok

    # ---- the loop -------------------------------------------------------------------------------------------------
    def step(self) -> int:
        """One scheduler step, its updates delivered to the requests; returns the number of updates."""
        live = self.scheduler.live_slots
        updates = self.scheduler.step()
        self.steps += 1
        self.step_tokens += live
        for u in updates:
            with self._lock:
                request = self._requests.get(u.id) if not u.done else self._requests.pop(u.id, None)
            if request is None:
                continue
            if len(u.new_final_codes):
                request._deliver(u.new_final_codes)
            if u.done:
                request._deliver(self._result(request, u))
        return len(updates)

    def _result(self, request: BatchedRequest, u: Any) -> BatchedResult:
        cands = list(u.candidates)
        if cands:
            best = max(cands, key=lambda c: mean_logprob(c.logprob, len(c.tokens)))
            codes = best.tokens.copy()
        else:
            codes = np.zeros(0, np.int32)
        timings = {"prefill_s": u.prefill_seconds, "decode_steps": float(u.decode_steps),
                   "shared_rows": float(u.batch_tokens), "total_s": time.perf_counter() - request.submitted,
                   "prompt_tokens": float(request.prompt_tokens)}
        if request.first_codes_at is not None:
            timings["first_codes_s"] = request.first_codes_at - request.submitted
        return BatchedResult(codes=codes, candidates=cands, seed=request.seed, cancelled=u.cancelled, timings=timings)

    def start(self) -> RequestBatcher:
        """Starts the loop thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llasa-rt-batch-loop", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Cancels every request and stops the loop thread."""
        with self._lock:
            for request_id in list(self._requests):
                self.scheduler.cancel(request_id)
            self._wake.notify()
        deadline = time.monotonic() + timeout
        while not self.scheduler.idle and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.01)
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self.scheduler.idle and not self._stopping:
                    self._wake.wait(0.5)
                if self._stopping:
                    return
            try:
                self.step()
            except BaseException as e:  # a failed step ends every request with the error, never silently
                with self._lock:
                    self.error = e
                    requests = list(self._requests.values())
                    self._requests.clear()
                    self._stopping = True
                for r in requests:
                    r._deliver(e)
                return

    @property
    def running(self) -> int:
        """Requests admitted and not ended."""
        return self.scheduler.running

    @property
    def queued(self) -> int:
        """Requests waiting for slots."""
        return self.scheduler.queued
