"""A small ONNX graph writer that streams large initializers into one external data file.

Weights are written to `<graph>.data` as they are produced, so exporting an 8B model never holds more
than one tensor in memory. Several graphs can share one data file (`ExternalData`): the layered LM's
segments all point into one file, and a tensor they all need (the rotary tables) is stored there once.
Node names are deterministic ("/model/layers.3/attn/o_proj/MatMul") and small constants are deduplicated
("/model/constants/INT64/[1]"), as in onnxruntime-genai's builder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INLINE_LIMIT = 1024  # bytes: smaller tensors are stored inside the .onnx file
ALIGN = 1 << 16  # byte alignment of large tensors in the data file (lets ONNX Runtime memory-map them)

NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
}


class ExternalData:
    """One external data file, written as tensors come (64 KiB aligned); tensors given a `shared` key are
    written once and referenced by every graph that adds them again."""

    def __init__(self, path: Path) -> None:
        self.name = Path(path).name
        self._file = open(path, "wb")
        self._offset = 0
        self._shared: dict[str, tuple[int, int]] = {}

    def write(self, array: np.ndarray, shared: str | None = None) -> tuple[int, int]:
        """Appends `array` (or finds the tensor stored under `shared`); returns (offset, length) in bytes."""
        if shared is not None and shared in self._shared:
            return self._shared[shared]
        pad = -self._offset % ALIGN
        if pad:
            self._file.write(b"\0" * pad)
            self._offset += pad
        self._file.write(array.tobytes())
        where = (self._offset, array.nbytes)
        self._offset += array.nbytes
        if shared is not None:
            self._shared[shared] = where
        return where

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class GraphWriter:
    """Collects nodes, inputs and outputs; writes initializers to an external data file as they come
    (its own `<graph>.data`, or `data` shared with other graphs, which the caller closes)."""

    def __init__(self, onnx_path: Path, opset: int = 21, data: ExternalData | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self._owns_data = data is None
        self._data = data if data is not None else ExternalData(self.onnx_path.parent / (self.onnx_path.name + ".data"))
        self.data_name = self._data.name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._constants: dict[str, str] = {}
        self._node_names: set[str] = set()

    # ---- tensors ---------------------------------------------------------------------------------
    def initializer(self, name: str, array: np.ndarray, shared: bool = False) -> str:
        """Adds a weight; returns its name. `shared`: store it once in a shared data file under `name`."""
        array = np.ascontiguousarray(array)
        if array.dtype not in NP_TO_ONNX:
            raise TypeError(f"{name}: unsupported dtype {array.dtype}")
        if array.nbytes <= INLINE_LIMIT:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        offset, length = self._data.write(array, name if shared else None)
        t = TensorProto()
        t.name = name
        t.data_type = NP_TO_ONNX[array.dtype]
        t.dims.extend(array.shape)
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.data_name), ("offset", str(offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(t)
        return name

    def constant(self, values: Any, dtype: type = np.int64) -> str:
        """A small deduplicated constant tensor; returns its name."""
        arr = np.array(values, dtype=dtype)
        key = f"/model/constants/{helper.tensor_dtype_to_string(NP_TO_ONNX[arr.dtype]).split('.')[-1]}/{arr.tolist()}"
        key = key.replace(" ", "")
        if key not in self._constants:
            self.initializers.append(numpy_helper.from_array(arr, key))
            self._constants[key] = key
        return key

    # ---- graph -----------------------------------------------------------------------------------
    def node(self, op: str, inputs: list[str], name: str, num_outputs: int = 1, domain: str = "",
             unused: tuple[int, ...] = (), **attrs: Any) -> list[str]:
        """Adds a node named `name`; outputs are named `{name}/output_{i}` ("" for the optional outputs
        listed in `unused`, so ONNX Runtime skips them). Returns the output names."""
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name}")
        self._node_names.add(name)
        outputs = ["" if i in unused else f"{name}/output_{i}" for i in range(num_outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs

    def rename_output(self, produced: str, graph_output: str) -> None:
        """Makes the node output `produced` be called `graph_output` instead (in its consumers too)."""
        found = False
        for n in self.nodes:
            for i, o in enumerate(n.output):
                if o == produced:
                    n.output[i], found = graph_output, True
            for i, o in enumerate(n.input):
                if o == produced:
                    n.input[i] = graph_output
        if not found:
            raise KeyError(produced)

    def add_input(self, name: str, elem_type: int, shape: list[Any]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def add_output(self, name: str, elem_type: int, shape: list[Any]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def save(self, graph_name: str, metadata: dict[str, str]) -> None:
        """Writes the .onnx file (its own data file is then complete; a shared one is closed by its owner).

        onnx.checker is not run: SimplifiedLayerNormalization is an ONNX Runtime operator registered in
        the default domain, which the checker rejects; the exporter opens the graph in ONNX Runtime instead.
        """
        if self._owns_data:
            self._data.close()
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset),
                                                        helper.make_opsetid("com.microsoft", 1)],
                                  producer_name="llasa-rt", ir_version=10)
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save_model(model, str(self.onnx_path))

    def abort(self) -> None:
        if self._owns_data:
            self._data.close()
