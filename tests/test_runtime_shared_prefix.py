"""The decode loop with a backend that shares the prompt prefix (contract: Backend.shares_prefix /
set_shared_prefix): same codes as a backend that keeps a copy of the prompt in every slot, with forks and prunes
mid-run, while forks and compaction copy only positions after the prompt."""

from __future__ import annotations

import numpy as np
import pytest
import runtime_sampler_reference as ref

from llasa_rt import _core as core

from runtime_toy_model import SPEECH_BASE, ToyBackend, ToyModel, make_generator

PROMPT = [128000, 128006, 882, 128007, 271, 128258, 9906, 1917, 128259, 128009, 128006, 78191, 128007, 271, 128260]
PROMPT += [SPEECH_BASE + r for r in (17, 4242, 60001, 17, 999)]
SMAX = 96
SAMPLED = ref.Options(
    temperature=0.9, top_k=3000, top_p=0.95, repetition_penalty=1.1, min_new_tokens=2, max_new_tokens=24, seed=11
)


class SharingToyBackend(ToyBackend):
    """The toy model reading positions [0, length) of every row from the shared slot once set_shared_prefix ran."""

    def __init__(self, model: ToyModel, cache: core.KvCache, buffers: core.StepBuffers):
        super().__init__(model, cache, buffers)
        self.prefix = (-1, 0)
        self.prefix_calls: list[tuple[int, int]] = []

    def shares_prefix(self) -> bool:
        return True

    def set_shared_prefix(self, slot: int, length: int) -> None:
        self.prefix_calls.append((slot, length))
        self.prefix = (slot, length)

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        slot, length = self.prefix
        if length == 0:
            super().forward(input_ids, past_len, logits)
            return
        self.calls.append((input_ids.shape[0], input_ids.shape[1], past_len))
        batch, seq = input_ids.shape
        # What each row sees: the shared slot's prefix, then its own positions (written back after the step).
        keys = [k.copy() for k in self.keys]
        values = [v.copy() for v in self.values]
        for layer in range(self.model.layers):
            keys[layer][:batch, :, :length] = self.keys[layer][slot, :, :length]
            values[layer][:batch, :, :length] = self.values[layer][slot, :, :length]
        logits[...] = self.model.step(keys, values, input_ids, past_len)
        for layer in range(self.model.layers):
            self.keys[layer][:batch, :, past_len:past_len + seq] = keys[layer][:batch, :, past_len:past_len + seq]
            self.values[layer][:batch, :, past_len:past_len + seq] = values[layer][:batch, :, past_len:past_len + seq]


def sharing_generator(model: ToyModel, slots: int) -> tuple[core.Generator, SharingToyBackend]:
    generator, plain = make_generator(model, slots=slots, max_seq_len=SMAX)
    backend = SharingToyBackend(model, plain.cache, plain.buffers)
    config = generator.config
    return core.Generator(backend, config), backend


def fork_and_prune(controller: core.GenerationController) -> None:
    if controller.step == 3:
        controller.prune(1)   # Compaction: the last slot's candidate moves into slot 1.
        controller.fork(2)
    if controller.step == 6:
        controller.prune(0)   # Slot 0's own positions are refilled; its prompt positions stay.
        controller.fork(3)


@pytest.fixture(scope="module")
def model() -> ToyModel:
    return ToyModel(seed=0)


