"""An ONNX graph opened for rewriting: its linear layers found, weights read one at a time, the result streamed out.

A "linear" is a standard `MatMul` whose second input is a 2-D float initializer [K, N] (fp32 or fp16); that
covers every weight product of both LM flavours and of the codec decoder's MatMuls, and skips the attention's
activation-by-activation products. The graph is loaded without its external data (an fp32 1B graph is 6 GB);
a rewrite replaces or adds initializers and inserts nodes before a given node, and `save` writes a new `.onnx`
plus one external data file, copying untouched weights byte for byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llasa_rt.errors import BundleError

INLINE_LIMIT = 1024  # bytes: smaller tensors are stored inside the .onnx file
ALIGN = 1 << 16  # byte alignment of large tensors in the data file
FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}
NP_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
            np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int64): TensorProto.INT64}


@dataclass
class Linear:
    """A MatMul with a weight initializer (y = x @ W, W [K, N]), or a Conv with one (W [N, K / groups, *kernel])."""

    node: onnx.NodeProto  # the MatMul or Conv
    input: str  # activation tensor x: [..., K] (MatMul) or [batch, K, ...] (Conv)
    weight: str  # initializer name of W
    k: int  # input features (channels)
    n: int  # output features (channels)
    dtype: type  # np.float32 or np.float16 (the weight's and the activation's type)
    conv: bool = False  # a Conv (per-output-channel axis 0, channels on axis 1 of x)


@dataclass
class Packed:
    """A tensor given as raw little-endian bytes (INT4: two values per byte, low nibble first)."""

    data: bytes
    data_type: int  # TensorProto data type
    dims: tuple[int, ...]


def pack_int4(q: np.ndarray) -> Packed:
    """Packs int values in [-8, 7] (any shape) as ONNX INT4 raw data."""
    flat = (q.reshape(-1).astype(np.int16) & 0x0F).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return Packed((flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes(), TensorProto.INT4, tuple(q.shape))


def unpack_int4(p: Packed) -> np.ndarray:
    """The int8 values of a packed INT4 tensor (the NumPy reference of ONNX's INT4 layout)."""
    b = np.frombuffer(p.data, np.uint8)
    nib = np.stack([b & 0x0F, b >> 4], axis=-1).reshape(-1)[: int(np.prod(p.dims))].astype(np.int8)
    return np.where(nib > 7, nib - 16, nib).astype(np.int8).reshape(p.dims)


class GraphFile:
    """An ONNX model loaded without external data, with producer / consumer maps and lazy weight reads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"graph '{self.path}' does not exist")
        try:
            self.model = onnx.load(str(self.path), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends
            raise BundleError(f"'{self.path}' is not a readable ONNX graph ({str(e).splitlines()[0][:200]})") from None
        self.replaced: dict[str, np.ndarray | Packed] = {}  # initializer name -> new content (new or replaced)
        self.before: dict[str, list[onnx.NodeProto]] = {}  # node name -> nodes to insert before it
        self._index()

    def _index(self) -> None:
        g = self.model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.taken: set[str] = set()  # names handed out by `fresh`
        seen: set[str] = set()
        for i, n in enumerate(g.node):  # every node needs a unique name to insert before it
            if not n.name or n.name in seen:
                n.name = f"{n.name or n.op_type}/#{i}"
            seen.add(n.name)

    @property
    def opset(self) -> int:
        """The default-domain opset."""
        return next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def require_opset(self, version: int) -> None:
        """Converts the graph to default-domain opset `version` if it is older (blockwise DequantizeLinear needs
        21; ops whose signature changed, e.g. ReduceMean's axes, are rewritten by ONNX's version converter).
        Only before any other change."""
        if self.opset >= version:
            return
        if self.replaced or self.before:
            raise RuntimeError("require_opset must come before other changes")
        from onnx import version_converter

        try:
            self.model = version_converter.convert_version(self.model, version)
        except Exception as e:  # the converter raises its own error types
            raise BundleError(f"cannot convert '{self.path.name}' from opset {self.opset} to {version} "
                              f"({str(e).splitlines()[0][:200]}); export the graph at opset >= {version}") from None
        self._index()

    def array(self, name: str) -> np.ndarray:
        """An initializer's current value as NumPy (read from the external data file if needed)."""
        if name in self.replaced:
            value = self.replaced[name]
            if isinstance(value, Packed):
                raise TypeError(f"{name} is packed")
            return value
        t = self.inits[name]
        if t.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(t)
        dims, data_type, payload = self._external(t)
        return numpy_helper.to_array(helper.make_tensor(name, data_type, dims, payload, raw=True))

    def linears(self, convs: bool = False) -> list[Linear]:
        """The MatMuls whose second input is a 2-D fp32/fp16 initializer (and with `convs` the Convs whose weight
        is an fp32/fp16 initializer), in graph order."""
        out = []
        for n in self.model.graph.node:
            if n.domain not in ("", "ai.onnx") or len(n.input) < 2 or n.input[1] not in self.inits:
                continue
            t = self.inits[n.input[1]]
            if t.data_type not in FLOAT_TYPES:
                continue
            if n.op_type == "MatMul" and len(t.dims) == 2:
                out.append(Linear(node=n, input=n.input[0], weight=n.input[1], k=int(t.dims[0]), n=int(t.dims[1]),
                                  dtype=FLOAT_TYPES[t.data_type]))
            elif convs and n.op_type == "Conv" and len(t.dims) >= 3:
                out.append(Linear(node=n, input=n.input[0], weight=n.input[1], k=int(t.dims[1]), n=int(t.dims[0]),
                                  dtype=FLOAT_TYPES[t.data_type], conv=True))
        return out

    def set(self, name: str, value: np.ndarray | Packed) -> str:
        """Adds or replaces initializer `name`; returns the name."""
        if name not in self.inits:
            t = TensorProto()
            t.name = name
            self.model.graph.initializer.append(t)
            self.inits[name] = self.model.graph.initializer[-1]
        self.replaced[name] = value
        return name

    def fresh(self, base: str) -> str:
        """A tensor / node name not used yet, starting with `base`."""
        name, i = base, 0
        while name in self.inits or name in self.producer or name in self.consumers or name in self.taken:
            i += 1
            name = f"{base}.{i}"
        self.taken.add(name)
        return name

    def insert_before(self, node: onnx.NodeProto, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        """Adds node `op` (one output) to run before `node`; returns its output name."""
        out = self.fresh(f"{name}/output_0")
        self.before.setdefault(node.name, []).append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> list[str]:
        """Writes the rewritten graph to `path` and `path.data` (through temporary names, then os.replace).

        Returns the file names written (graph first). Untouched external weights are copied byte for byte.
        The object is spent afterwards (open the saved file again to rewrite further).
        """
        path = Path(path)
        data_name = path.name + ".data"
        tmp_graph = path.parent / f".{path.name}.tmp-{os.getpid()}"
        tmp_data = path.parent / f".{data_name}.tmp-{os.getpid()}"
        g = self.model.graph
        try:
            with open(tmp_data, "wb") as data:
                offset = 0
                for t in g.initializer:
                    raw = self._raw(t)
                    if raw is None:
                        continue  # inline and untouched: stays as it is
                    dims, data_type, payload = raw
                    name = t.name
                    t.Clear()
                    t.name, t.data_type = name, data_type
                    t.dims.extend(dims)
                    if len(payload) <= INLINE_LIMIT:
                        t.raw_data = payload
                        continue
                    pad = -offset % ALIGN
                    data.write(b"\0" * pad)
                    offset += pad
                    data.write(payload)
                    t.data_location = TensorProto.EXTERNAL
                    for key, value in (("location", data_name), ("offset", str(offset)),
                                       ("length", str(len(payload)))):
                        entry = t.external_data.add()
                        entry.key, entry.value = key, value
                    offset += len(payload)
            nodes = []
            for n in g.node:
                nodes.extend(self.before.get(n.name, []))
                nodes.append(n)
            del g.node[:]
            g.node.extend(nodes)
            self.before.clear()
            self.replaced.clear()
            for k, v in (metadata or {}).items():
                props = self.model.metadata_props
                entry = next((p for p in props if p.key == k), None) or props.add()
                entry.key, entry.value = k, v
            onnx.save_model(self.model, str(tmp_graph))
            os.replace(tmp_data, path.parent / data_name)
            os.replace(tmp_graph, path)
        except BaseException:
            tmp_graph.unlink(missing_ok=True)
            tmp_data.unlink(missing_ok=True)
            raise
        return [path.name, data_name]

    def _raw(self, t: TensorProto) -> tuple[tuple[int, ...], int, bytes] | None:
        """(dims, data type, bytes) of an initializer that must be (re)written; None for untouched inline ones."""
        if t.name in self.replaced:
            v = self.replaced[t.name]
            if isinstance(v, Packed):
                return v.dims, v.data_type, v.data
            arr = np.ascontiguousarray(v)
            return tuple(arr.shape), NP_TYPES[arr.dtype], arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        if t.data_location != TensorProto.EXTERNAL:
            return None
        return self._external(t)

    def _external(self, t: TensorProto) -> tuple[tuple[int, ...], int, bytes]:
        """(dims, data type, bytes) of an initializer stored in an external data file next to the graph."""
        info = {e.key: e.value for e in t.external_data}
        with open(self.path.parent / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            payload = f.read(int(info["length"])) if "length" in info else f.read()
        return tuple(t.dims), t.data_type, payload
