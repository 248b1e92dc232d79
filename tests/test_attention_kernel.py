"""_core.Attention (the C++ attention kernel: GQA over the KvCache, causal, shared prompt prefix, float32/float16
KV) against a float64 NumPy reference, plus its argument checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from llasa_rt import InputError
from llasa_rt import _core as core

MAX_SEQ = 160


def make(heads: int, kv_heads: int, head_dim: int, dtype: str = "float32", slots: int = 9, threads: int = 1,
         layers: int = 2, seed: int = 0) -> tuple[core.KvCache, core.Attention]:
    """A cache whose every position holds random K/V, and an Attention over it."""
    cache = core.KvCache(core.KvCacheConfig(num_layers=layers, num_kv_heads=kv_heads, head_dim=head_dim,
                                            slots=slots, max_seq_len=MAX_SEQ, dtype=dtype))
    rng = np.random.default_rng(seed)
    for layer in range(layers):
        for buffer in (cache.key(layer), cache.value(layer)):
            buffer[...] = rng.standard_normal(buffer.shape)
    config = core.AttentionConfig(num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                                  scale=head_dim**-0.5, threads=threads)
    return cache, core.Attention(cache, config)


def inputs(batch: int, seq: int, heads: int, kv_heads: int, head_dim: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, seq, heads * head_dim)).astype(np.float32)
    k = rng.standard_normal((batch, seq, kv_heads * head_dim)).astype(np.float32)
    v = rng.standard_normal((batch, seq, kv_heads * head_dim)).astype(np.float32)
    return q, k, v


def reference(q, keys, values, past_lens, heads: int, kv_heads: int, head_dim: int) -> np.ndarray:
    """float64 causal GQA. keys/values [batch, kv_heads, positions, head_dim] hold each row's whole context."""
    batch, seq, _ = q.shape
    group = heads // kv_heads
    out = np.zeros(q.shape, np.float64)
    for b in range(batch):
        for h in range(heads):
            kh = keys[b, h // group].astype(np.float64)
            vh = values[b, h // group].astype(np.float64)
            for s in range(seq):
                end = past_lens[b] + s + 1
                scores = kh[:end] @ q[b, s, h * head_dim:(h + 1) * head_dim].astype(np.float64) / np.sqrt(head_dim)
                w = np.exp(scores - scores.max())
                out[b, s, h * head_dim:(h + 1) * head_dim] = (w / w.sum()) @ vh[:end]
    return out


def context(cache: core.KvCache, layer: int, slots, prefix_slot: int = 0, prefix_len: int = 0):
    """Each row's whole context as the kernel sees it: its slot, positions below prefix_len from prefix_slot."""
    keys = cache.key(layer)[slots].astype(np.float32)
    values = cache.value(layer)[slots].astype(np.float32)
    keys[:, :, :prefix_len] = cache.key(layer)[prefix_slot, :, :prefix_len]
    values[:, :, :prefix_len] = cache.value(layer)[prefix_slot, :, :prefix_len]
    return keys, values


# GQA ratios 1 and 4. On an AVX-512 CPU head_dim 16 and 64 take the AVX-512 kernel, 8 the AVX2 one, 12 the portable one.
SHAPES = [(4, 4, 16), (8, 2, 16), (4, 1, 12), (32, 8, 64), (8, 2, 8)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("heads,kv_heads,head_dim", SHAPES)
@pytest.mark.parametrize("batch,seq", [(1, 1), (8, 1), (1, 37), (8, 37)])
def test_matches_the_reference(dtype, heads, kv_heads, head_dim, batch, seq) -> None:
    cache, attention = make(heads, kv_heads, head_dim, dtype, threads=2)
    q, k, v = inputs(batch, seq, heads, kv_heads, head_dim)
    slots = np.array([8, 3, 0, 5, 1, 7, 2, 6][:batch], np.int32)
    past_lens = np.array([0, 5, 63, 64, 65, 100, 17, 1][:batch], np.int32) if batch > 1 else np.array([70], np.int32)
    out = np.full_like(q, np.nan)
    attention.run(1, q, k, v, slots, past_lens, 0, 0, out)
    keys, values = context(cache, 1, slots)
    # The kernel reads what the cache holds, float16 included: same tolerance for both dtypes.
    assert np.abs(out - reference(q, keys, values, past_lens, heads, kv_heads, head_dim)).max() <= 1e-5
    if dtype == "float16":  # Against the unrounded new K/V: only float16 rounding apart.
        for b in range(batch):
            for s in range(seq):
                keys[b, :, past_lens[b] + s] = k[b, s].reshape(kv_heads, head_dim)
                values[b, :, past_lens[b] + s] = v[b, s].reshape(kv_heads, head_dim)
        assert np.abs(out - reference(q, keys, values, past_lens, heads, kv_heads, head_dim)).max() <= 3e-3


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_new_keys_and_values_land_at_their_positions_in_the_cache_dtype(dtype) -> None:
    heads, kv_heads, head_dim, batch, seq = 8, 2, 16, 3, 5
    cache, attention = make(heads, kv_heads, head_dim, dtype)
    before_k = [cache.key(layer).copy() for layer in range(2)]
    before_v = [cache.value(layer).copy() for layer in range(2)]
    q, k, v = inputs(batch, seq, heads, kv_heads, head_dim)
    slots = np.array([4, 0, 7], np.int32)
    past_lens = np.array([10, 0, 150], np.int32)
    attention.run(0, q, k, v, slots, past_lens, 0, 0, np.empty_like(q))
    expect_k, expect_v = before_k[0].copy(), before_v[0].copy()
    for b in range(batch):
        span = slice(past_lens[b], past_lens[b] + seq)
        expect_k[slots[b], :, span] = k[b].reshape(seq, kv_heads, head_dim).transpose(1, 0, 2).astype(dtype)
        expect_v[slots[b], :, span] = v[b].reshape(seq, kv_heads, head_dim).transpose(1, 0, 2).astype(dtype)
    assert cache.key(0).dtype == np.dtype(dtype)
    assert np.array_equal(cache.key(0), expect_k) and np.array_equal(cache.value(0), expect_v)
    # Float16 rounding is round-to-nearest-even, as NumPy's (compared bit for bit above); other layers untouched.
    assert np.array_equal(cache.key(1), before_k[1]) and np.array_equal(cache.value(1), before_v[1])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 4, 16), (8, 2, 16), (32, 8, 64), (6, 3, 12)])
