"""A continuous-batching generation engine over a transformers causal LM (issue 27, first slice).

The engine owns a preallocated, slot-based KV cache (one `[slots, kv_heads, max_len, head_dim]`
tensor per layer for keys and one for values) and runs the model's own modules (embedding,
norms, projections, rotary embedding, MLP, head) in its own layer loop, so that every slot keeps
its own position. Each waiting prompt is prefilled alone into a free slot; then one decode step
advances every active slot by a token; a sequence that reaches a stop token or its
`max_new_tokens` leaves at once and the next waiting prompt takes its slot (no padding to the
longest output). Greedy output of a request does not depend on what else is in the batch, and
in fp32 it matches `model.generate` token for token. Sampling uses one `torch.Generator` per
request, seeded by the request, with temperature, top-k and top-p.

Supported: decoder-only llama-style models without sliding-window layers (Qwen3, Qwen2, Llama).
`supports(model)` says why another model is refused; callers fall back to the simple path.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = ("qwen3", "qwen2", "llama")


@dataclass(frozen=True)
class Request:
    """One generation: prompt token ids, its length limit, stop tokens and decoding rule."""

    prompt_ids: Sequence[int]
    max_new_tokens: int
    stop_token_ids: tuple[int, ...] = ()
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class EngineStats:
    """What a run did: steps, tokens and the live KV positions per decode step."""

    prefill_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    live_kv_positions: list[int] = field(default_factory=list)  # summed over slots, per step
    active_per_step: list[int] = field(default_factory=list)


def supports(model: Any) -> str | None:
    """None when the engine can run `model`, otherwise the reason it cannot."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types) or getattr(
        config, "use_sliding_window", False
    ):
        return "sliding-window attention layers are not supported yet"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope type {rope.get('rope_type')!r} is not supported yet"
    return None


class _Slot:
    __slots__ = ("generator", "index", "out", "pos", "req", "req_id")

    def __init__(self, index: int, req_id: int, req: Request, pos: int, gen: Any) -> None:
        self.index = index
        self.req_id = req_id
        self.req = req
        self.pos = pos  # position of the next token to write (= tokens in the cache)
        self.out: list[int] = []
        self.generator: torch.Generator | None = gen


