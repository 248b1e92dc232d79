"""The two recipes, written as standard ONNX QuantizeLinear / DequantizeLinear around the graph's linears.

W8A8 INT8 (TensorRT's INT8 form: per-channel weights, per-tensor activations, symmetric, zero point 0):
    x ─ [Mul(1/s)] ─ QuantizeLinear(a_scale) ─ DequantizeLinear(a_scale) ─┐
    W_q int8 [K, N] ─ DequantizeLinear(w_scale [N], axis=1) ──────────────┴─ MatMul
  SmoothQuant: s_k = max|x_k|^alpha / max|W_k.|^(1 - alpha) moves activation outliers into the weights
  (W' = diag(s) W, x' = x / s). When x comes from an RMSNorm (or LayerNorm / a Mul by a [K] initializer) that
  feeds only these linears, 1/s is folded into the norm's weight (no new node, the float function unchanged);
  otherwise smoothing needs an explicit Mul (`smooth_mul`) or is skipped.
W4A16 INT4 (TensorRT's weight-only INT4 form, opset 21):
    W_q int4 [K, N] ─ DequantizeLinear(scale [K/B, N], zero point 0, axis=0, block_size=B) ─ MatMul
  symmetric, q in [-8, 7], scale = max|block| / 7; K must be a multiple of B (TensorRT rejects a last partial
  block). AWQ-style: per input channel s = mean|x|^a (normalised), a chosen from a grid by the linears' output
  error on the calibration sample (a = 0 is plain round-to-nearest), applied like SmoothQuant's s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llasa_rt.errors import InputError

from .collect import Calibration
from .graph import GraphFile, Linear, pack_int4

SCHEMES = ("int8", "int4")
HEAD_CHOICES = ("same", "int8", "float")  # the head: quantised like the rest, W8 per-channel weight-only, or kept
NORM_GAMMA = {  # normalisation op -> index of its per-channel weight input (and of its bias, if any)
    "SimplifiedLayerNormalization": (1, None), "SkipSimplifiedLayerNormalization": (2, 3),
    "RMSNormalization": (1, None), "LayerNormalization": (1, 2),
}
AWQ_GRID = tuple(round(0.1 * i, 1) for i in range(11))
CLIP_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)  # int8 activation ranges tried, as fractions of the calibrated max


@dataclass
class QuantOptions:
    """How to quantise a graph."""

    scheme: str  # "int8" (W8A8, SmoothQuant) or "int4" (W4A16, blockwise weights)
    alpha: float = 0.5  # int8: SmoothQuant migration strength (0 = no smoothing)
    smooth_mul: bool = True  # also smooth linears whose input cannot be folded into a norm (inserts a Mul)
    block_size: int = 128  # int4: input features per scale block
    awq: bool = False  # int4: activation-aware scale search (folded like SmoothQuant's scales)
    head: str = "same"  # the output head: "same" as the scheme, "int8" weight-only per-channel, "float" kept
    head_rows: int = 0  # output features that identify the head (0: no head handling)
    convs: bool = False  # also quantise Conv weights per output channel (int8 only; the codec decoder)
    clip_search: bool = False  # int8: activation range by least output error on the calibration sample (else max)

    def validate(self) -> None:
        if self.scheme not in SCHEMES:
            raise InputError(f"unknown quantisation scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"--alpha must be in [0, 1], not {self.alpha}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise InputError(f"--block-size must be a power of two >= 16, not {self.block_size}")
        if self.head not in HEAD_CHOICES:
            raise InputError(f"--head must be one of {', '.join(HEAD_CHOICES)}, not {self.head!r}")


@dataclass
class QuantReport:
    """What a rewrite did (recorded in the manifest entry)."""

    quantized: int = 0  # linears rewritten
    smoothed_folded: int = 0  # linear inputs whose scales went into a norm weight
    smoothed_mul: int = 0  # linear inputs smoothed through an inserted Mul
    awq_alpha: dict[str, float] = field(default_factory=dict)  # int4: chosen exponent per activation tensor
    awq_error_ratio: float = 1.0  # int4: output error with the chosen scales / with plain round-to-nearest
    clip_ratios: dict[str, float] = field(default_factory=dict)  # int8 clip search: range / max per activation

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quantized_linears": self.quantized, "smoothed_folded": self.smoothed_folded,
                               "smoothed_mul": self.smoothed_mul}
        if self.clip_ratios:
            out["clip_ratios"] = sorted(set(self.clip_ratios.values()))
        if self.awq_alpha:
            out["awq_alphas"] = sorted(set(self.awq_alpha.values()))
            out["awq_error_ratio_vs_rtn"] = round(self.awq_error_ratio, 4)
        return out


# ---- NumPy quantisers (the references of what the ONNX ops compute) ----------------------------------------
def quantize_int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 of W [K, N]: (q int8 [K, N], scale float32 [N]); W ~ q * scale."""
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def quantize_int4_blocks(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric blockwise int4 of W [K, N] along K: (q int8 values in [-8, 7] [K, N], scale [K / block, N])."""
    w = np.asarray(w, np.float32)
    k, n = w.shape
    blocks = w.reshape(k // block, block, n)
    scale = np.abs(blocks).max(axis=1) / 7.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(blocks / scale[:, None, :]), -8, 7).astype(np.int8)
    return q.reshape(k, n), scale


def dequantize_int4_blocks(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 W [K, N] that blockwise int4 (q, scale) stands for."""
    block = q.shape[0] // scale.shape[0]
    return (q.reshape(scale.shape[0], block, -1).astype(np.float32) * scale[:, None, :]).reshape(q.shape)


def smooth_scales(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel s = max|x|^alpha / max|W|^(1-alpha) (1 where a channel is all zero)."""
    x, w = np.asarray(x_absmax, np.float64), np.asarray(w_absmax, np.float64)
    ok = (x > 0) & (w > 0)
    s = np.where(ok, np.power(np.where(ok, x, 1.0), alpha) / np.power(np.where(ok, w, 1.0), 1.0 - alpha), 1.0)
    return np.clip(s, 1e-4, 1e4).astype(np.float32)


# ---- the rewrite -------------------------------------------------------------------------------------------
def groups(graph: GraphFile, convs: bool = False) -> dict[str, list[Linear]]:
    """Linears grouped by their shared input tensor (a portable graph's q/k/v read one normed tensor); a tensor
    read by both MatMuls and Convs keeps them in separate groups (keys "name" and "name#conv")."""
    out: dict[str, list[Linear]] = {}
    for lin in graph.linears(convs):
        out.setdefault(lin.input + ("#conv" if lin.conv else ""), []).append(lin)
    return out


def fold_target(graph: GraphFile, x: str, members: list[Linear]) -> tuple[str, str | None] | None:
    """(weight initializer, bias initializer or None) of the norm that produces `x` for these linears only."""
    consumers = graph.consumers.get(x, [])
    if x in graph.outputs or {id(n) for n in consumers} != {id(m.node) for m in members}:
        return None
    node = graph.producer.get(x)
    if node is None:
        return None
    k = members[0].k
    if node.op_type in NORM_GAMMA and node.output[0] == x:
        gi, bi = NORM_GAMMA[node.op_type]
        gamma = node.input[gi] if len(node.input) > gi else ""
        bias = node.input[bi] if bi is not None and len(node.input) > bi and node.input[bi] else None
        if gamma in graph.inits and (bias is None or bias in graph.inits):
            return gamma, bias
        return None
    if node.op_type == "Mul":
        for name in node.input:
            if name in graph.inits and int(np.prod(graph.inits[name].dims)) == k and graph.inits[name].dims[-1] == k:
                return name, None
    return None


def _own_initializer(graph: GraphFile, name: str, node_input_owner: str) -> str:
    """Makes sure initializer `name` is used by one node only (copies it under a new name otherwise)."""
    users = [n for n in graph.model.graph.node if name in n.input]
    if len(users) <= 1:
        return name
    owner = graph.producer[node_input_owner]
    new = graph.set(graph.fresh(f"{name}.smoothed"), graph.array(name))
    owner.input[list(owner.input).index(name)] = new
    return new


def _smooth(graph: GraphFile, x: str, members: list[Linear], s: np.ndarray, report: QuantReport,
            allow_mul: bool) -> dict[str, np.ndarray]:
    """Applies x' = x / s, W' = diag(s) W to a group; returns the smoothed float weights (not yet written)."""
    weights = {m.weight: graph.array(m.weight).astype(np.float32) * s[:, None] for m in members}
    target = fold_target(graph, x, members)
    dtype = members[0].dtype
    if target is not None:
        gamma, bias = target
        for name in (gamma, bias):
            if name is None:
                continue
            own = _own_initializer(graph, name, x)
            value = graph.array(own)
            graph.set(own, (value.astype(np.float32) / s.reshape(value.shape)).astype(value.dtype))
        report.smoothed_folded += 1
    elif allow_mul:
        first = members[0].node
        inv = graph.set(graph.fresh(f"{first.name}/smooth_inv_scale"), (1.0 / s).astype(dtype))
        xs = graph.insert_before(first, "Mul", [x, inv], graph.fresh(f"{first.name}/smooth/Mul"))
        for m in members:
            m.node.input[0] = xs
        report.smoothed_mul += 1
    else:
        return {}
    return weights


def _is_head(lin: Linear, options: QuantOptions) -> bool:
    return options.head_rows > 0 and lin.n == options.head_rows


def _weight_int8(graph: GraphFile, lin: Linear, w: np.ndarray) -> None:
    if lin.conv:  # per output channel = axis 0 of [N, K / groups, *kernel]
        q, scale = quantize_int8_columns(w.reshape(w.shape[0], -1).T)
        q = np.ascontiguousarray(q.T).reshape(w.shape)
    else:
        q, scale = quantize_int8_columns(w)
    base = lin.weight
    qn = graph.set(graph.fresh(f"{base}.int8"), q)
    sn = graph.set(graph.fresh(f"{base}.scale"), scale.astype(lin.dtype))
    zn = graph.set(graph.fresh(f"{base}.zero_point"), np.zeros(lin.n, np.int8))
    wd = graph.insert_before(lin.node, "DequantizeLinear", [qn, sn, zn], graph.fresh(f"{lin.node.name}/weight/DQ"),
                             axis=0 if lin.conv else 1)
    lin.node.input[1] = wd


def _weight_int4(graph: GraphFile, lin: Linear, w: np.ndarray, block: int) -> None:
    q, scale = quantize_int4_blocks(w, block)
    base = lin.weight
    qn = graph.set(graph.fresh(f"{base}.int4"), pack_int4(q))
    sn = graph.set(graph.fresh(f"{base}.scale"), scale.astype(lin.dtype))
    zn = graph.set(graph.fresh(f"{base}.zero_point"), pack_int4(np.zeros(scale.shape, np.int8)))
    wd = graph.insert_before(lin.node, "DequantizeLinear", [qn, sn, zn], graph.fresh(f"{lin.node.name}/weight/DQ"),
                             axis=0, block_size=block)
    lin.node.input[1] = wd


def _activation_int8(graph: GraphFile, members: list[Linear], absmax: float) -> None:
    first = members[0]
    scale = graph.set(graph.fresh(f"{first.node.name}/input/scale"),
                      np.array(max(absmax, 1e-8) / 127.0, dtype=first.dtype))
    zp = graph.set(graph.fresh(f"{first.node.name}/input/zero_point"), np.array(0, np.int8))
    x = first.node.input[0]
    q = graph.insert_before(first.node, "QuantizeLinear", [x, scale, zp], graph.fresh(f"{first.node.name}/input/Q"))
    d = graph.insert_before(first.node, "DequantizeLinear", [q, scale, zp], graph.fresh(f"{first.node.name}/input/DQ"))
    for m in members:
        m.node.input[0] = d


def _awq_search(x: np.ndarray, weights: list[np.ndarray], x_absmean: np.ndarray,
                block: int) -> tuple[float, np.ndarray, float, float]:
    """(best a, its scales, its output error, round-to-nearest's error) over AWQ_GRID for a group of weights."""
    x = x.astype(np.float32)
    refs = [x @ w for w in weights]
    best = (0.0, np.ones_like(x_absmean), np.inf)
    rtn = np.inf
    for a in AWQ_GRID:
        s = np.power(np.maximum(x_absmean, 1e-8), a).astype(np.float32)
        s = s / np.sqrt(s.max() * s.min())
        err = 0.0
        for w, ref in zip(weights, refs, strict=True):
            q, scale = quantize_int4_blocks(w * s[:, None], block)
            err += float(np.square((x / s) @ dequantize_int4_blocks(q, scale) - ref).sum())
        if a == 0.0:
            rtn = err
        if err < best[2]:
            best = (a, s, err)
    return best[0], best[1], best[2], rtn


def check_blocks(graph: GraphFile, options: QuantOptions) -> None:
    """Refuses int4 when a linear's input features are not whole blocks (TensorRT rejects partial blocks)."""
    bad = sorted({lin.k for lin in graph.linears() if lin.k % options.block_size
                  and not (_is_head(lin, options) and options.head != "same")})
    if not bad:
        return
    fits = [b for b in (16, 32, 64, 128, 256) if all(k % b == 0 for k in bad)]
    listed = ", ".join(map(str, bad))
    if not fits:
        raise InputError(f"input features {listed} are not multiples of 16; int4 blocks cannot cover them")
    raise InputError(f"input features {listed} are not multiples of the int4 block size {options.block_size} "
                     f"(TensorRT rejects partial blocks); use --block-size {max(fits)}")


def _clip_search(x: np.ndarray, weights: list[np.ndarray], absmax: float) -> float:
    """The activation range (a fraction of absmax from CLIP_GRID) with the least W8A8 output error on the sample."""
    x = x.astype(np.float32)
    pairs = []
    for w in weights:
        q, scale = quantize_int8_columns(w)
        pairs.append((x @ w, q.astype(np.float32) * scale))
    best, best_err = 1.0, np.inf
    for r in CLIP_GRID:
        step = max(r * absmax, 1e-8) / 127.0
        xq = np.clip(np.rint(x / step), -128, 127) * step
        err = sum(float(np.square(xq @ wq - ref).sum()) for ref, wq in pairs)
        if err < best_err:
            best, best_err = r, err
    return best


def quantize_graph(graph: GraphFile, calib: Calibration, options: QuantOptions,
                   log: Callable[[str], None] | None = None) -> QuantReport:
    """Rewrites `graph` in memory (save it afterwards) with the Q/DQ of `options.scheme`."""
    options.validate()
    if options.convs and options.scheme != "int8":
        raise InputError("Conv weights are quantised by the int8 scheme only")
    if not graph.linears(options.convs):
        raise InputError(f"graph '{graph.path.name}' has no MatMul with a [K, N] float weight initializer: nothing "
                         "to quantise")
    if options.scheme == "int4":
        check_blocks(graph, options)
    graph.require_opset(21 if options.scheme == "int4" else 13)  # may rebuild the graph: find the linears after
    found = groups(graph, options.convs)
    report = QuantReport()
    total_err = total_rtn = 0.0
    for n, (x, members) in enumerate(found.items()):
        if log and n % 8 == 0:
            log(f"quantising linear group {n + 1}/{len(found)}")
        st = calib.stats.get(members[0].input)
        if st is None or st.channel_absmax is None:
            raise InputError(f"calibration has no statistics for '{x}' (input of {members[0].node.name}); "
                             "calibrate on this very graph")
        head = any(_is_head(m, options) for m in members)
        mode = options.head if head and options.head != "same" else options.scheme
        if mode == "float":
            continue
        weights: dict[str, np.ndarray] = {}
        absmax, sample = st.absmax, st.sample
        conv = members[0].conv  # Convs: no smoothing (their channels are not the last axis)
        x = members[0].input
        can_smooth = not conv and (options.smooth_mul or fold_target(graph, x, members) is not None)
        if mode == "int8" and options.scheme == "int8" and options.alpha > 0 and can_smooth:
            w_absmax = np.max([np.abs(graph.array(m.weight)).max(axis=1) for m in members], axis=0)
            s = smooth_scales(st.channel_absmax, w_absmax, options.alpha)
            weights = _smooth(graph, x, members, s, report, options.smooth_mul)
            if weights:
                absmax = float((st.channel_absmax / s).max())
                sample = st.sample / s
        elif mode == "int4" and options.awq and can_smooth:
            ws = [graph.array(m.weight).astype(np.float32) for m in members]
            a, s, err, rtn = _awq_search(st.sample, ws, st.channel_absmean, options.block_size)
            total_err, total_rtn = total_err + err, total_rtn + rtn
            report.awq_alpha[x] = a
            if a > 0:
                weights = _smooth(graph, x, members, s, report, options.smooth_mul)
        final = {}
        for m in members:
            w = weights.get(m.weight)
            final[m.weight] = graph.array(m.weight).astype(np.float32) if w is None else w
            if mode == "int4":
                _weight_int4(graph, m, final[m.weight], options.block_size)
            else:
                _weight_int8(graph, m, final[m.weight])
            report.quantized += 1
        if mode == "int8" and options.scheme == "int8":
            if options.clip_search and not conv:
                ratio = _clip_search(sample, list(final.values()), absmax)
                report.clip_ratios[x] = ratio
                absmax *= ratio
            _activation_int8(graph, members, absmax)
    if total_rtn > 0:
        report.awq_error_ratio = total_err / total_rtn
    _drop_unused(graph)
    return report


def _drop_unused(graph: GraphFile) -> None:
    """Removes initializers no node reads any more (the float weights that were replaced)."""
    used = {i for n in graph.model.graph.node for i in n.input}
    used |= {i for nodes in graph.before.values() for n in nodes for i in n.input}
    keep = [t for t in graph.model.graph.initializer if t.name in used]
    for t in graph.model.graph.initializer:
        if t.name not in used:
            graph.replaced.pop(t.name, None)
            graph.inits.pop(t.name, None)
    del graph.model.graph.initializer[:]
    graph.model.graph.initializer.extend(keep)


def smooth_only(graph: GraphFile, calib: Calibration, alpha: float, smooth_mul: bool = False) -> QuantReport:
    """SmoothQuant's rescaling without quantisation (the float function must stay the same; for tests)."""
    report = QuantReport()
    for x, members in groups(graph).items():
        st = calib.stats[x]
        w_absmax = np.max([np.abs(graph.array(m.weight)).max(axis=1) for m in members], axis=0)
        weights = _smooth(graph, x, members, smooth_scales(st.channel_absmax, w_absmax, alpha), report, smooth_mul)
        for m in members:
            if m.weight in weights:
                graph.set(m.weight, weights[m.weight].astype(m.dtype))
    return report


__all__ = ["AWQ_GRID", "HEAD_CHOICES", "SCHEMES", "QuantOptions", "QuantReport", "dequantize_int4_blocks",
           "groups", "quantize_graph", "quantize_int4_blocks", "quantize_int8_columns", "smooth_only",
           "smooth_scales"]