@pytest.mark.parametrize("seq", [1, 37])
def test_shared_prefix_equals_the_prefix_copied_into_every_slot(dtype, heads, kv_heads, head_dim, seq) -> None:
    batch, prefix = 8, 70
    shared_cache, shared = make(heads, kv_heads, head_dim, dtype)
    copied_cache, copied = make(heads, kv_heads, head_dim, dtype)
    slots = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.int32)
    past_lens = np.array([70, 71, 80, 90, 100, 70, 75, 110], np.int32)
    for layer in range(2):  # The copied cache holds slot 8's prefix in every row's slot.
        for buffer in (copied_cache.key(layer), copied_cache.value(layer)):
            buffer[:8, :, :prefix] = buffer[8, :, :prefix]
    q, k, v = inputs(batch, seq, heads, kv_heads, head_dim)
    out_shared = np.empty_like(q)
    out_copied = np.empty_like(q)
    for layer in range(2):
        shared_cache.key(layer)[:8, :, :prefix] = np.nan  # Never read: the prefix comes from slot 8.
        shared_cache.value(layer)[:8, :, :prefix] = np.nan
    shared.run(1, q, k, v, slots, past_lens, 8, prefix, out_shared)
    copied.run(1, q, k, v, slots, past_lens, 0, 0, out_copied)
    assert np.abs(out_shared - out_copied).max() <= 1e-6
    keys, values = context(copied_cache, 1, slots)
    assert np.abs(out_shared - reference(q, keys, values, past_lens, heads, kv_heads, head_dim)).max() <= 1e-5
    # The prefix slot itself may be one of the rows (the Generator's slot 0).
    slots0 = np.array([8, 0, 1], np.int32)
    past0 = np.array([prefix, 90, 75], np.int32)
    q3, k3, v3 = q[:3], k[:3], v[:3]
    out0 = np.empty_like(q3)
    shared.run(0, q3, k3, v3, slots0, past0, 8, prefix, out0)
    keys, values = context(shared_cache, 0, slots0, 8, prefix)
    assert np.abs(out0 - reference(q3, keys, values, past0, heads, kv_heads, head_dim)).max() <= 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("head_dim", [16, 8, 12])
def test_results_do_not_depend_on_the_thread_count(dtype, head_dim) -> None:
    outs = []
    for threads in (1, 2, 3):
        cache, attention = make(8, 2, head_dim, dtype, threads=threads)
        q, k, v = inputs(8, 37, 8, 2, head_dim)
        past_lens = np.array([40, 41, 50, 60, 70, 80, 90, 100], np.int32)
        out = np.empty_like(q)
        attention.run(1, q, k, v, np.arange(8, dtype=np.int32), past_lens, 8, 40, out)
        outs.append((out, cache.key(1).copy()))
    for out, keys in outs[1:]:
        assert np.array_equal(out, outs[0][0]) and np.array_equal(keys, outs[0][1])


