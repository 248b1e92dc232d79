"""llasa-rt's own decoder for the layered LM: the segment graphs' weights handed to `_core.NativeLm`.

A layered int4/int8 bundle stores its decoder as ONNX segment graphs over one external data file
(`lm.layered.data`). ONNX Runtime can run those segments (with llasa-rt's attention kernel between them), but
llasa-rt's own weight-only kernels (runtime/src/quant_linear*.cc) stream each weight once per group of up to 8 rows
with the arithmetic overlapping the stream, and were measured faster for every step: 1.2-1.8x per decode step of
1-8 candidates and 1.7x per prompt on an AVX-512 VNNI CPU (docs/performance.md). This module reads the segments'
initializers without the `onnx` package (a small protobuf reader: the graphs are ours and the weights sit in the
data file), checks that the decoder is one `NativeLm` can run (MatMulNBits products, a GatherBlockQuantized
embedding, float32 activations) and builds it; `layered.open_layered` then runs every step on it and does not load
ONNX Runtime's sessions at all. The KV cache, attention kernel and shared prompt are the ones the segments use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..bundle import ModelFacts
from ..errors import BundleError, InputError

NATIVE_MODES = ("auto", "off", "avx512vnni", "avx2", "scalar")  # RuntimeOptions.native_decode
# Kernels "auto" uses: AVX-512 VNNI was measured 1.2-2x faster per decode step and 1.7x per prompt than ONNX Runtime
# (docs/performance.md). The AVX2 kernel was measured only on an AVX-512 machine, where it loses to ONNX Runtime's
# VNNI kernels at 8 rows; against ONNX Runtime on an AVX2-only CPU it is unmeasured, so there "auto" keeps ONNX
# Runtime and native_decode="avx2" is the opt-in (compare with `python bench/runtime.py --native avx2`).
AUTO_KERNELS = ("avx512vnni",)

_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 7: np.int64, 10: np.float16}  # ONNX TensorProto data types


# ---- a minimal protobuf reader for ModelProto -> GraphProto -> initializers and nodes ----------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints for varint/fixed fields, bytes for the others."""
    out, pos, end = [], 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported")
        out.append((number, wire, value))
    return out


@dataclass
class _Tensor:
    dims: list[int] = field(default_factory=list)
    dtype: int = 0
    raw: bytes | None = None
    external: dict[str, str] = field(default_factory=dict)


@dataclass
class _Node:
    op: str
    name: str
    inputs: list[str]
    ints: dict[str, int]


def _tensor(buf: bytes) -> tuple[str, _Tensor]:
    t, name = _Tensor(), ""
    for number, wire, value in _fields(buf):
        if number == 1:  # dims: packed or one per field
            if wire == 2:
                pos = 0
                while pos < len(value):
                    d, pos = _varint(value, pos)
                    t.dims.append(d)
            else:
                t.dims.append(value)
        elif number == 2:
            t.dtype = value
        elif number == 8:
            name = value.decode()
        elif number == 9:
            t.raw = value
        elif number == 13:
            entry = {n: v.decode() for n, _, v in _fields(value)}
            t.external[entry.get(1, "")] = entry.get(2, "")
    return name, t


def _node(buf: bytes) -> _Node:
    n = _Node("", "", [], {})
    for number, _, value in _fields(buf):
        if number == 1:
            n.inputs.append(value.decode())
        elif number == 3:
            n.name = value.decode()
        elif number == 4:
            n.op = value.decode()
        elif number == 5:
            attr = {num: v for num, _, v in _fields(value)}
            if 3 in attr:  # an int attribute
                n.ints[attr[1].decode()] = attr[3] - (1 << 64) if attr[3] >= 1 << 63 else attr[3]
    return n


def read_graph(path: Path) -> tuple[dict[str, _Tensor], list[_Node]]:
    """The initializers and nodes of an ONNX model file (its external data is not read)."""
    graph = next((v for n, _, v in _fields(path.read_bytes()) if n == 7), None)
    if graph is None:
        raise ValueError(f"{path} has no graph")
    tensors, nodes = {}, []
    for number, _, value in _fields(graph):
        if number == 5:
            name, t = _tensor(value)
            tensors[name] = t
        elif number == 1:
            nodes.append(_node(value))
    return tensors, nodes


