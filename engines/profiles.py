"""Optimisation profiles of the TensorRT plans, computed from the bundle's facts (pure functions, tested on CPU).

The LM plan is built from the portable graph (docs/gpu.md, "The portable graph and its KV cache"): its KV inputs are
the runtime's slot buffers in the capacity layout [batch, kv_heads, capacity, head_dim], its attention mask is
[batch, past + seq]. Two profiles, in this order (the TensorRT backend selects them by index):

- 0 `prefill`: one row, 1..max_context new tokens: input_ids / position_ids [1, 1..max_context], attention_mask
  [1, 1..max_context], KV [1, kv_heads, capacity, head_dim];
- 1 `decode`: 1..max_batch rows of one token: input_ids / position_ids [1..max_batch, 1], attention_mask
  [1..max_batch, 1..max_context + 1], KV [1..max_batch, kv_heads, capacity, head_dim]. The mask may be one longer
  than the context: the backend's CUDA-graph decode reads whole buckets of cache positions (see docs/gpu.md), up to
  the full capacity plus the new token.

The codec decoder's profile spans 1..max_batch utterances (a search decodes every live candidate in one batch) of
1..max_context codes: codes [1..max_batch, 1, 1..max_context].
"""

from __future__ import annotations

from dataclasses import dataclass

from llasa_rt.bundle import ModelFacts
from llasa_rt.errors import InputError
from llasa_rt.layout import LmIo

MAX_BATCH_LIMIT = 256
PREFILL_OPT_TOKENS = 256  # a typical prompt (text + reference voice codes) for kernel selection
CODEC_OPT_FRAMES = 250  # 5 s of codes at 50 per second: the streamed chunk size range
PREFILL, DECODE = "prefill", "decode"


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max dimensions of one input in one profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> list[list[int]]:
        return [list(self.min), list(self.opt), list(self.max)]


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: input name -> shape range."""

    name: str
    shapes: dict[str, ShapeRange]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "shapes": {k: v.to_json() for k, v in self.shapes.items()}}


def check_limits(model: ModelFacts, max_batch: int, max_context: int) -> None:
    """Refuses a batch or context the bundle cannot serve (one line naming the option and its range)."""
    if not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise InputError(f"--max-batch must be between 1 and {MAX_BATCH_LIMIT}, not {max_batch}")
    if not isinstance(max_context, int) or not 16 <= max_context <= model.max_context:
        raise InputError(f"--max-context must be between 16 and the bundle's context ({model.max_context}), "
                         f"not {max_context}")


def lm_profiles(model: ModelFacts, max_batch: int, max_context: int, capacity: int | None = None) -> list[Profile]:
    """The LM plan's [prefill, decode] profiles. `capacity` is the graph's KV length (static in the portable graph:
    the model's max_context unless the graph says otherwise); the runtime's slots have that many positions."""
    check_limits(model, max_batch, max_context)
    capacity = capacity or model.max_context
    if capacity < max_context:
        raise InputError(f"the graph's KV capacity ({capacity} positions) is smaller than --max-context "
                         f"{max_context}; use --max-context {capacity} or re-export with a larger context")
    kv_tail = (model.num_kv_heads, capacity, model.head_dim)
    kv_names = [LmIo.past(i, kind) for i in range(model.num_layers) for kind in ("key", "value")]
    opt_prompt = min(PREFILL_OPT_TOKENS, max_context)

    def same(shape: tuple[int, ...]) -> ShapeRange:
        return ShapeRange(shape, shape, shape)

    prefill = {LmIo.INPUT_IDS: ShapeRange((1, 1), (1, opt_prompt), (1, max_context)),
               LmIo.POSITION_IDS: ShapeRange((1, 1), (1, opt_prompt), (1, max_context)),
               LmIo.ATTENTION_MASK: ShapeRange((1, 1), (1, opt_prompt), (1, max_context))}
    prefill.update({name: same((1, *kv_tail)) for name in kv_names})
    mask_max = min(max_context, capacity) + 1
    decode = {LmIo.INPUT_IDS: ShapeRange((1, 1), (max_batch, 1), (max_batch, 1)),
              LmIo.POSITION_IDS: ShapeRange((1, 1), (max_batch, 1), (max_batch, 1)),
              LmIo.ATTENTION_MASK: ShapeRange((1, 1), (max_batch, mask_max), (max_batch, mask_max))}
    decode.update({name: ShapeRange((1, *kv_tail), (max_batch, *kv_tail), (max_batch, *kv_tail)) for name in kv_names})
    return [Profile(PREFILL, prefill), Profile(DECODE, decode)]


def codec_profiles(input_name: str, max_batch: int, max_frames: int) -> list[Profile]:
    """The codec decoder plan's one profile over batch and code length (input [batch, 1, frames])."""
    if not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise InputError(f"--max-batch must be between 1 and {MAX_BATCH_LIMIT}, not {max_batch}")
    if max_frames < 1:
        raise InputError(f"the codec plan needs at least one code per utterance, not {max_frames}")
    opt = min(CODEC_OPT_FRAMES, max_frames)
    return [Profile("codes", {input_name: ShapeRange((1, 1, 1), (1, 1, opt), (max_batch, 1, max_frames))})]

