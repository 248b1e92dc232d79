"""Llasa's Llama decoder as one KV-cached ONNX graph for ONNX Runtime (CPU flavour).

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

The head keeps only the 65,537 rows Llasa can legally emit and runs on the last position only.
MatMuls are plain (fp32 / fp16) or MatMulNBits (int8 / int4, block-wise weight-only, int8 activations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import TensorProto

from llasa_rt.bundle import ModelFacts
from llasa_rt.layout import LLASA_TOKENS, LmIo

from .checkpoint import LlasaCheckpoint, WeightReader
from .onnx_writer import GraphWriter
from .quantize import quantize_blockwise

PRECISIONS = ("fp32", "fp16", "int8", "int4")


@dataclass
class LmExportOptions:
    """How to build the LM graph."""

    precision: str = "fp32"  # fp32, fp16, int8 or int4 (weights; int8/int4 keep fp32 activations)
    max_context: int = 2048  # longest prompt + generation the graph supports (Llasa was trained at 2048)
    block_size: int = 128  # int8/int4: input features per quantisation block (128: the usual 4-bit group size)
    head_bits: int = 8  # int4 graphs: bits of the output head (8 keeps logits closer to fp32)
    embed_bits: int = 8  # int8/int4 graphs: bits of the token embedding table (GatherBlockQuantized)
    accuracy_level: int = 4  # MatMulNBits compute: 4 = int8 activations (fast on VNNI/AMX), 0 = fp32

    def validate(self) -> None:
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


class LlamaGraphBuilder:
    """Writes `lm.onnx` + `lm.onnx.data` for a checked Llasa checkpoint."""

    def __init__(self, ckpt: LlasaCheckpoint, options: LmExportOptions,
                 log: Callable[[str], None] | None = None) -> None:
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
        if self.head_dim % 16:
            raise ValueError(f"head_dim {self.head_dim} is not a multiple of 16 (ONNX Runtime's GroupQueryAttention "
                             "needs that); Llasa models use 64 or 128")
        self.fp16 = options.precision == "fp16"
        self.act = np.float16 if self.fp16 else np.float32
        self.act_type = TensorProto.FLOAT16 if self.fp16 else TensorProto.FLOAT
        self.bits = {"int8": 8, "int4": 4}.get(options.precision)
        self.embed_block = 0

    # ---- weights ---------------------------------------------------------------------------------
    def _linear(self, g: GraphWriter, x: str, weight: np.ndarray, name: str, bits: int | None = None) -> str:
        """y = x @ weight.T for weight [N, K]: MatMul (float) or MatMulNBits (quantised)."""
        bits = self.bits if bits is None else bits
        n, k = weight.shape
        if bits is None:
            w = g.initializer(f"{name}.weight", np.ascontiguousarray(weight.T.astype(self.act)))
            return g.node("MatMul", [x, w], f"{name}/MatMul")[0]
        q = quantize_blockwise(weight, bits, self.opt.block_size)
        b = g.initializer(f"{name}.weight.q{bits}", q.data)
        s = g.initializer(f"{name}.weight.scales", q.scales.reshape(-1).astype(np.float32))
        z = g.initializer(f"{name}.weight.zero_points", q.zero_points.reshape(-1))
        return g.node("MatMulNBits", [x, b, s, z], f"{name}/MatMulNBits", domain="com.microsoft", K=k, N=n,
                      bits=bits, block_size=self.opt.block_size, accuracy_level=self.opt.accuracy_level)[0]

    def _norm_weight(self, g: GraphWriter, w: WeightReader, key: str) -> str:
        return g.initializer(key, w.get(key).astype(self.act, copy=False))

    # ---- graph -----------------------------------------------------------------------------------
    def build(self, onnx_path: Path) -> ModelFacts:
        """Writes the graph; returns facts for the manifest."""
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

        cos, sin = rotary_cache(self.ckpt.config, D, self.opt.max_context)
        cos_name = g.initializer("cos_cache", cos.astype(self.act))
        sin_name = g.initializer("sin_cache", sin.astype(self.act))

        # Token embeddings (int8/int4 graphs: block-quantised table, dequantised on gather).
        emb_key = "model.embed_tokens.weight"
        table = w.get(emb_key)
        vocab = table.shape[0]
        if self.bits is None:
            t = g.initializer(emb_key, table.astype(self.act, copy=False))
            x = g.node("Gather", [t, input_ids], "/model/embed_tokens/Gather", axis=0)[0]
        else:
            # GatherBlockQuantized needs whole blocks: the largest power of two <= block_size dividing hidden.
            block = self.opt.block_size
            while self.hidden % block:
                block //= 2
            q = quantize_blockwise(table, self.opt.embed_bits, block)
            d = g.initializer(f"{emb_key}.q{self.opt.embed_bits}", q.data.reshape(vocab, -1))
            s = g.initializer(f"{emb_key}.scales", q.scales.astype(np.float32))
            z = g.initializer(f"{emb_key}.zero_points", q.zero_points)
            x = g.node("GatherBlockQuantized", [d, input_ids, s, z], "/model/embed_tokens/GatherBlockQuantized",
                       domain="com.microsoft", bits=self.opt.embed_bits, block_size=block,
                       gather_axis=0, quantize_axis=1)[0]
            self.embed_block = block
        del table

        residual, pending = x, None  # `pending`: the branch output not yet added to the residual
        for i in range(self.layers):
            self.log(f"layer {i + 1}/{self.layers}")
            p = f"model.layers.{i}."
            name = f"/model/layers.{i}"
            ln = self._norm_weight(g, w, p + "input_layernorm.weight")
            if pending is None:
                h = g.node("SimplifiedLayerNormalization", [residual, ln], f"{name}/input_layernorm/LayerNorm",
                           axis=-1, epsilon=self.eps, stash_type=1)[0]
            else:
                outs = g.node("SkipSimplifiedLayerNormalization", [pending, residual, ln],
                              f"{name}/input_layernorm/SkipLayerNorm", num_outputs=4, unused=(1, 2),
                              domain="com.microsoft", epsilon=self.eps)
                h, residual = outs[0], outs[3]

            qkv_w = np.concatenate([w.get(p + "self_attn.q_proj.weight"), w.get(p + "self_attn.k_proj.weight"),
                                    w.get(p + "self_attn.v_proj.weight")], axis=0)
            qkv = self._linear(g, h, qkv_w, f"{name}/attn/qkv_proj")
            del qkv_w
            past_k = g.add_input(LmIo.past(i, "key"), kv_type,
                                 ["batch_size", Hkv, "past_sequence_length", D])
            past_v = g.add_input(LmIo.past(i, "value"), kv_type,
                                 ["batch_size", Hkv, "past_sequence_length", D])
            attn, pk, pv = g.node(
                "GroupQueryAttention",
                [qkv, "", "", past_k, past_v, seqlens_k, total, cos_name, sin_name, position_ids],
                f"{name}/attn/GroupQueryAttention", num_outputs=3, domain="com.microsoft",
                num_heads=self.heads, kv_num_heads=Hkv, scale=float(1.0 / np.sqrt(D)), do_rotary=1,
                rotary_interleaved=0)
            for produced, out in ((pk, LmIo.present(i, "key")), (pv, LmIo.present(i, "value"))):
                g.rename_output(produced, out)
                g.add_output(out, kv_type, ["batch_size", Hkv, "total_sequence_length", D])
            o = self._linear(g, attn, w.get(p + "self_attn.o_proj.weight"), f"{name}/attn/o_proj")

            ln2 = self._norm_weight(g, w, p + "post_attention_layernorm.weight")
            outs = g.node("SkipSimplifiedLayerNormalization", [o, residual, ln2],
                          f"{name}/post_attention_layernorm/SkipLayerNorm", num_outputs=4, unused=(1, 2),
                          domain="com.microsoft", epsilon=self.eps)
            h, residual = outs[0], outs[3]
            gate_up_w = np.concatenate([w.get(p + "mlp.gate_proj.weight"), w.get(p + "mlp.up_proj.weight")], axis=0)
            inter = gate_up_w.shape[0] // 2
            gate_up = self._linear(g, h, gate_up_w, f"{name}/mlp/gate_up_proj")
            del gate_up_w
            gate, up = g.node("Split", [gate_up, g.constant([inter, inter])], f"{name}/mlp/Split", num_outputs=2,
                              axis=-1)
            sig = g.node("Sigmoid", [gate], f"{name}/mlp/act_fn/Sigmoid")[0]
            act = g.node("Mul", [gate, sig], f"{name}/mlp/act_fn/Mul")[0]
            prod = g.node("Mul", [act, up], f"{name}/mlp/Mul")[0]
            pending = self._linear(g, prod, w.get(p + "mlp.down_proj.weight"), f"{name}/mlp/down_proj")

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
        return ModelFacts(
            num_layers=self.layers, hidden_size=self.hidden, num_attention_heads=self.heads, num_kv_heads=Hkv,
            head_dim=D, intermediate_size=inter, vocab_size=vocab, max_context=self.opt.max_context,
            kv_dtype="float16" if self.fp16 else "float32", rms_norm_eps=self.eps, tied_embeddings=self.ckpt.tied,
            embed_block_size=self.embed_block if self.bits is not None else None,
        )
