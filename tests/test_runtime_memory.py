"""The decode loop does not allocate per step and its memory stays flat over 1,000 steps.

Two checks: the C++ tests of tests/cpp/ (a CMake target run by ctest; it replaces global operator new and counts
allocations between tokens: the direct check, no Python in the loop), and a Python run whose RSS and buffer addresses
are watched from the callback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import runtime_sampler_reference as ref

from llasa_rt import _core as core

from runtime_toy_model import ToyModel, make_generator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ctest_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Configures the C++ tests alone (no Python module) into a temporary build, builds them and runs ctest."""
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake / ctest not found: the C++ tests of tests/cpp/ are built and run with them")
    build = tmp_path_factory.mktemp("cpp-tests")
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DLLASA_RT_BUILD_PYTHON=OFF",
                 "-DLLASA_RT_BUILD_TESTS=ON"]
    for command in (configure, ["cmake", "--build", str(build), "-j2"]):
        step = subprocess.run(command, capture_output=True, text=True)
        assert step.returncode == 0, f"{' '.join(command)} failed:\n{step.stdout}{step.stderr}"
    # -V: the tests' own output too (what they counted), not only pass / fail.
    run = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure", "-V"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_cpp_tests_pass_under_ctest(ctest_output: str) -> None:
    assert "100% tests passed" in ctest_output, ctest_output


def test_decode_steps_make_no_heap_allocation(ctest_output: str) -> None:
    """1,000 steps of 4 candidates (sampler on 2 threads, a prune and a fork on the way): zero operator new calls
    outside the callback."""
    assert "allocations_during_decode_steps=0" in ctest_output and "tokens=4000" in ctest_output, ctest_output


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc/self/statm (Linux)")
def test_memory_stays_flat_and_buffers_stay_put_over_1000_steps() -> None:
    model = ToyModel(layers=1, kv_heads=1, head_dim=4, seed=5)
    prompt = [128000, 9906, 128260, 128264 + 5]
    generator, backend = make_generator(model, slots=2, max_seq_len=len(prompt) + 1000)
    key_address = backend.keys[0].ctypes.data
    rss = {}

    def callback(controller: core.GenerationController) -> None:
        if not controller.done:
            rss[controller.step] = resident_bytes()

    # END masked for the whole run so that it lasts 1,000 steps.
    options = ref.Options(temperature=0.9, top_p=0.95, repetition_penalty=1.1, min_new_tokens=1000,
                          max_new_tokens=1000, seed=1)
    result = generator.generate(prompt, options=core.SamplingOptions(**options.__dict__), num_candidates=2,
                                callback=callback, callback_every=50)
    assert [len(c.tokens) for c in result.candidates] == [1000, 1000]
    growth = rss[950] - rss[100]
    assert growth < 2 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB between steps 100 and 950"
    # The backend saw the same input_ids / logits buffers at every one of its 1,000 calls, and the KV never moved.
    assert len(backend.calls) == 1000 and len(backend.pointers) == 1
    assert backend.pointers == {(backend.buffers.input_ids.ctypes.data, backend.buffers.logits.ctypes.data)}
    assert backend.cache.key(0).ctypes.data == key_address
    assert np.isfinite([c.logprob for c in result.candidates]).all()
