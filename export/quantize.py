"""Block-wise weight-only quantisation into ONNX Runtime's MatMulNBits / GatherBlockQuantized layouts.

Round-to-nearest, asymmetric, per block of `block_size` consecutive input features of each output row:

    lo = min(block, 0), hi = max(block, 0)          (zero stays exactly representable)
    scale = (hi - lo) / (2^bits - 1), zp = round(-lo / scale), q = clip(round(w / scale) + zp, 0, 2^bits - 1)
    w ~= (q - zp) * scale

Layouts (com.microsoft MatMulNBits): for a weight W [N, K] used as y = x @ W.T,
    B      uint8 [N, n_blocks, block_size * bits / 8]   (4 bits: element j of a block in byte j // 2,
                                                         low nibble first)
    scales float [N * n_blocks]
    zp     uint8 [N * ceil(n_blocks * bits / 8)]        (4 bits: two per byte, low nibble first, each row
                                                         padded to a whole byte)
GatherBlockQuantized (embedding tables [V, H], quantised along H) uses the same packing with
data uint8 [V, H * bits / 8], scales [V, H / block_size], zero points uint8 [V, ceil(H / block_size * bits / 8)].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Quantized:
    """A weight [N, K] quantised block-wise along K."""

    data: np.ndarray  # uint8 [N, n_blocks, block_size * bits // 8]
    scales: np.ndarray  # float32 [N, n_blocks]
    zero_points: np.ndarray  # uint8 [N, ceil(n_blocks * bits / 8)] (packed for 4 bits)
    bits: int
    block_size: int
    k: int  # unpadded number of input features


def _pack_nibbles(a: np.ndarray) -> np.ndarray:
    """Packs uint8 values < 16 along the last axis, two per byte, low nibble first (pads odd lengths)."""
    if a.shape[-1] % 2:
        a = np.concatenate([a, np.zeros((*a.shape[:-1], 1), np.uint8)], axis=-1)
    return (a[..., 0::2] | (a[..., 1::2] << 4)).astype(np.uint8)


def quantize_blockwise(w: np.ndarray, bits: int, block_size: int, rows_per_chunk: int = 4096) -> Quantized:
    """Quantises a float matrix [N, K] block-wise along K (round to nearest, asymmetric).

    Rows are processed `rows_per_chunk` at a time so the temporaries stay small even for an 8B model's
    193,800-row embedding table.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, not {block_size}")
    if w.shape[0] > rows_per_chunk:
        parts = [_quantize_rows(w[i:i + rows_per_chunk], bits, block_size)
                 for i in range(0, w.shape[0], rows_per_chunk)]
        return Quantized(data=np.concatenate([p.data for p in parts]), scales=np.concatenate([p.scales for p in parts]),
                         zero_points=np.concatenate([p.zero_points for p in parts]), bits=bits,
                         block_size=block_size, k=w.shape[1])
    return _quantize_rows(w, bits, block_size)


def _quantize_rows(w: np.ndarray, bits: int, block_size: int) -> Quantized:
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    n_blocks = -(-k // block_size)
    padded = np.zeros((n, n_blocks * block_size), np.float32)
    padded[:, :k] = w
    blocks = padded.reshape(n, n_blocks, block_size)
    qmax = (1 << bits) - 1
    lo = np.minimum(blocks.min(axis=2), 0.0)
    hi = np.maximum(blocks.max(axis=2), 0.0)
    scale = (hi - lo) / qmax
    scale = np.where(scale == 0, np.float32(1.0), scale).astype(np.float32)
    zp = np.clip(np.round(-lo / scale), 0, qmax).astype(np.uint8)
    q = np.clip(np.round(blocks / scale[:, :, None]) + zp[:, :, None], 0, qmax).astype(np.uint8)
    if bits == 4:
        data, zp_packed = _pack_nibbles(q), _pack_nibbles(zp)
    else:
        data, zp_packed = q, zp
    return Quantized(data=np.ascontiguousarray(data), scales=scale, zero_points=np.ascontiguousarray(zp_packed),
                     bits=bits, block_size=block_size, k=k)


def dequantize(qw: Quantized) -> np.ndarray:
    """The float32 matrix [N, K] that a quantised weight stands for (the NumPy reference of the ONNX ops)."""
    n, n_blocks = qw.scales.shape
    if qw.bits == 4:
        lo_hi = np.stack([qw.data & 0x0F, qw.data >> 4], axis=-1).reshape(n, n_blocks, -1)
        zp = np.stack([qw.zero_points & 0x0F, qw.zero_points >> 4], axis=-1).reshape(n, -1)[:, :n_blocks]
    else:
        lo_hi, zp = qw.data, qw.zero_points
    w = (lo_hi.astype(np.float32) - zp[:, :, None].astype(np.float32)) * qw.scales[:, :, None]
    return w.reshape(n, -1)[:, : qw.k]
