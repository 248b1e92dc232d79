"""The X-Codec2 decoder as a TensorRT plan (`codec_decoder.plan`, built by `llasa-rt build-engine`).

The same decoder as `codec.CodecDecoder` (same `decode`, same streaming on top of it), running the plan through the
TensorRT Python API: the plan is checked (`trt_plan.read_plan`: TensorRT version, GPU, sha256), deserialised once,
and the codes / audio device buffers of the profile's largest shape are allocated once; a call copies the codes in,
sets the input shape, runs `execute_async_v3` on its own stream and copies the audio out. Written to the documented
API; it has never run (no GPU or TensorRT on the development machines).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bundle import Bundle
from ..codec import CodecDecoder
from ..errors import BundleError, InputError
from .cuda_runtime import DEVICE_TO_HOST, HOST_TO_DEVICE, CudaRuntime
from .trt_plan import read_plan, running_facts


class TensorRtCodecDecoder(CodecDecoder):
    """X-Codec2 decoding with the bundle's codec plan (graph entry `graph`, default "codec_decoder.plan")."""

    def __init__(self, bundle: Bundle, graph: str = "codec_decoder.plan") -> None:
        from . import require_tensorrt

        trt = require_tensorrt(bundle)
        self._read_facts(bundle)  # sample rate, hop, codebook size of the ONNX codec the plan was built from
        plan, facts = read_plan(bundle, graph, running_facts(bundle))
        self.precision = facts.precision
        self.cuda = CudaRuntime()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise BundleError(f"TensorRT cannot deserialise {bundle.graph(graph).path_name} of bundle '{bundle.root}'; "
                              "rebuild it with `llasa-rt build-engine`")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or len(names) != 2:
            raise BundleError(f"{bundle.graph(graph).path_name} has tensors {names}, not one codes input and one audio "
                              "output; rebuild it with `llasa-rt build-engine`")
        self._input, self._output = inputs[0], next(n for n in names if n != inputs[0])
        max_batch, _, max_frames = facts.profiles[0]["shapes"][self._input][2]
        self._max = (int(max_batch), int(max_frames))
        self._codes = self.cuda.malloc(self._max[0] * self._max[1] * 4)
        self._audio = self.cuda.malloc(self._max[0] * self._max[1] * self.hop_length * 4)
        self._stream = self.cuda.new_stream()

    def _run(self, codes: np.ndarray) -> np.ndarray:
        batch, _, frames = codes.shape
        if batch > self._max[0] or frames > self._max[1]:
            raise InputError(f"the codec plan decodes at most {self._max[0]} utterances of {self._max[1]} codes, not "
                             f"{batch} of {frames}; rebuild it with a larger --max-batch / --max-context")
        self.cuda.copy(self._codes, codes.ctypes.data, codes.nbytes, HOST_TO_DEVICE)
        ctx: Any = self._context
        if not ctx.set_input_shape(self._input, tuple(codes.shape)):
            raise InputError(f"the codec plan refuses codes of shape {list(codes.shape)}")
        ctx.set_tensor_address(self._input, self._codes)
        ctx.set_tensor_address(self._output, self._audio)
        if not ctx.execute_async_v3(self._stream):
            raise BundleError("TensorRT could not run the codec plan (see its messages above)")
        self.cuda.stream_synchronize(self._stream)
        audio = np.empty((batch, 1, frames * self.hop_length), np.float32)
        self.cuda.copy(audio.ctypes.data, self._audio, audio.nbytes, DEVICE_TO_HOST)
        return audio

    def __del__(self) -> None:
        cuda = getattr(self, "cuda", None)
        for name in ("_codes", "_audio"):
            if cuda is not None and getattr(self, name, None):
                cuda.free(getattr(self, name))