def test_sharing_gives_the_same_codes_and_copies_only_the_suffix(model: ToyModel) -> None:
    plain, _ = make_generator(model, slots=5, max_seq_len=SMAX)
    expected = plain.generate(PROMPT, options=core.SamplingOptions(**SAMPLED.__dict__), num_candidates=5,
                              callback=fork_and_prune, callback_every=3)
    generator, backend = sharing_generator(model, slots=5)
    for layer in range(model.layers):  # Any copy of the prompt positions into slots 1.. would bring these back.
        backend.keys[layer][1:, :, :len(PROMPT)] = np.nan
        backend.values[layer][1:, :, :len(PROMPT)] = np.nan
    result = generator.generate(PROMPT, options=core.SamplingOptions(**SAMPLED.__dict__), num_candidates=5,
                                callback=fork_and_prune, callback_every=3)
    got = {c.uid: (c.tokens.tolist(), c.logprob, c.finish_reason) for c in result.candidates}
    want = {c.uid: (c.tokens.tolist(), c.logprob, c.finish_reason) for c in expected.candidates}
    assert got == want and len(got) == 5
    assert backend.prefix_calls == [(0, len(PROMPT)), (-1, 0)]
    for layer in range(model.layers):
        assert np.isnan(backend.keys[layer][1:, :, :len(PROMPT)]).all()
        assert np.isnan(backend.values[layer][1:, :, :len(PROMPT)]).all()
        # Slot 0 still holds the prompt's own keys/values (never overwritten by compaction).
        for position, token in enumerate(PROMPT):
            k, v = model.key_value(token, position)
            assert np.array_equal(backend.keys[layer][0, :, position], k[layer])
            assert np.array_equal(backend.values[layer][0, :, position], v[layer])
        # Positions after the prompt were copied by the forks (slots 1.. hold their own generated positions).
        assert not np.isnan(backend.keys[layer][1:5, :, len(PROMPT):len(PROMPT) + 4]).any()


def test_the_shared_prefix_ends_when_generate_raises(model: ToyModel) -> None:
    generator, backend = sharing_generator(model, slots=2)
    original = backend.forward

    def failing(input_ids, past_len, logits):
        if past_len > len(PROMPT) + 2:
            raise ValueError("backend exploded at step 3")
        original(input_ids, past_len, logits)

    backend.forward = failing
    with pytest.raises(ValueError, match="backend exploded at step 3"):
        generator.generate(PROMPT, options=core.SamplingOptions(**SAMPLED.__dict__), num_candidates=2)
    assert backend.prefix_calls == [(0, len(PROMPT)), (-1, 0)]
    del backend.forward
    backend.prefix_calls.clear()
    result = generator.generate(PROMPT, options=core.SamplingOptions(**SAMPLED.__dict__), num_candidates=2)
    assert backend.prefix_calls == [(0, len(PROMPT)), (-1, 0)] and len(result.candidates) == 2


def test_a_plain_backend_does_not_share_and_the_defaults_do_nothing(model: ToyModel) -> None:
    _, backend = make_generator(model, slots=2, max_seq_len=SMAX)
    assert backend.shares_prefix() is False
    assert backend.set_shared_prefix(0, 3) is None


def test_copy_slot_range_copies_only_the_range() -> None:
    cache = core.KvCache(core.KvCacheConfig(num_layers=2, num_kv_heads=2, head_dim=4, slots=3, max_seq_len=10,
                                            dtype="float16"))
    for layer in range(2):
        cache.key(layer)[...] = np.arange(cache.key(layer).size).reshape(cache.key(layer).shape)
        cache.value(layer)[...] = -cache.key(layer)
    before = [(cache.key(layer).copy(), cache.value(layer).copy()) for layer in range(2)]
    cache.copy_slot_range(0, 2, 3, 7)
    for layer in range(2):
        for buffer, old in zip((cache.key(layer), cache.value(layer)), before[layer], strict=True):
            expect = old.copy()
            expect[2, :, 3:7] = old[0, :, 3:7]
            assert np.array_equal(buffer, expect)
    with pytest.raises(IndexError, match=r"positions \[5, 11\) outside \[0, max_seq_len=10\]"):
        cache.copy_slot_range(0, 1, 5, 11)
    with pytest.raises(IndexError, match=r"positions \[5, 4\)"):
        cache.copy_slot_range(0, 1, 5, 4)
    with pytest.raises(IndexError, match="slots are"):
        cache.copy_slot_range(0, 3, 0, 1)
