"""Next tokens for a batch of rows, each with its own decoding rule and seed.

Greedy rows take the argmax. Sampling rows apply, in transformers' order, the repetition penalty
(over prompt and output tokens, as vLLM), temperature, top-k, top-p and min-p, then draw by the
Gumbel-max trick with noise from a counter-based hash of (request seed, token index, vocabulary
id): a request's draw depends on nothing else in the batch, and a request preempted and resumed
draws the same tokens. One vectorised pass for the whole batch, no per-row generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9 as int64 (splitmix64)
_M2 = -7723592293110705685  # 0x94D049BB133111EB
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 (wrapping products, logical shifts by masking)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _M1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _M2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def uniform_at(seeds: torch.Tensor, steps: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1) for the vocabulary ids `ids` ([B, n]) of each row: a pure function of
    (seed, step, vocabulary id)."""
    key = _mix(_mix(seeds.long() * _GOLDEN + 1) + steps.long())  # [B]
    bits = _mix(key[:, None] + ids.long() * _GOLDEN)
    return (((bits >> 40) & 0xFFFFFF).float() + 0.5) / float(1 << 24)


@dataclass
class Rules:
    """Per-row decoding rules as device tensors ([B] each)."""

    greedy: torch.Tensor  # bool
    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor  # long, 0: off
    min_p: torch.Tensor
    repetition_penalty: torch.Tensor
    seed: torch.Tensor  # long

    def rows(self, index: torch.Tensor) -> Rules:
        """The rules of the rows `index` only."""
        return Rules(**{name: getattr(self, name).index_select(0, index) for name in _RULES})

    @property
    def penalised(self) -> bool:
        return bool((self.repetition_penalty != 1.0).any())


_RULES = tuple(Rules.__dataclass_fields__)


@dataclass(frozen=True)
class Plan:
    """What the batch's rules need, known on the host: choosing then never waits on the GPU
    to decide how to choose."""

    all_greedy: bool
    top_k: int  # > 0: every sampling row keeps at most this many tokens; 0: rank the vocabulary

    @classmethod
    def of(cls, greedy: Sequence[bool], top_k: Sequence[int], vocab: int) -> Plan:
        ks = [k for g, k in zip(greedy, top_k, strict=True) if not g]
        width = max(ks) if ks and min(ks) > 0 and max(ks) < vocab else 0
        return cls(all(greedy), width)

    @classmethod
    def from_rules(cls, rules: Rules, vocab: int) -> Plan:
        return cls.of(rules.greedy.tolist(), rules.top_k.tolist(), vocab)


def choose(
    logits: torch.Tensor,  # [B, V] float32
    rules: Rules,
    steps: torch.Tensor,  # [B] index of the token being drawn in its request's output
    seen: torch.Tensor | None = None,  # [B, V] bool: tokens in prompt or output
    plan: Plan | None = None,
) -> torch.Tensor:
    """The next token of every row: [B] long."""
    vocab = logits.shape[-1]
    plan = plan or Plan.from_rules(rules, vocab)
    best = logits.argmax(dim=-1)
    if plan.all_greedy:
        return best
    scores = logits
    if seen is not None:
        pen = rules.repetition_penalty[:, None]
        scores = torch.where(seen, torch.where(scores > 0, scores / pen, scores * pen), scores)
    scores = scores / rules.temperature.clamp(min=1e-6)[:, None]
    if plan.top_k:
        # every sampling row keeps at most k tokens: rank only the k best (same draws: the
        # noise belongs to the vocabulary id, not to where the token was ranked)
        sorted_scores, order = scores.topk(plan.top_k, dim=-1)
    else:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
    width = sorted_scores.shape[-1]
    rank = torch.arange(width, device=scores.device)[None, :]
    k = torch.where(rules.top_k > 0, rules.top_k.clamp(max=vocab), vocab)[:, None]
    drop = rank >= k
    sorted_scores = sorted_scores.masked_fill(drop, -torch.inf)
    probs = sorted_scores.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the better tokens
    drop |= (before >= rules.top_p[:, None]) & (rank > 0)
    drop |= (probs < rules.min_p[:, None] * probs[:, :1]) & (rank > 0)
    sorted_scores = sorted_scores.masked_fill(drop, -torch.inf)
    noise = uniform_at(rules.seed, steps, order)
    drawn = order.gather(1, (sorted_scores - torch.log(-torch.log(noise))).argmax(dim=-1)[:, None])
    return torch.where(rules.greedy, best, drawn[:, 0])
