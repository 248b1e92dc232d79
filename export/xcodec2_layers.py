"""PyTorch building blocks of X-Codec2, written for llasa-rt from the published architecture.

Module and parameter names follow the HKUSTAudio/xcodec2 `model.safetensors` layout exactly (as the PyPI
`xcodec2` 0.1.5 package names them), so a checkpoint's state dict loads into these modules with
`strict=True`. Numerics follow the package; where we deliberately differ it is said next to the code
(the decoder's rotary embedding is dropped because it is a no-op, see llasa-spec.md §2.2).
Export-time only: imports torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

# --- encoder side: BigCodec acoustic encoder ------------------------------------------------------------------------


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter [1, 1, K] of the alias-free activations (even K only)."""
    half = kernel_size // 2
    delta_f = 4 * half_width
    attenuation = 2.285 * (half - 1) * math.pi * delta_f + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = torch.arange(-half, half) + 0.5
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class LowPassDown(nn.Module):
    """Low-pass filter + decimation by 2 (replicate padding), module path `.lowpass.filter`."""

    def __init__(self, kernel_size: int = 12) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_left = self.kernel_size // 2 - 1
        pad_right = self.kernel_size // 2
        x = F.pad(x, (pad_left, pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=2, groups=x.shape[1])


class DownSample(nn.Module):
    """Wrapper so the filter lives at `downsample.lowpass.filter` as in the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.lowpass = LowPassDown()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class UpSample(nn.Module):
    """Upsampling by 2 with a transposed sinc filter (replicate padding), buffer `upsample.filter`."""

    def __init__(self, kernel_size: int = 12) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2 - 1
        crop_left = pad * 2 + (self.kernel_size - 2) // 2
        crop_right = pad * 2 + (self.kernel_size - 2 + 1) // 2
        x = F.pad(x, (pad, pad), mode="replicate")
        x = 2 * F.conv_transpose1d(x, self.filter.expand(x.shape[1], -1, -1), stride=2, groups=x.shape[1])
        return x[..., crop_left:-crop_right]


class SnakeBeta(nn.Module):
    """x + 1/exp(beta) * sin^2(x * exp(alpha)), per channel (log-scale parameters `alpha`, `bias`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(self.alpha)[None, :, None]
        beta = torch.exp(self.bias)[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class AliasFreeSnake(nn.Module):
    """Upsample x2 -> SnakeBeta -> downsample x2 (anti-aliased activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = UpSample()
        self.downsample = DownSample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


def wn_conv1d(*args: int, **kwargs: int) -> nn.Conv1d:
    """Conv1d with weight norm as a parametrization: keys `parametrizations.weight.original0/1`."""
    conv = nn.Conv1d(*args, **kwargs)
    parametrizations.weight_norm(conv, name="weight", dim=0)
    return conv


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            AliasFreeSnake(dim),
            wn_conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            AliasFreeSnake(dim),
            wn_conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, dilations: tuple[int, ...] = (1, 3, 9)) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *[ResidualUnit(dim // 2, d) for d in dilations],
            AliasFreeSnake(dim // 2),
            wn_conv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=stride // 2 + stride % 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AcousticEncoder(nn.Module):
    """`CodecEnc`: waveform [B, 1, L] -> features [B, L/320, hidden]."""

    def __init__(self, ngf: int = 48, strides: tuple[int, ...] = (2, 2, 4, 4, 5), hidden: int = 1024) -> None:
        super().__init__()
        blocks: list[nn.Module] = [wn_conv1d(1, ngf, kernel_size=7, padding=3)]
        dim = ngf
        for s in strides:
            dim *= 2
            blocks.append(EncoderBlock(dim, s))
        self.conv_blocks = nn.Sequential(*blocks)
        self.conv_final_block = nn.Sequential(AliasFreeSnake(dim), wn_conv1d(dim, hidden, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_final_block(self.conv_blocks(x)).permute(0, 2, 1)


class SemanticAdapter(nn.Module):
    """`SemanticEncoder_module`: conv -> residual(ReLU, conv, ReLU, conv) -> conv over w2v-bert features.

    The package's residual branch starts with ReLU(inplace=True), which overwrites its input before the skip
    connection is added, so the skip adds relu(x), not x. We reproduce that explicitly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.initial_conv = nn.Conv1d(channels, channels, 3, padding=1, bias=False)
        self.residual_blocks = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
        )
        self.final_conv = nn.Conv1d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.initial_conv(x))
        x = self.residual_blocks[1:](x) + x
        return self.final_conv(x)


# --- decoder side: Vocos backbone with transformer, iSTFT head -------------------------------------------------------


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    """Bidirectional multi-head attention over the whole sequence (fused c_attn: q rows, k rows, v rows).

    The package applies a rotary embedding along the *head* axis: q and k of one head get the same rotation at
    every time step, so q·k is unchanged and the rotation is a no-op (llasa-spec.md §2.2). It is omitted here.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=False)
        self.c_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        d = c // self.heads
        qkv = self.c_attn(x).view(b, t, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        y = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=False)
        self.fc2 = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.att_norm = RMSNorm(dim)
        self.ffn_norm = RMSNorm(dim)
        self.att = Attention(dim, heads)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.att_norm(x))
        return x + self.mlp(self.ffn_norm(x))


class VocosBackbone(nn.Module):
    """[B, T, C] -> conv embed -> 2 ResnetBlocks -> transformer blocks -> 2 ResnetBlocks -> LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, kernel_size=7, padding=3)
        self.prior_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim))
        self.transformers = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.post_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prior_net(self.embed(x.transpose(1, 2))).transpose(1, 2)
        x = self.transformers(x)
        x = self.post_net(x.transpose(1, 2)).transpose(1, 2)
        return self.final_layer_norm(x)