# ---- the decoder's weights -------------------------------------------------------------------------------------
class _Weights:
    """Initializers of all segments by name, as arrays (views into the memory-mapped data file, or inline copies)."""

    def __init__(self, folder: Path, segments: list[str]) -> None:
        self.folder = folder
        self.tensors: dict[str, _Tensor] = {}
        self.nodes: dict[str, _Node] = {}
        for name in segments:
            tensors, nodes = read_graph(folder / name)
            self.tensors.update(tensors)
            self.nodes.update({n.name: n for n in nodes})
        self.maps: dict[Path, np.memmap] = {}

    def array(self, name: str, mapped: bool = False) -> np.ndarray:
        """The initializer `name`: read into memory (it is copied by NativeLm, and reading keeps the data file's
        pages out of this process), or with `mapped` a view into the memory-mapped file (kept by NativeLm)."""
        t = self.tensors.get(name)
        if t is None or t.dtype not in _DTYPES:
            raise KeyError(name)
        dtype = np.dtype(_DTYPES[t.dtype])
        if not t.external:
            return np.frombuffer(t.raw or b"", dtype=np.uint8).view(dtype).reshape(t.dims)
        location = self.folder / t.external["location"]
        offset, length = int(t.external.get("offset", 0)), int(t.external["length"])
        if mapped:
            if location not in self.maps:
                self.maps[location] = np.memmap(location, dtype=np.uint8, mode="r")
            return self.maps[location][offset:offset + length].view(dtype).reshape(t.dims)
        out = np.empty(length, np.uint8)
        with open(location, "rb") as f:
            f.seek(offset)
            if f.readinto(memoryview(out)) != length:
                raise ValueError(f"{location.name} ends before tensor {name!r}")
        return out.view(dtype).reshape(t.dims)

    def matrix(self, node_name: str) -> Any:
        node = self.nodes.get(node_name)
        if node is None or node.op != "MatMulNBits" or len(node.inputs) < 4:
            raise KeyError(node_name)
        a = node.ints
        return _core.QuantMatrix(n=a["N"], k=a["K"], bits=a["bits"], block=a["block_size"],
                                 data=self.array(node.inputs[1]), scales=self.array(node.inputs[2]).reshape(-1),
                                 zero_points=self.array(node.inputs[3]).reshape(-1))

    def norm(self, prefix: str) -> np.ndarray:
        """The weight of the (Skip)SimplifiedLayerNormalization node named prefix + /LayerNorm or /SkipLayerNorm."""
        for suffix, index in (("/LayerNorm", 1), ("/SkipLayerNorm", 2)):
            node = self.nodes.get(prefix + suffix)
            if node is not None:
                w = self.array(node.inputs[index])
                if w.dtype != np.float32:
                    raise KeyError(prefix)
                return w
        raise KeyError(prefix)


def open_native(folder: Path, segments: list[str], model: ModelFacts, head_rows: int, threads: int,
                kernel: str = "auto") -> Any | None:
    """A `_core.NativeLm` over the layered LM in `folder` (segment files `segments`), or None when its decoder is not
    one NativeLm runs (float graphs, fp16 activations: those keep ONNX Runtime's segments for every step)."""
    if kernel == "off":
        return None
    try:
        w = _Weights(Path(folder), segments)
        embed = w.nodes["/model/embed_tokens/GatherBlockQuantized"]
        rotary = next(n for n in w.nodes.values() if n.op == "RotaryEmbedding")
        cos, sin = w.array(rotary.inputs[2]), w.array(rotary.inputs[3])
        if cos.dtype != np.float32:
            return None
        max_positions, half = cos.shape
        if half * 2 != model.head_dim or sin.shape != cos.shape:
            raise BundleError(f"the layered LM in '{folder}' has rotary tables of shape {list(cos.shape)}, not "
                              f"[positions, {model.head_dim // 2}]; re-export the bundle")
        native = _core.NativeLm(_core.NativeLmConfig(
            num_layers=model.num_layers, hidden_size=model.hidden_size, num_heads=model.num_attention_heads,
            num_kv_heads=model.num_kv_heads, head_dim=model.head_dim, intermediate_size=model.intermediate_size,
            head_rows=head_rows, max_positions=int(max_positions), rms_norm_eps=float(model.rms_norm_eps),
            threads=threads, kernel=kernel))
        if kernel == "auto" and native.kernel not in AUTO_KERNELS:
            return None  # keep ONNX Runtime's kernels where ours were not measured faster (see AUTO_KERNELS)
        # The embedding table stays in the mapped file (only the rows of the tokens fed are ever read).
        native.set_embedding(bits=embed.ints["bits"], block=embed.ints["block_size"],
                             data=w.array(embed.inputs[0], mapped=True), scales=w.array(embed.inputs[2], mapped=True),
                             zero_points=w.array(embed.inputs[3], mapped=True))
        native.set_rotary(np.ascontiguousarray(cos), np.ascontiguousarray(sin))
        _set_weights(native, w, model, folder)
    except (KeyError, StopIteration):
        return None  # a float graph (MatMul, Gather) or fp16 norms: not a decoder NativeLm runs
    except InputError:
        raise  # a kernel this CPU lacks (NativeLmConfig says which)
    except (ValueError, IndexError, OSError) as e:
        raise BundleError(f"the layered LM in '{folder}' could not be read ({e}); the bundle is damaged: re-export "
                          "it") from None
    return native


def _set_weights(native: Any, w: _Weights, model: ModelFacts, folder: Path) -> None:
    """Every layer and the head into `native`; a shape that disagrees with manifest.json is a BundleError."""
    try:
        for i in range(model.num_layers):
            p = f"/model/layers.{i}"
            native.set_layer(i, w.norm(f"{p}/input_layernorm"), w.matrix(f"{p}/attn/qkv_proj/MatMulNBits"),
                             w.matrix(f"{p}/attn/o_proj/MatMulNBits"), w.norm(f"{p}/post_attention_layernorm"),
                             w.matrix(f"{p}/mlp/gate_up_proj/MatMulNBits"), w.matrix(f"{p}/mlp/down_proj/MatMulNBits"))
        native.set_head(w.norm("/model/norm"), w.matrix("/lm_head/MatMulNBits"))
    except InputError as e:
        raise BundleError(f"the layered LM in '{folder}' does not match manifest.json ({e}); re-export the "
                          "bundle") from None