class Engine:
    """Continuous batching over `slots` preallocated cache rows of `max_len` positions."""

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        max_len: int,
        compile_decode: bool = False,
    ) -> None:
        reason = supports(model)
        if reason:
            raise ValueError(f"engine cannot run this model: {reason}")
        self.model = model.eval()
        self.config = model.config
        base = model.model
        self.embed = base.embed_tokens
        self.layers = list(base.layers)
        self.norm = base.norm
        self.rotary = base.rotary_emb
        self.lm_head = model.lm_head
        attn = self.layers[0].self_attn
        self.head_dim = int(attn.head_dim)
        self.scaling = float(attn.scaling)
        self.n_heads = int(self.config.num_attention_heads)
        self.n_kv = int(self.config.num_key_value_heads)
        self.slots = slots
        self.max_len = max_len
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        shape = (slots, self.n_kv, max_len, self.head_dim)
        self.k_cache = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers
        ]
        self.v_cache = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers
        ]
        self.stats = EngineStats()
        self._decode: Callable[..., torch.Tensor] = self._decode_eager
        if compile_decode and self.device.type == "cuda":
            self._decode = torch.compile(self._decode_eager, dynamic=True)

    # ---- the model, layer by layer --------------------------------------------------------

    def _attention_block(
        self,
        layer: Any,
        i: int,
        h: torch.Tensor,  # [B, T, hidden]
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        slot_idx: torch.Tensor,  # [B]
        positions: torch.Tensor,  # [B, T]
        kv_len: int,
        full_view: bool,
        mask: torch.Tensor,  # [B, 1, T, kv_len] bool
    ) -> torch.Tensor:
        attn = layer.self_attn
        b, t, _ = h.shape
        shape = (b, t, -1, self.head_dim)
        q = attn.q_proj(h).view(shape)
        k = attn.k_proj(h).view(shape)
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q)
            k = attn.k_norm(k)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = attn.v_proj(h).view(shape).transpose(1, 2)
        cos, sin = cos_sin
        q, k = _rotary(q, k, cos, sin)
        kc, vc = self.k_cache[i], self.v_cache[i]
        # write the new keys/values at each slot's own positions
        rows = slot_idx[:, None].expand(b, t)
        kc[rows, :, positions] = k.transpose(1, 2)  # [B, T, kv, d]
        vc[rows, :, positions] = v.transpose(1, 2)
        if full_view:
            keys, values = kc[:, :, :kv_len], vc[:, :, :kv_len]
        else:
            keys = kc.index_select(0, slot_idx)[:, :, :kv_len]
            values = vc.index_select(0, slot_idx)[:, :, :kv_len]
        # grouped-query attention without copying the cache: the query heads that share a
        # key/value head become extra query rows of that head
        groups = self.n_heads // self.n_kv
        q = q.reshape(b, self.n_kv, groups * t, self.head_dim)
        if groups > 1 and t > 1:
            mask = mask.repeat(1, 1, groups, 1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling)
        out = out.view(b, self.n_heads, t, self.head_dim).transpose(1, 2).reshape(b, t, -1)
        return attn.o_proj(out)

    def _forward(
        self,
        tokens: torch.Tensor,  # [B, T]
        positions: torch.Tensor,  # [B, T]
        slot_idx: torch.Tensor,  # [B]
        kv_len: int,
        full_view: bool,
    ) -> torch.Tensor:
        """Hidden state of the last position of each row, after the final norm: [B, hidden]."""
        h = self.embed(tokens)
        cos_sin = self.rotary(h, positions)
        keys_at = torch.arange(kv_len, device=tokens.device)
        mask = (keys_at[None, None, :] <= positions[:, :, None])[:, None]  # [B, 1, T, kv_len]
        for i, layer in enumerate(self.layers):
            residual = h
            x = layer.input_layernorm(h)
            x = self._attention_block(
                layer, i, x, cos_sin, slot_idx, positions, kv_len, full_view, mask
            )
            h = residual + x
            residual = h
            h = residual + layer.mlp(layer.post_attention_layernorm(h))
        return self.norm(h[:, -1])

    def _decode_eager(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        slot_idx: torch.Tensor,
        kv_len: int,
        full_view: bool,
    ) -> torch.Tensor:
        return self.lm_head(self._forward(tokens, positions, slot_idx, kv_len, full_view))

    # ---- scheduling ---------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        """The new tokens of each request (stop token included), in request order."""
        for r in requests:
            if len(r.prompt_ids) == 0:
                raise ValueError("empty prompt")
            if len(r.prompt_ids) + r.max_new_tokens > self.max_len:
                raise ValueError(
                    f"prompt {len(r.prompt_ids)} + max_new_tokens {r.max_new_tokens} "
                    f"exceeds the cache length {self.max_len}"
                )
        results: list[list[int]] = [[] for _ in requests]
        waiting = deque(enumerate(requests))
        free = list(range(self.slots - 1, -1, -1))
        active: list[_Slot] = []
        while waiting or active:
            while waiting and free:
                req_id, req = waiting.popleft()
                slot = self._prefill(free.pop(), req_id, req)
                if self._finished(slot):
                    results[req_id] = slot.out
                    free.append(slot.index)
                else:
                    active.append(slot)
            if not active:
                continue
            self._step(active)
            still: list[_Slot] = []
            for slot in active:
                if self._finished(slot):
                    results[slot.req_id] = slot.out
                    free.append(slot.index)
                else:
                    still.append(slot)
            active = still
        return results

    def _prefill(self, index: int, req_id: int, req: Request) -> _Slot:
        gen = None
        if not req.greedy:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(req.seed if req.seed is not None else 0)
        slot = _Slot(index, req_id, req, len(req.prompt_ids), gen)
        n = len(req.prompt_ids)
        tokens = torch.tensor([list(req.prompt_ids)], device=self.device)
        positions = torch.arange(n, device=self.device)[None]
        slot_idx = torch.tensor([index], device=self.device)
        hidden = self._forward(tokens, positions, slot_idx, n, full_view=False)
        logits = self.lm_head(hidden)
        self.stats.prefill_tokens += n
        slot.out.append(self._choose(logits, [slot])[0])
        return slot

    def _step(self, active: list[_Slot]) -> None:
        tokens = torch.tensor([[s.out[-1]] for s in active], device=self.device)
        positions = torch.tensor([[s.pos] for s in active], device=self.device)
        slot_idx = torch.tensor([s.index for s in active], device=self.device)
        kv_len = max(s.pos for s in active) + 1
        full_view = len(active) == self.slots
        if full_view:  # rows in slot order, so that the cache view lines up with them
            order = sorted(range(len(active)), key=lambda j: active[j].index)
            active[:] = [active[j] for j in order]
            tokens, positions = tokens[order], positions[order]
            slot_idx = slot_idx[order]
        logits = self._decode(tokens, positions, slot_idx, kv_len, full_view)
        self.stats.decode_steps += 1
        self.stats.active_per_step.append(len(active))
        self.stats.live_kv_positions.append(sum(s.pos + 1 for s in active))
        chosen = self._choose(logits, active)
        for s, tok in zip(active, chosen, strict=True):
            s.pos += 1
            s.out.append(tok)

    def _choose(self, logits: torch.Tensor, slots: list[_Slot]) -> list[int]:
        logits = logits.float()
        greedy = logits.argmax(dim=-1).tolist()
        out: list[int] = []
        for row, s in enumerate(slots):
            if s.req.greedy:
                out.append(int(greedy[row]))
            else:
                out.append(_sample(logits[row], s.req, s.generator))
        self.stats.generated_tokens += len(slots)
        return out

    @staticmethod
    def _finished(slot: _Slot) -> bool:
        if slot.out and slot.out[-1] in slot.req.stop_token_ids:
            return True
        return len(slot.out) >= slot.req.max_new_tokens


def _rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)

    def rot(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def _sample(logits: torch.Tensor, req: Request, gen: torch.Generator | None) -> int:
    """One token from `logits` [vocab]: temperature, top-k, top-p (transformers' order)."""
    scores = logits / req.temperature
    if req.top_k and req.top_k < scores.shape[-1]:
        kth = torch.topk(scores, req.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if req.top_p < 1.0:
        sorted_scores, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - req.top_p)
        remove[-1] = False  # keep at least one
        scores = scores.masked_fill(remove.scatter(0, sorted_idx, remove), -math.inf)
    probs = scores.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen).item())
