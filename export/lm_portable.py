"""Llasa's Llama decoder as a portable ONNX graph: standard operators only (TensorRT, onnxruntime-gpu, any ONNX
runtime), the form `engines/` builds TensorRT plans from and `calibration/` inserts Q/DQ into.

Graph contract (docs/gpu.md, "The portable graph and its KV cache"):

    input_ids                      int64 [batch, seq]
    position_ids                   int64 [batch, seq]
    attention_mask                 int64 [batch, past + seq]   columns j < past: 1 if cache position j of that row
                                                               is valid, else 0; columns >= past (the new
                                                               tokens) are ignored (always attended, causally)
    past_key_values.{i}.key|value  kv    [batch, kv_heads, max_context, head_dim]   the runtime's slot buffers as
                                                               they are (static capacity); the graph reads
                                                               positions [0, past) and never writes them
 -> logits                         f32   [batch, 65537]        last position only (rows as lm.onnx)
    present.{i}.key|value          kv    [batch, kv_heads, seq, head_dim]   ONLY the new positions (keys with
                                                               rotary applied); the runtime writes them into
                                                               each row's slot at that row's positions

`past` is not an input: it is the mask's length minus seq. One layer:

    x ─ RMSNorm ─ MatMul(qkv) ─ Split ─ q, k, v ─ rotary(q, k) (cos/sin tables gathered by position_ids)
        q grouped per kv head [batch, kv_heads, group * seq, head_dim] (GQA without repeating K/V)
        scores = [q Kcache[0:past]^T | q k^T] (two products) ─ mask (cache validity | causal) ─ Softmax (fp32)
        out = P[:, :past] Vcache[0:past] + P[:, past:] v ─ MatMul(o) ─ + x ─ RMSNorm ─ MatMul(gate|up) ─ SiLU·up
        ─ MatMul(down) ─ + residual

RMSNorm is Mul/ReduceMean/Add/Sqrt/Div in float32 (fp16 graphs cast around it), SiLU is Sigmoid·x; every weight
is a plain MatMul with an initializer [K, N] (fp32 or fp16), so Q/DQ can be inserted in front of it. Opset 13 is
the lowest opset in which every operator used here has its current form (Split/Unsqueeze/ReduceSum take their
axes as inputs, Softmax normalises one axis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from llasa_rt.bundle import ModelFacts
from llasa_rt.layout import LLASA_TOKENS, LmIo

from .checkpoint import LlasaCheckpoint, WeightReader
from .lm_graph import DecoderGraphBuilder, rotary_cache
from .onnx_writer import GraphWriter

PORTABLE_OPSET = 13
PORTABLE_PRECISIONS = ("fp32", "fp16")
PORTABLE_FILE = "lm.portable.onnx"
NEG = float(np.finfo(np.float32).min)  # score of a masked position (softmax runs in float32)


@dataclass
class PortableExportOptions:
    """How to build the portable LM graph."""

    precision: str = "fp32"  # fp32 or fp16 (weights, activations and KV; logits are always float32)
    max_context: int = 2048  # the KV inputs' static capacity: longest prompt + generation

    def validate(self) -> None:
        if self.precision not in PORTABLE_PRECISIONS:
            raise ValueError(f"the portable graph is fp32 or fp16 (int8/int4 come from Q/DQ calibration of it), "
                             f"not {self.precision!r}")
        if not 16 <= self.max_context <= 131072:
            raise ValueError(f"max_context must be in [16, 131072], not {self.max_context}")


class PortableGraphWriter(GraphWriter):
    """GraphWriter whose model imports the default ONNX domain only, checked by onnx.checker on save."""

    def save(self, graph_name: str, metadata: dict[str, str]) -> None:
        """Writes the .onnx file (the data file is already complete) and runs the full ONNX checker on it."""
        self._data.close()
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="llasa-rt", ir_version=8)
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save_model(model, str(self.onnx_path))
        onnx.checker.check_model(str(self.onnx_path), full_check=True)


class PortableGraphBuilder(DecoderGraphBuilder):
    """Writes `lm.portable.onnx` + `lm.portable.onnx.data` for a checked Llasa checkpoint."""

    def __init__(self, ckpt: LlasaCheckpoint, options: PortableExportOptions,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(ckpt, options, log)
        self.group = self.heads // self.kv_heads

    def build(self, onnx_path: Path) -> ModelFacts:
        """Writes the graph; returns facts for the manifest."""
        g = PortableGraphWriter(onnx_path, opset=PORTABLE_OPSET)
        try:
            facts = self._build(g)
            g.save("llasa_lm_portable", {"llasa_rt.graph": "lm.portable", "llasa_rt.precision": self.opt.precision})
            return facts
        except BaseException:
            g.abort()
            raise

    # ---- pieces ----------------------------------------------------------------------------------
    def _linear(self, g: GraphWriter, x: str, weight: np.ndarray, name: str) -> str:
        """y = x @ weight.T for a checkpoint weight [N, K]: one MatMul with the initializer [K, N]."""
        w = g.initializer(f"{name}.weight", np.ascontiguousarray(weight.T.astype(self.act)))
        return g.node("MatMul", [x, w], f"{name}/MatMul")[0]

    def _rms_norm(self, g: GraphWriter, x: str, weight: np.ndarray, name: str) -> str:
        """weight * x / sqrt(mean(x^2) + eps), computed in float32 as transformers' LlamaRMSNorm does."""
        xf = g.node("Cast", [x], f"{name}/Cast", to=TensorProto.FLOAT)[0] if self.fp16 else x
        sq = g.node("Mul", [xf, xf], f"{name}/Mul")[0]
        mean = g.node("ReduceMean", [sq], f"{name}/ReduceMean", axes=[-1], keepdims=1)[0]
        var = g.node("Add", [mean, g.constant(self.eps, np.float32)], f"{name}/Add")[0]
        root = g.node("Sqrt", [var], f"{name}/Sqrt")[0]
        normed = g.node("Div", [xf, root], f"{name}/Div")[0]
        if self.fp16:
            normed = g.node("Cast", [normed], f"{name}/Cast_back", to=TensorProto.FLOAT16)[0]
        w = g.initializer(f"{name}.weight", weight.astype(self.act))
        return g.node("Mul", [normed, w], f"{name}/Mul_weight")[0]

    def _rotary(self, g: GraphWriter, x: str, cos: str, sin: str, name: str) -> str:
        """Llama's rotate-half rotary on x [batch, seq, heads, head_dim] with cos/sin [batch, seq, 1, head_dim/2]."""
        half = self.head_dim // 2
        x1, x2 = g.node("Split", [x, g.constant([half, half])], f"{name}/Split", num_outputs=2, axis=-1)
        a = g.node("Mul", [x1, cos], f"{name}/Mul_x1_cos")[0]
        b = g.node("Mul", [x2, sin], f"{name}/Mul_x2_sin")[0]
        c = g.node("Mul", [x2, cos], f"{name}/Mul_x2_cos")[0]
        d = g.node("Mul", [x1, sin], f"{name}/Mul_x1_sin")[0]
        lo = g.node("Sub", [a, b], f"{name}/Sub")[0]
        hi = g.node("Add", [c, d], f"{name}/Add")[0]
        return g.node("Concat", [lo, hi], f"{name}/Concat", axis=-1)[0]

    # ---- graph -----------------------------------------------------------------------------------
    def _build(self, g: GraphWriter) -> ModelFacts:
        w = WeightReader(self.ckpt.weight_files)
        kv_type = self.act_type
        D, H, Hkv, G = self.head_dim, self.heads, self.kv_heads, self.group
        cap = self.opt.max_context
        input_ids = g.add_input(LmIo.INPUT_IDS, TensorProto.INT64, ["batch_size", "sequence_length"])
        position_ids = g.add_input(LmIo.POSITION_IDS, TensorProto.INT64, ["batch_size", "sequence_length"])
        mask = g.add_input(LmIo.ATTENTION_MASK, TensorProto.INT64, ["batch_size", "total_sequence_length"])

        # Shapes: batch, seq (new tokens), past = mask length - seq (cache positions read this step).
        ids_shape = g.node("Shape", [input_ids], "/model/shape/input_ids")[0]
        batch = g.node("Gather", [ids_shape, g.constant([0])], "/model/shape/batch", axis=0)[0]
        seq = g.node("Gather", [ids_shape, g.constant([1])], "/model/shape/seq", axis=0)[0]
        mask_shape = g.node("Shape", [mask], "/model/shape/mask")[0]
        total = g.node("Gather", [mask_shape, g.constant([1])], "/model/shape/total", axis=0)[0]
        past = g.node("Sub", [total, seq], "/model/shape/past")[0]
        gs = g.node("Mul", [seq, g.constant([G])], "/model/shape/group_seq")[0]  # group * seq query rows

        # The mask of one layer's scores [batch, 1, group*seq, past + seq], as bool: cache columns from
        # attention_mask[:, :past], new columns causal (query row r is token r mod seq).
        cache_cols = g.node("Slice", [mask, g.constant([0]), past, g.constant([1])], "/model/mask/cache/Slice")[0]
        cache_ok = g.node("Cast", [cache_cols], "/model/mask/cache/Cast", to=TensorProto.BOOL)[0]
        cache_ok = g.node("Unsqueeze", [cache_ok, g.constant([1, 2])], "/model/mask/cache/Unsqueeze")[0]
        cache_ok = g.node("Expand", [cache_ok, g.node("Concat", [batch, g.constant([1]), gs, past],
                                                      "/model/mask/cache/shape", axis=0)[0]],
                          "/model/mask/cache/Expand")[0]
        seq_scalar = g.node("Squeeze", [seq, g.constant([0])], "/model/mask/seq_scalar")[0]
        gs_scalar = g.node("Squeeze", [gs, g.constant([0])], "/model/mask/group_seq_scalar")[0]
        rows = g.node("Range", [g.constant(0), gs_scalar, g.constant(1)], "/model/mask/causal/rows")[0]
        rows = g.node("Mod", [rows, seq_scalar], "/model/mask/causal/token", fmod=0)[0]
        rows = g.node("Unsqueeze", [rows, g.constant([1])], "/model/mask/causal/Unsqueeze")[0]
        cols = g.node("Range", [g.constant(0), seq_scalar, g.constant(1)], "/model/mask/causal/cols")[0]
        causal = g.node("LessOrEqual", [cols, rows], "/model/mask/causal/LessOrEqual")[0]  # [group*seq, seq]
        causal = g.node("Expand", [causal, g.node("Concat", [batch, g.constant([1]), gs, seq],
                                                  "/model/mask/causal/shape", axis=0)[0]],
                        "/model/mask/causal/Expand")[0]
        allowed = g.node("Concat", [cache_ok, causal], "/model/mask/Concat", axis=-1)[0]

        # Rotary tables [max_context, head_dim/2] gathered by position -> [batch, seq, 1, head_dim/2].
        cos_t, sin_t = rotary_cache(self.ckpt.config, D, cap)
        cos = g.node("Gather", [g.initializer("cos_cache", cos_t.astype(self.act)), position_ids],
                     "/model/rotary/cos/Gather", axis=0)[0]
        sin = g.node("Gather", [g.initializer("sin_cache", sin_t.astype(self.act)), position_ids],
                     "/model/rotary/sin/Gather", axis=0)[0]
        cos = g.node("Unsqueeze", [cos, g.constant([2])], "/model/rotary/cos/Unsqueeze")[0]
        sin = g.node("Unsqueeze", [sin, g.constant([2])], "/model/rotary/sin/Unsqueeze")[0]

        table = w.get("model.embed_tokens.weight")
        vocab = table.shape[0]
        x = g.node("Gather", [g.initializer("model.embed_tokens.weight", table.astype(self.act, copy=False)),
                              input_ids], "/model/embed_tokens/Gather", axis=0)[0]
        del table

        scale = g.constant(1.0 / np.sqrt(D), self.act)
        q_shape = g.constant([0, 0, H, D])
        kv_shape = g.constant([0, 0, Hkv, D])
        for i in range(self.layers):
            self.log(f"layer {i + 1}/{self.layers}")
            p, name = f"model.layers.{i}.", f"/model/layers.{i}"
            h = self._rms_norm(g, x, w.get(p + "input_layernorm.weight"), f"{name}/input_layernorm")
            qkv_w = np.concatenate([w.get(p + "self_attn.q_proj.weight"), w.get(p + "self_attn.k_proj.weight"),
                                    w.get(p + "self_attn.v_proj.weight")], axis=0)
            qkv = self._linear(g, h, qkv_w, f"{name}/attn/qkv_proj")
            del qkv_w
            q, k, v = g.node("Split", [qkv, g.constant([H * D, Hkv * D, Hkv * D])], f"{name}/attn/Split",
                             num_outputs=3, axis=-1)
            q = g.node("Reshape", [q, q_shape], f"{name}/attn/q/Reshape")[0]  # [batch, seq, heads, D]
            k = g.node("Reshape", [k, kv_shape], f"{name}/attn/k/Reshape")[0]
            v = g.node("Reshape", [v, kv_shape], f"{name}/attn/v/Reshape")[0]
            q = self._rotary(g, q, cos, sin, f"{name}/attn/q_rotary")
            k = self._rotary(g, k, cos, sin, f"{name}/attn/k_rotary")
            q = g.node("Mul", [q, scale], f"{name}/attn/q/scale")[0]
            # Query heads h = j * group + r use kv head j: group the queries [batch, kv_heads, group*seq, D].
            q = g.node("Reshape", [q, g.constant([0, 0, Hkv, G, D])], f"{name}/attn/q/Reshape_groups")[0]
            q = g.node("Transpose", [q], f"{name}/attn/q/Transpose", perm=[0, 2, 3, 1, 4])[0]
            q = g.node("Reshape", [q, g.constant([0, Hkv, -1, D])], f"{name}/attn/q/Reshape_rows")[0]
            k_new = g.node("Transpose", [k], f"{name}/attn/k/Transpose", perm=[0, 2, 1, 3])[0]
            v_new = g.node("Transpose", [v], f"{name}/attn/v/Transpose", perm=[0, 2, 1, 3])[0]
            for produced, out in ((k_new, LmIo.present(i, "key")), (v_new, LmIo.present(i, "value"))):
                g.rename_output(produced, out)
                g.add_output(out, kv_type, ["batch_size", Hkv, "sequence_length", D])
            k_new, v_new = LmIo.present(i, "key"), LmIo.present(i, "value")

            cache_k = g.add_input(LmIo.past(i, "key"), kv_type, ["batch_size", Hkv, cap, D])
            cache_v = g.add_input(LmIo.past(i, "value"), kv_type, ["batch_size", Hkv, cap, D])
            k_old = g.node("Slice", [cache_k, g.constant([0]), past, g.constant([2])], f"{name}/attn/k_cache/Slice")[0]
            v_old = g.node("Slice", [cache_v, g.constant([0]), past, g.constant([2])], f"{name}/attn/v_cache/Slice")[0]
            k_old_t = g.node("Transpose", [k_old], f"{name}/attn/k_cache/Transpose", perm=[0, 1, 3, 2])[0]
            k_new_t = g.node("Transpose", [k_new], f"{name}/attn/k_new/Transpose", perm=[0, 1, 3, 2])[0]
            s_old = g.node("MatMul", [q, k_old_t], f"{name}/attn/scores_cache/MatMul")[0]
            s_new = g.node("MatMul", [q, k_new_t], f"{name}/attn/scores_new/MatMul")[0]
            scores = g.node("Concat", [s_old, s_new], f"{name}/attn/scores/Concat", axis=-1)[0]
            if self.fp16:
                scores = g.node("Cast", [scores], f"{name}/attn/scores/Cast", to=TensorProto.FLOAT)[0]
            scores = g.node("Where", [allowed, scores, g.constant(NEG, np.float32)], f"{name}/attn/scores/Where")[0]
            probs = g.node("Softmax", [scores], f"{name}/attn/Softmax", axis=-1)[0]
            if self.fp16:
                probs = g.node("Cast", [probs], f"{name}/attn/probs/Cast", to=TensorProto.FLOAT16)[0]
            p_old = g.node("Slice", [probs, g.constant([0]), past, g.constant([3])],
                           f"{name}/attn/probs_cache/Slice")[0]
            p_new = g.node("Slice", [probs, past, g.constant([np.iinfo(np.int64).max]), g.constant([3])],
                           f"{name}/attn/probs_new/Slice")[0]
            o_old = g.node("MatMul", [p_old, v_old], f"{name}/attn/out_cache/MatMul")[0]
            o_new = g.node("MatMul", [p_new, v_new], f"{name}/attn/out_new/MatMul")[0]
            attn = g.node("Add", [o_old, o_new], f"{name}/attn/out/Add")[0]  # [batch, kv_heads, group*seq, D]
            attn = g.node("Reshape", [attn, g.constant([0, Hkv, G, -1, D])], f"{name}/attn/out/Reshape_groups")[0]
            attn = g.node("Transpose", [attn], f"{name}/attn/out/Transpose", perm=[0, 3, 1, 2, 4])[0]
            attn = g.node("Reshape", [attn, g.constant([0, 0, H * D])], f"{name}/attn/out/Reshape")[0]
            o = self._linear(g, attn, w.get(p + "self_attn.o_proj.weight"), f"{name}/attn/o_proj")
            x = g.node("Add", [x, o], f"{name}/attn/residual/Add")[0]

            h = self._rms_norm(g, x, w.get(p + "post_attention_layernorm.weight"), f"{name}/post_attention_layernorm")
            gate_up_w = np.concatenate([w.get(p + "mlp.gate_proj.weight"), w.get(p + "mlp.up_proj.weight")], axis=0)
            inter = gate_up_w.shape[0] // 2
            gate_up = self._linear(g, h, gate_up_w, f"{name}/mlp/gate_up_proj")
            del gate_up_w
            gate, up = g.node("Split", [gate_up, g.constant([inter, inter])], f"{name}/mlp/Split", num_outputs=2,
                              axis=-1)
            sig = g.node("Sigmoid", [gate], f"{name}/mlp/act_fn/Sigmoid")[0]
            act = g.node("Mul", [gate, sig], f"{name}/mlp/act_fn/Mul")[0]
            prod = g.node("Mul", [act, up], f"{name}/mlp/Mul")[0]
            down = self._linear(g, prod, w.get(p + "mlp.down_proj.weight"), f"{name}/mlp/down_proj")
            x = g.node("Add", [x, down], f"{name}/mlp/residual/Add")[0]

        last = g.node("Gather", [x, g.constant(-1)], "/model/last_position/Gather", axis=1)[0]
        h = self._rms_norm(g, last, w.get("model.norm.weight"), "/model/norm")
        head_key = "model.embed_tokens.weight" if self.ckpt.tied else "lm_head.weight"
        logits = self._linear(g, h, w.get_rows(head_key, LLASA_TOKENS.head_token_ids()), "/lm_head")
        if self.fp16:
            logits = g.node("Cast", [logits], "/lm_head/Cast", to=TensorProto.FLOAT)[0]
        g.rename_output(logits, LmIo.LOGITS)
        g.add_output(LmIo.LOGITS, TensorProto.FLOAT, ["batch_size", LLASA_TOKENS.head_rows])
        return ModelFacts(
            num_layers=self.layers, hidden_size=self.hidden, num_attention_heads=H, num_kv_heads=Hkv,
            head_dim=D, intermediate_size=inter, vocab_size=vocab, max_context=cap,
            kv_dtype="float16" if self.fp16 else "float32", rms_norm_eps=self.eps, tied_embeddings=self.ckpt.tied,
        )