def test_config_and_constructor_errors() -> None:
    with pytest.raises(InputError, match=r"num_heads \(6\) must be a multiple of num_kv_heads \(4\)"):
        core.AttentionConfig(num_heads=6, num_kv_heads=4, head_dim=8, scale=0.3)
    with pytest.raises(InputError, match="scale must be a positive finite number"):
        core.AttentionConfig(num_heads=4, num_kv_heads=4, head_dim=8, scale=0.0)
    with pytest.raises(InputError, match="threads must be >= 1"):
        core.AttentionConfig(num_heads=4, num_kv_heads=4, head_dim=8, scale=0.3, threads=0)
    cache = core.KvCache(core.KvCacheConfig(num_layers=1, num_kv_heads=2, head_dim=8, slots=2, max_seq_len=8))
    with pytest.raises(InputError, match="the KvCache has 2 KV heads of 8 but the AttentionConfig says 4 of 8"):
        core.Attention(cache, core.AttentionConfig(num_heads=4, num_kv_heads=4, head_dim=8, scale=0.3))


def test_bad_run_arguments_raise_clear_errors_and_write_nothing() -> None:
    heads, kv_heads, head_dim = 8, 2, 16
    cache, attention = make(heads, kv_heads, head_dim, slots=4)
    q, k, v = inputs(2, 3, heads, kv_heads, head_dim)
    good = dict(layer=0, q=q, k=k, v=v, slots=np.array([0, 1], np.int32), past_lens=np.array([4, 5], np.int32),
                prefix_slot=2, prefix_len=4)
    out = np.zeros_like(q)
    attention.run(**good, out=out)  # The good call works.
    keys = cache.key(0).copy()
    cases = [
        ({"slots": np.array([0, 4], np.int32)}, IndexError, r"row 1: slot 4 outside \[0, 4\)"),
        ({"slots": np.array([1, 1], np.int32)}, InputError, "rows 0 and 1 both use slot 1"),
        ({"past_lens": np.array([4, 158], np.int32)}, IndexError,
         r"past_len 158 \+ seq 3 exceeds the cache's max_seq_len"),
        ({"past_lens": np.array([3, 5], np.int32)}, InputError, "past_len 3 is shorter than prefix_len 4"),
        ({"prefix_slot": 9}, IndexError, "prefix_slot 9 outside"),
        ({"prefix_len": -1}, InputError, "prefix_len must be >= 0"),
        ({"layer": 2}, IndexError, "layer 2 outside"),
        ({"q": q[:, :, :-1]}, InputError, r"q has shape \[2, 3, 127\], expected \[2, 3, 128\]"),
        ({"k": k[:1]}, InputError, r"k has shape \[1, 3, 32\], expected \[2, 3, 32\]"),
        ({"v": v.astype(np.float64)}, InputError, "v has dtype float64; pass a C-contiguous float32 array"),
        ({"q": np.asfortranarray(q)}, InputError, "q is not C-contiguous"),
        ({"q": q[0]}, InputError, "q must be .batch, seq, num_heads.head_dim., got 2 dimensions"),
        ({"slots": np.array([0, 1])}, InputError, "slots has dtype int64; pass a C-contiguous int32 array"),
        ({"past_lens": np.array([4], np.int32)}, InputError, r"past_lens has shape \[1\], expected \[2\]"),
    ]
    for change, error, message in cases:
        out[...] = 7.0
        with pytest.raises(error, match=message):
            attention.run(**{**good, **change}, out=out)
        assert (out == 7.0).all() and np.array_equal(cache.key(0), keys), change
    with pytest.raises(InputError, match=r"out has shape \[2, 3, 64\], expected \[2, 3, 128\]"):
        attention.run(**good, out=np.zeros((2, 3, 64), np.float32))
    read_only = np.zeros_like(q)
    read_only.flags.writeable = False
    with pytest.raises(InputError, match="out is read-only"):
        attention.run(**good, out=read_only)


def test_the_kernel_follows_the_cpu_and_head_dim() -> None:
    """AVX-512 needs head_dim % 16 == 0, AVX2 head_dim % 8 == 0; anything else takes the portable kernel."""
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("needs /proc/cpuinfo (Linux) to know the CPU's features")
    flags = open("/proc/cpuinfo").read().replace("\n", " ")
    has_avx2 = all(f" {flag}" in flags for flag in ("avx2", "fma", "f16c"))
    best16 = "avx512" if has_avx2 and " avx512f" in flags else "avx2" if has_avx2 else "scalar"
    assert make(4, 4, 16)[1].kernel == best16
    assert make(4, 4, 8)[1].kernel == ("avx2" if has_avx2 else "scalar")
    assert make(4, 4, 12)[1].kernel == "scalar"