class RealISTFT(nn.Module):
    """Inverse STFT with "same" padding using only real matmuls and pads (no complex numbers, no DFT op).

    irfft(n_fft) of a half spectrum is two constant matmuls: x[n] = sum_k w_k/N (Re X_k cos(2πkn/N) - Im X_k
    sin(2πkn/N)), w_k = 1 at DC and Nyquist, 2 otherwise; the synthesis window is folded into the bases. Overlap-add
    with hop = n_fft/4 is a sum of four frame quarters shifted by 0..3 hops; the squared-window envelope is built the
    same way. The first/last (n_fft - hop)/2 samples are trimmed, giving exactly T * hop samples.
    The window buffer keeps the checkpoint's key `istft.window`.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if n_fft != 4 * hop:
            raise ValueError(f"RealISTFT needs n_fft == 4 * hop (got n_fft={n_fft}, hop={hop})")
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("cos_basis", torch.empty(0), persistent=False)
        self.register_buffer("sin_basis", torch.empty(0), persistent=False)
        self.rebuild()

    def rebuild(self) -> None:
        """Recomputes the constant bases from `window` (call after loading a checkpoint)."""
        self.cos_basis, self.sin_basis = self._bases()

    def _bases(self) -> tuple[torch.Tensor, torch.Tensor]:
        n_fft = self.n_fft
        bins = n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / n_fft
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        weight[-1] = 1.0
        win = self.window.to(torch.float64)[None, :]
        cos_b = (weight / n_fft * torch.cos(angle) * win).float()
        sin_b = (-weight / n_fft * torch.sin(angle) * win).float()
        return cos_b, sin_b

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 4*hop] -> signal [B, (T+3)*hop]: block m = sum_j frames[m-j, j-th quarter]."""
        b, t, _ = frames.shape
        quarters = frames.reshape(b, t, 4, self.hop)
        total = F.pad(quarters[:, :, 0], (0, 0, 0, 3))
        for j in range(1, 4):
            total = total + F.pad(quarters[:, :, j], (0, 0, j, 3 - j))
        return total.reshape(b, (t + 3) * self.hop)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """real, imag [B, T, n_fft/2+1] -> audio [B, T*hop]."""
        frames = torch.matmul(real, self.cos_basis) + torch.matmul(imag, self.sin_basis)
        y = self.overlap_add(frames)
        env = self.overlap_add((self.window * self.window).expand_as(frames[:1]))
        trim = (self.n_fft - self.hop) // 2
        t = frames.shape[1]
        y = y[:, trim : trim + t * self.hop]
        env = env[:, trim : trim + t * self.hop]
        return y / env


class ISTFTHead(nn.Module):
    """Linear -> (log-magnitude, phase) -> clipped magnitude -> real iSTFT."""

    def __init__(self, dim: int, n_fft: int, hop: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = RealISTFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = self.out(x)
        bins = pred.shape[-1] // 2
        mag = torch.clamp(torch.exp(pred[..., :bins]), max=1e2)
        phase = pred[..., bins:]
        return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))
