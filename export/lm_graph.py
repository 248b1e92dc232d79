"""Llasa's Llama decoder as KV-cached ONNX graph(s) for ONNX Runtime (CPU): fused or layered.

Graph contract (names follow onnxruntime-genai so its tools can run our graphs):

    input_ids                    int64 [batch_size, sequence_length]
    attention_mask               int64 [batch_size, total_sequence_length]   (all ones; total = past + new)
    position_ids                 int64 [batch_size, sequence_length]
    past_key_values.{i}.key|value  kv  [batch_size, num_kv_heads, past_sequence_length, head_dim]
 -> logits                       f32 [batch_size, 65537]   last position only; row r < 65536 = <|s_r|>,
                                                            row 65536 = <|SPEECH_GENERATION_END|>
    present.{i}.key|value          kv  [batch_size, num_kv_heads, total_sequence_length, head_dim]

Attention is com.microsoft GroupQueryAttention, so past and present may be bound to one buffer
[batch, kv_heads, max_context, head_dim] that the graph updates in place (no per-step KV copy).
Per layer (diagram of the subgraph):

    residual ─┬─────────────────────────────────────────────┐
              └ (Skip)SimplifiedLayerNorm ─ MatMul(qkv) ─ GQA(rotary, past/present) ─ MatMul(o) ─┐
                                                                                               Skip-
    residual' ◀─ SkipSimplifiedLayerNorm(o, residual) ─ MatMul(gate|up) ─ Split ─ SiLU·up ─ MatMul(down)

Layered flavour (`build_layered`): the same decoder cut at attention into L + 1 graphs that share one
external data file, with attention run between them by llasa-rt's C++ kernel (`_core.Attention`), which can
read one prompt's KV for every candidate and store KV as float16 whatever the activations are:

    segment 0      input_ids, position_ids -> embedding, layer 0 input norm, qkv, rotary -> query, key, value, residual
    segment i      attention (layer i-1), residual_in, position_ids -> o_proj, norm, MLP, layer i input norm, qkv,
                   rotary -> query, key, value, residual                                    (i = 1 .. L-1)
    segment L      attention (layer L-1), residual_in -> o_proj, norm, MLP, final norm, last position, head -> logits

query/key/value/attention are float32 [batch, seq, heads * head_dim] (rotary applied with the same cos/sin
tables as GroupQueryAttention's); residual (and residual_in, the previous segment's) is in the activation dtype.

The head keeps only the 65,537 rows Llasa can legally emit and runs on the last position only.
MatMuls are plain (fp32 / fp16) or MatMulNBits (int8 / int4, block-wise weight-only, int8 activations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto

from llasa_rt.bundle import ModelFacts
from llasa_rt.layout import LLASA_TOKENS, LmIo

from .checkpoint import LlasaCheckpoint, WeightReader
from .onnx_writer import ExternalData, GraphWriter
from .quantize import quantize_blockwise

PRECISIONS = ("fp32", "fp16", "int8", "int4")
LM_FLAVOURS = ("fused", "layered")  # one graph with GroupQueryAttention / segments around llasa-rt's kernel
KV_DTYPES = ("float32", "float16")


@dataclass
class LmExportOptions:
    """How to build the LM graph."""

    precision: str = "fp32"  # fp32, fp16, int8 or int4 (weights; int8/int4 keep fp32 activations)
    max_context: int = 2048  # longest prompt + generation the graph supports (Llasa was trained at 2048)
    block_size: int = 128  # int8/int4: input features per quantisation block (128: the usual 4-bit group size)
    head_bits: int = 8  # int4 graphs: bits of the output head (8 keeps logits closer to fp32)
    embed_bits: int = 8  # int8/int4 graphs: bits of the token embedding table (GatherBlockQuantized)
    accuracy_level: int = 4  # MatMulNBits compute: 4 = int8 activations (fast on VNNI/AMX), 0 = fp32
    flavour: str = "fused"  # "fused" (one graph) or "layered" (segments + llasa-rt's attention kernel)
    kv_dtype: str | None = None  # layered: "float16" (default) or "float32"; fused: the activation dtype

    def validate(self) -> None:
        if self.flavour not in LM_FLAVOURS:
            raise ValueError(f"lm flavour must be one of {', '.join(LM_FLAVOURS)}, not {self.flavour!r}")
        if self.kv_dtype is not None and self.kv_dtype not in KV_DTYPES:
            raise ValueError(f"kv dtype must be one of {', '.join(KV_DTYPES)}, not {self.kv_dtype!r}")
        fused_kv = "float16" if self.precision == "fp16" else "float32"
        if self.flavour == "fused" and self.kv_dtype not in (None, fused_kv):
            raise ValueError(f"the fused {self.precision} graph stores KV as {fused_kv} (GroupQueryAttention keeps "
                             "it in the activation dtype); use --lm-flavour layered for another KV dtype")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 16 <= self.max_context <= 131072:
            raise ValueError(f"max_context must be in [16, 131072], not {self.max_context}")
        for name in ("head_bits", "embed_bits"):
            if getattr(self, name) not in (4, 8):
                raise ValueError(f"{name} must be 4 or 8")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"accuracy_level must be 0..4, not {self.accuracy_level}")
        if self.block_size not in (16, 32, 64, 128, 256):
            raise ValueError(f"block_size must be one of 16, 32, 64, 128, 256, not {self.block_size}")


def rotary_cache(config: dict, head_dim: int, max_context: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables [max_context, head_dim/2] computed exactly as transformers computes them (float32)."""
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type == "default":
        base = float(config.get("rope_theta", 10000.0))
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        scaling = 1.0
    else:
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu")
    pos = torch.arange(max_context, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq.float()[None, :]
    return (freqs.cos() * scaling).numpy(), (freqs.sin() * scaling).numpy()


class DecoderGraphBuilder:
    """What every LM graph builder takes from a checked checkpoint: its options, a log and the decoder's shape."""

    def __init__(self, ckpt: LlasaCheckpoint, options: Any, log: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.ckpt, self.opt = ckpt, options
        self.log = log or (lambda msg: None)
        c = ckpt.config
        self.layers = int(c["num_hidden_layers"])
        self.hidden = int(c["hidden_size"])
        self.heads = int(c["num_attention_heads"])
        self.kv_heads = int(c.get("num_key_value_heads") or self.heads)
        self.head_dim = ckpt.head_dim
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.fp16 = options.precision == "fp16"
        self.act = np.float16 if self.fp16 else np.float32
        self.act_type = TensorProto.FLOAT16 if self.fp16 else TensorProto.FLOAT


class LlamaGraphBuilder(DecoderGraphBuilder):
    """Writes `lm.onnx` + `lm.onnx.data` for a checked Llasa checkpoint."""

    def __init__(self, ckpt: LlasaCheckpoint, options: LmExportOptions,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(ckpt, options, log)
        if self.head_dim % 16:
            raise ValueError(f"head_dim {self.head_dim} is not a multiple of 16 (ONNX Runtime's GroupQueryAttention "
                             "needs that); Llasa models use 64 or 128")
        self.bits = {"int8": 8, "int4": 4}.get(options.precision)
        self.dynamic_int8 = False  # build(): layer products as int8 weights x dynamically quantised activations
        self.embed_block = 0
        self.vocab = self.inter = 0  # read from the weights while building

    # ---- weights ---------------------------------------------------------------------------------
    def _linear(self, g: GraphWriter, x: str, weight: np.ndarray, name: str, bits: int | None = None) -> str:
        """y = x @ weight.T for weight [N, K]: MatMul (float) or MatMulNBits (quantised)."""
        n, k = weight.shape
        if bits is None and self.dynamic_int8:
            return self._dynamic_int8_linear(g, x, weight, name)
        bits = self.bits if bits is None else bits
        if bits is None:
            w = g.initializer(f"{name}.weight", np.ascontiguousarray(weight.T.astype(self.act)))
            return g.node("MatMul", [x, w], f"{name}/MatMul")[0]
        q = quantize_blockwise(weight, bits, self.opt.block_size)
        b = g.initializer(f"{name}.weight.q{bits}", q.data)
        s = g.initializer(f"{name}.weight.scales", q.scales.reshape(-1).astype(np.float32))
        z = g.initializer(f"{name}.weight.zero_points", q.zero_points.reshape(-1))
        return g.node("MatMulNBits", [x, b, s, z], f"{name}/MatMulNBits", domain="com.microsoft", K=k, N=n,
                      bits=bits, block_size=self.opt.block_size, accuracy_level=self.opt.accuracy_level)[0]

    def _dynamic_int8_linear(self, g: GraphWriter, x: str, weight: np.ndarray, name: str) -> str:
        """y = x @ weight.T with int8 weights (symmetric, one scale per output feature) and the activations quantised
        per tensor at run time: the DynamicQuantizeLinear -> MatMulInteger -> scale pattern that ONNX Runtime fuses
        into its int8 GEMM, much faster than MatMulNBits for many rows (the prefill graph, export --prefill-int8)."""
        scale = np.maximum(np.abs(weight).max(axis=1), 1e-12).astype(np.float32) / 127.0  # [N]
        q = np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8)
        wq = g.initializer(f"{name}.weight.int8", np.ascontiguousarray(q.T))
        ws = g.initializer(f"{name}.weight.scale", scale)
        xq, xs, xz = g.node("DynamicQuantizeLinear", [x], f"{name}/DynamicQuantizeLinear", num_outputs=3)
        y = g.node("MatMulInteger", [xq, wq, xz], f"{name}/MatMulInteger")[0]
        y = g.node("Cast", [y], f"{name}/Cast", to=TensorProto.FLOAT)[0]
        both = g.node("Mul", [xs, ws], f"{name}/scale/Mul")[0]
        return g.node("Mul", [y, both], f"{name}/Mul")[0]

    def _norm_weight(self, g: GraphWriter, w: WeightReader, key: str) -> str:
        return g.initializer(key, w.get(key).astype(self.act, copy=False))

    # ---- pieces shared by both flavours -------------------------------------------------------------
    def _embedding(self, g: GraphWriter, w: WeightReader, input_ids: str) -> str:
        """Token embeddings (int8/int4 graphs: block-quantised table, dequantised on gather)."""
        emb_key = "model.embed_tokens.weight"
        table = w.get(emb_key)
        self.vocab = table.shape[0]
        if self.bits is None:
            t = g.initializer(emb_key, table.astype(self.act, copy=False))
            return g.node("Gather", [t, input_ids], "/model/embed_tokens/Gather", axis=0)[0]
        # GatherBlockQuantized needs whole blocks: the largest power of two <= block_size dividing hidden.
        block = self.opt.block_size
        while self.hidden % block:
            block //= 2
        q = quantize_blockwise(table, self.opt.embed_bits, block)
        d = g.initializer(f"{emb_key}.q{self.opt.embed_bits}", q.data.reshape(self.vocab, -1))
        s = g.initializer(f"{emb_key}.scales", q.scales.astype(np.float32))
        z = g.initializer(f"{emb_key}.zero_points", q.zero_points)
        self.embed_block = block
        return g.node("GatherBlockQuantized", [d, input_ids, s, z], "/model/embed_tokens/GatherBlockQuantized",
                      domain="com.microsoft", bits=self.opt.embed_bits, block_size=block,
                      gather_axis=0, quantize_axis=1)[0]

    def _rotary_tables(self, g: GraphWriter) -> tuple[str, str]:
        cos, sin = rotary_cache(self.ckpt.config, self.head_dim, self.opt.max_context)
        return (g.initializer("cos_cache", cos.astype(self.act), shared=True),
                g.initializer("sin_cache", sin.astype(self.act), shared=True))

    def _input_norm(self, g: GraphWriter, w: WeightReader, i: int, residual: str,
                    pending: str | None) -> tuple[str, str]:
        """Layer i's input RMSNorm (adding the previous layer's branch output `pending` to the residual first);
        returns (normalised, residual)."""
        ln = self._norm_weight(g, w, f"model.layers.{i}.input_layernorm.weight")
        name = f"/model/layers.{i}/input_layernorm"
        if pending is None:
            h = g.node("SimplifiedLayerNormalization", [residual, ln], f"{name}/LayerNorm",
                       axis=-1, epsilon=self.eps, stash_type=1)[0]
            return h, residual
        outs = g.node("SkipSimplifiedLayerNormalization", [pending, residual, ln], f"{name}/SkipLayerNorm",
                      num_outputs=4, unused=(1, 2), domain="com.microsoft", epsilon=self.eps)
        return outs[0], outs[3]

    def _qkv(self, g: GraphWriter, w: WeightReader, i: int, h: str) -> str:
        """Layer i's fused q|k|v projection [batch, seq, (heads + 2 kv_heads) * head_dim]."""
        p = f"model.layers.{i}.self_attn."
        qkv_w = np.concatenate([w.get(p + "q_proj.weight"), w.get(p + "k_proj.weight"), w.get(p + "v_proj.weight")],
                               axis=0)
        return self._linear(g, h, qkv_w, f"/model/layers.{i}/attn/qkv_proj")

    def _o_proj_and_mlp(self, g: GraphWriter, w: WeightReader, i: int, attn: str,
                        residual: str) -> tuple[str, str]:
        """Layer i after attention: o_proj, post-attention norm (adding o to the residual), MLP; returns
        (MLP output not yet added to the residual, residual)."""
        p = f"model.layers.{i}."
        name = f"/model/layers.{i}"
        o = self._linear(g, attn, w.get(p + "self_attn.o_proj.weight"), f"{name}/attn/o_proj")
        ln2 = self._norm_weight(g, w, p + "post_attention_layernorm.weight")
        outs = g.node("SkipSimplifiedLayerNormalization", [o, residual, ln2],
                      f"{name}/post_attention_layernorm/SkipLayerNorm", num_outputs=4, unused=(1, 2),
                      domain="com.microsoft", epsilon=self.eps)
        h, residual = outs[0], outs[3]
        gate_up_w = np.concatenate([w.get(p + "mlp.gate_proj.weight"), w.get(p + "mlp.up_proj.weight")], axis=0)
        self.inter = gate_up_w.shape[0] // 2
        gate_up = self._linear(g, h, gate_up_w, f"{name}/mlp/gate_up_proj")
        del gate_up_w
        gate, up = g.node("Split", [gate_up, g.constant([self.inter, self.inter])], f"{name}/mlp/Split",
                          num_outputs=2, axis=-1)
        sig = g.node("Sigmoid", [gate], f"{name}/mlp/act_fn/Sigmoid")[0]
        act = g.node("Mul", [gate, sig], f"{name}/mlp/act_fn/Mul")[0]
        prod = g.node("Mul", [act, up], f"{name}/mlp/Mul")[0]
        return self._linear(g, prod, w.get(p + "mlp.down_proj.weight"), f"{name}/mlp/down_proj"), residual

    def _head(self, g: GraphWriter, w: WeightReader, pending: str, residual: str) -> None:
        """Final norm, last position, the 65,537-row head -> the graph output `logits` (float32)."""
        norm = self._norm_weight(g, w, "model.norm.weight")
        h = g.node("SkipSimplifiedLayerNormalization", [pending, residual, norm], "/model/norm/SkipLayerNorm",
                   num_outputs=1, domain="com.microsoft", epsilon=self.eps)[0]
        last = g.node("Gather", [h, g.constant(-1)], "/lm_head/last_position/Gather", axis=1)[0]
        head_key = "model.embed_tokens.weight" if self.ckpt.tied else "lm_head.weight"
        head_w = w.get_rows(head_key, LLASA_TOKENS.head_token_ids())
        head_bits = None if self.bits is None else (self.opt.head_bits if self.bits == 4 else 8)
        logits = self._linear(g, last, head_w, "/lm_head", bits=head_bits)
        if self.fp16:
            logits = g.node("Cast", [logits], "/lm_head/Cast", to=TensorProto.FLOAT)[0]
        g.rename_output(logits, LmIo.LOGITS)
        g.add_output(LmIo.LOGITS, TensorProto.FLOAT, ["batch_size", LLASA_TOKENS.head_rows])

    def _facts(self, kv_dtype: str) -> ModelFacts:
        return ModelFacts(
            num_layers=self.layers, hidden_size=self.hidden, num_attention_heads=self.heads,
            num_kv_heads=self.kv_heads, head_dim=self.head_dim, intermediate_size=self.inter, vocab_size=self.vocab,
            max_context=self.opt.max_context, kv_dtype=kv_dtype, rms_norm_eps=self.eps,
            tied_embeddings=self.ckpt.tied, embed_block_size=self.embed_block if self.bits is not None else None,
        )

    # ---- fused flavour: one graph, attention by GroupQueryAttention ------------------------------------
    def build(self, onnx_path: Path) -> ModelFacts:
        """Writes the fused graph; returns facts for the manifest."""
        g = GraphWriter(onnx_path)
        try:
            facts = self._build(g)
            g.save("llasa_lm", {"llasa_rt.graph": "lm", "llasa_rt.precision": self.opt.precision})
            return facts
        except BaseException:
            g.abort()
            raise

    def _build(self, g: GraphWriter) -> ModelFacts:
        w = WeightReader(self.ckpt.weight_files)
        kv_type = self.act_type
        D, Hkv = self.head_dim, self.kv_heads
        input_ids = g.add_input(LmIo.INPUT_IDS, TensorProto.INT64, ["batch_size", "sequence_length"])
        mask = g.add_input(LmIo.ATTENTION_MASK, TensorProto.INT64, ["batch_size", "total_sequence_length"])
        position_ids = g.add_input(LmIo.POSITION_IDS, TensorProto.INT64, ["batch_size", "sequence_length"])

        # attention_mask -> GQA's seqlens_k (valid length - 1 per row) and total_sequence_length.
        rows = g.node("ReduceSum", [mask, g.constant([1])], "/model/attn_mask_reformat/ReduceSum", keepdims=0)[0]
        rows = g.node("Sub", [rows, g.constant(1)], "/model/attn_mask_reformat/Sub")[0]
        seqlens_k = g.node("Cast", [rows], "/model/attn_mask_reformat/seqlens_k/Cast", to=TensorProto.INT32)[0]
        shape = g.node("Shape", [mask], "/model/attn_mask_reformat/Shape")[0]
        total = g.node("Gather", [shape, g.constant(1)], "/model/attn_mask_reformat/Gather", axis=0)[0]
        total = g.node("Cast", [total], "/model/attn_mask_reformat/total_seq_len/Cast", to=TensorProto.INT32)[0]
        cos_name, sin_name = self._rotary_tables(g)

        residual, pending = self._embedding(g, w, input_ids), None
        for i in range(self.layers):
            self.log(f"layer {i + 1}/{self.layers}")
            h, residual = self._input_norm(g, w, i, residual, pending)
            qkv = self._qkv(g, w, i, h)
            past_k = g.add_input(LmIo.past(i, "key"), kv_type, ["batch_size", Hkv, "past_sequence_length", D])
            past_v = g.add_input(LmIo.past(i, "value"), kv_type, ["batch_size", Hkv, "past_sequence_length", D])
            attn, pk, pv = g.node(
                "GroupQueryAttention",
                [qkv, "", "", past_k, past_v, seqlens_k, total, cos_name, sin_name, position_ids],
                f"/model/layers.{i}/attn/GroupQueryAttention", num_outputs=3, domain="com.microsoft",
                num_heads=self.heads, kv_num_heads=Hkv, scale=float(1.0 / np.sqrt(D)), do_rotary=1,
                rotary_interleaved=0)
            for produced, out in ((pk, LmIo.present(i, "key")), (pv, LmIo.present(i, "value"))):
                g.rename_output(produced, out)
                g.add_output(out, kv_type, ["batch_size", Hkv, "total_sequence_length", D])
            pending, residual = self._o_proj_and_mlp(g, w, i, attn, residual)
        self._head(g, w, pending, residual)
        return self._facts("float16" if self.fp16 else "float32")

    # ---- layered flavour: L + 1 segment graphs, attention in between by llasa_rt's kernel -------------
    def build_layered(self, folder: Path) -> tuple[ModelFacts, list[str]]:
        """Writes the segments `LmIo.segment_file(0..L)` and their shared data file into `folder`; returns the
        facts and the file names (segments in order, then the data file)."""
        data = ExternalData(Path(folder) / LmIo.LAYERED_DATA)
        w = WeightReader(self.ckpt.weight_files)
        try:
            for index in range(self.layers + 1):
                self.log(f"segment {index}/{self.layers}")
                g = GraphWriter(Path(folder) / LmIo.segment_file(index), data=data)
                self._segment(g, w, index)
                g.save(f"llasa_lm_segment_{index}", {"llasa_rt.graph": "lm", "llasa_rt.segment": str(index),
                                                     "llasa_rt.precision": self.opt.precision})
        finally:
            data.close()
        files = [LmIo.segment_file(i) for i in range(self.layers + 1)] + [LmIo.LAYERED_DATA]
        return self._facts(self.opt.kv_dtype or "float16"), files

    def _segment(self, g: GraphWriter, w: WeightReader, index: int) -> None:
        """Segment 0: embedding -> layer 0's q, k, v; segment i: layer i-1 after attention -> layer i's q, k, v;
        segment L: the last layer after attention -> logits. q, k, v, attention are float32 (the kernel's)."""
        seq = ["batch_size", "sequence_length"]
        f32 = TensorProto.FLOAT
        if index == 0:
            residual, pending = self._embedding(g, w, g.add_input(LmIo.INPUT_IDS, TensorProto.INT64, seq)), None
        else:
            attn = g.add_input(LmIo.ATTENTION, f32, [*seq, self.heads * self.head_dim])
            if self.fp16:
                attn = g.node("Cast", [attn], f"/model/layers.{index - 1}/attn/Cast", to=self.act_type)[0]
            residual = g.add_input(LmIo.RESIDUAL_IN, self.act_type, [*seq, self.hidden])
            pending, residual = self._o_proj_and_mlp(g, w, index - 1, attn, residual)
        if index == self.layers:
            self._head(g, w, pending, residual)
            return
        position_ids = g.add_input(LmIo.POSITION_IDS, TensorProto.INT64, seq)
        cos_name, sin_name = self._rotary_tables(g)
        h, residual = self._input_norm(g, w, index, residual, pending)
        name = f"/model/layers.{index}/attn"
        q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = g.node("Split", [self._qkv(g, w, index, h), g.constant([q_width, kv_width, kv_width])],
                         f"{name}/Split", num_outputs=3, axis=-1)
        q = g.node("RotaryEmbedding", [q, position_ids, cos_name, sin_name], f"{name}/q_rotary/RotaryEmbedding",
                   domain="com.microsoft", interleaved=0, num_heads=self.heads)[0]
        k = g.node("RotaryEmbedding", [k, position_ids, cos_name, sin_name], f"{name}/k_rotary/RotaryEmbedding",
                   domain="com.microsoft", interleaved=0, num_heads=self.kv_heads)[0]
        for produced, out, width in ((q, LmIo.QUERY, q_width), (k, LmIo.KEY, kv_width), (v, LmIo.VALUE, kv_width)):
            if self.fp16:
                produced = g.node("Cast", [produced], f"{name}/{out}/Cast", to=f32)[0]
            g.rename_output(produced, out)
            g.add_output(out, f32, [*seq, width])
        g.rename_output(residual, LmIo.RESIDUAL)
        g.add_output(LmIo.RESIDUAL, self.act_type, [*seq, self.hidden])
