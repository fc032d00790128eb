"""The engine's paged KV cache and the attention function a transformers model calls with it.

Keys and values of every layer live in one pool per layer, `[1, kv_heads, pages * page_size,
head_dim]`; a slot (one running sequence) owns a list of pages, written in its row of the page
table. Page 0 is the trash page: the inactive slots of a fixed-shape decode step and the padding
of a prefill batch write there and nothing reads it.

The model runs its own modules (embedding, norms, projections, rotary embedding with each row's
own positions, MLP, head, Gemma's scalings) and calls `paged_attention` through transformers'
attention interface (registered as `ptb_paged`); the batch's layout reaches it as the `ptb_kv`
keyword. Two kernels: `dense` gathers each row's pages and runs scaled-dot-product attention
under an explicit causal (and sliding-window) mask: any device, used for prefill and on CPU;
`flex` reads the pages in place with flex attention and a block mask that lists each row's pages,
so a decode step reads only the live positions: CUDA, inside the compiled decode step.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

ATTN_NAME = "ptb_paged"
TRASH_PAGE = 0
# the query block of a decode step's mask: one query, but CUDA's flex decoding kernel only takes
# a block size that is a multiple of its own query tile (16 rows) and refuses every
# configuration otherwise ("NoValidChoicesError", found on the H100)
DECODE_Q_BLOCK = 128


def upload(values: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Host values on `device` without waiting for the device: a copy from ordinary host memory
    waits for every kernel queued before it, so the host could never run ahead of the GPU. On
    CUDA the values go through pinned memory (its allocator keeps the block until the copy has
    run, so the caller may change its own copy at once)."""
    host = torch.as_tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def upload_into(target: torch.Tensor, host: torch.Tensor) -> None:
    """`target` takes the values `host` has now, as `upload` moves them: one copy into a tensor
    that must keep its address (compiled graphs read it), the host free to change `host` next."""
    if target.device.type != "cuda":
        target.copy_(host)
    else:
        target.copy_(host.pin_memory(), non_blocking=True)


class PagePool:
    """Pages of keys and values for `slots` sequences; host-side allocation, device-side tables.

    Full pages of a prompt are published under the hash of every token up to their end, so a
    later prompt that starts with the same tokens (GSM8K's ten shots, a benchmark's system
    prompt, a preempted sequence coming back) shares them instead of computing and storing them
    again. A page is shared read-only: writes only go to positions past a sequence's context,
    which lie in its own pages. A published page nobody holds stays cached until its room is
    needed, the least recently released first."""

    def __init__(
        self,
        *,
        layers: int,
        kv_heads: int,
        head_dim: int,
        pages: int,
        page_size: int,
        slots: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        if pages < 2:
            raise ValueError("a page pool needs at least 2 pages (one is the trash page)")
        self.page_size = page_size
        self.pages = pages
        self.slots = slots
        self.max_len = max_len
        self.max_pages = math.ceil(max_len / page_size)
        shape = (1, kv_heads, pages * page_size, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.device = device
        # host copies, pushed to the device tensors once per step when changed
        self._table = torch.zeros((slots, self.max_pages), dtype=torch.int32)
        self._logical = torch.zeros((pages,), dtype=torch.int32)
        self.table = self._table.to(device)
        self.logical = self._logical.to(device)
        self._dirty = False
        self.free: list[int] = list(range(pages - 1, TRASH_PAGE, -1))
        self.owned: list[list[int]] = [[] for _ in range(slots)]
        self._refs = [0] * pages
        self._key: dict[int, bytes] = {}  # published page -> key
        self._index: dict[bytes, int] = {}  # key -> published page
        self._cached: OrderedDict[int, None] = OrderedDict()  # published pages nobody holds

    @property
    def free_pages(self) -> int:
        """Pages a sequence can take now: free ones and cached ones nobody holds."""
        return len(self.free) + len(self._cached)

    @property
    def held_pages(self) -> int:
        """Pages some sequence holds (a shared page counts once)."""
        return self.pages - 1 - self.free_pages

    def pages_for(self, length: int) -> int:
        return math.ceil(length / self.page_size)

    def keys(self, tokens: Sequence[int]) -> list[bytes]:
        """The key of each full page of `tokens`: a hash of every token up to the page's end."""
        keys: list[bytes] = []
        previous = b""
        size = self.page_size
        for j in range(len(tokens) // size):
            chunk = array("q", tokens[j * size : (j + 1) * size]).tobytes()
            previous = hashlib.blake2b(previous + chunk, digest_size=16).digest()
            keys.append(previous)
        return keys

    def lookup(self, tokens: Sequence[int]) -> list[int]:
        """Published pages holding the longest shared start of `tokens`, leaving at least the
        last token to compute (its logits start the generation)."""
        found: list[int] = []
        for key in self.keys(tokens[: max(0, len(tokens) - 1)]):
            page = self._index.get(key)
            if page is None:
                break
            found.append(page)
        return found

    def cached_among(self, pages: Sequence[int]) -> int:
        """How many of `pages` nobody holds (taking them uses up free room)."""
        return sum(1 for p in pages if p in self._cached)

    def share(self, slot: int, pages: Sequence[int]) -> None:
        """An empty `slot` starts with the published `pages` (from `lookup`)."""
        if self.owned[slot]:
            raise RuntimeError("shared pages can only start a sequence")
        for j, page in enumerate(pages):
            self._refs[page] += 1
            self._cached.pop(page, None)
            self.owned[slot].append(page)
            self._table[slot, j] = page
        self._dirty = self._dirty or bool(pages)

    def publish(self, slot: int, tokens: Sequence[int]) -> None:
        """Offer the full pages of `slot`, which holds `tokens` from position 0, for sharing."""
        for page, key in zip(self.owned[slot], self.keys(tokens), strict=False):
            if page not in self._key and key not in self._index:
                self._key[page] = key
                self._index[key] = page

    def _take(self) -> int:
        if self.free:
            return self.free.pop()
        page, _ = self._cached.popitem(last=False)  # the least recently released
        del self._index[self._key.pop(page)]
        return page

    def ensure(self, slot: int, length: int) -> bool:
        """Pages for positions [0, length) of `slot`; False (nothing taken) when too few free."""
        need = self.pages_for(length) - len(self.owned[slot])
        if need <= 0:
            return True
        if need > self.free_pages:
            return False
        for _ in range(need):
            page = self._take()
            j = len(self.owned[slot])
            self.owned[slot].append(page)
            self._refs[page] = 1
            self._table[slot, j] = page
            self._logical[page] = j
        self._dirty = True
        return True

    def release(self, slot: int) -> None:
        for page in self.owned[slot]:
            self._refs[page] -= 1
            if self._refs[page] == 0:
                if page in self._key:
                    self._cached[page] = None
                else:
                    self.free.append(page)
        self.owned[slot] = []
        self._table[slot] = TRASH_PAGE
        self._dirty = True

    def close(self) -> None:
        """Drop the device tensors (the engine's `close`); the pool serves nothing after."""
        self.k, self.v = [], []
        self.table = self.logical = self._table = self._logical = torch.zeros(0, dtype=torch.int32)
        self.free, self._cached = [], OrderedDict()

    def sync(self) -> None:
        """Push the host tables to the device (in place: compiled graphs keep their addresses)."""
        if self._dirty:
            upload_into(self.table, self._table)
            upload_into(self.logical, self._logical)
            self._dirty = False

    def physical(self, slots: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Pool index of each (slot, logical position): [B, T] on the device."""
        page = self.table[slots[:, None], positions // self.page_size]
        return page.long() * self.page_size + positions % self.page_size

    def trash(self, count: int) -> torch.Tensor:
        return (
            torch.arange(count, device=self.device) % self.page_size + TRASH_PAGE * self.page_size
        )


@dataclass
class Batch:
    """What one forward pass writes and reads: reaches `paged_attention` as `ptb_kv`."""

    pool: PagePool
    write_at: torch.Tensor  # [B, T] pool index of each new token (padding: the trash page)
    positions: torch.Tensor  # [B, T] logical position of each query
    slots: torch.Tensor  # [B] slot of each row
    kv_len: int  # dense: logical positions gathered per row
    block_masks: dict[int | None, Any] = field(default_factory=dict)  # flex: by sliding window
    flex_options: dict[str, Any] | None = None  # the flex kernel's, e.g. {"SPLIT_KV": 4}

    def gather_index(self) -> torch.Tensor:
        logical = torch.arange(self.kv_len, device=self.positions.device)
        return self.pool.physical(self.slots, logical[None].expand(len(self.slots), -1))

    def dense_mask(self, window: int | None) -> torch.Tensor:
        j = torch.arange(self.kv_len, device=self.positions.device)[None, None, :]
        p = self.positions[:, :, None]
        mask = j <= p
        if window is not None:
            mask &= j > p - window
        return mask[:, None]  # [B, 1, T, kv_len]


def paged_attention(
    module: Any,
    query: torch.Tensor,  # [B, H, T, d]
    key: torch.Tensor,  # [B, KV, T, d]
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    ptb_kv: Batch | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    if ptb_kv is None:
        raise RuntimeError("ptb_paged attention called without the engine's batch (ptb_kv)")
    batch = ptb_kv
    layer = int(module.layer_idx)
    k_pool, v_pool = batch.pool.k[layer], batch.pool.v[layer]
    index = batch.write_at.reshape(-1)
    n_kv, d = key.shape[1], key.shape[3]
    # written through the pool tensor itself: the compiler copies a whole tensor to write
    # into a view of it (a full pool copy per layer and step, found on the H100)
    k_pool.index_copy_(2, index, key.transpose(0, 1).reshape(1, n_kv, -1, d))
    v_pool.index_copy_(2, index, value.transpose(0, 1).reshape(1, n_kv, -1, d))
    if batch.block_masks:
        from torch.nn.attention.flex_attention import flex_attention

        score_mod = None
        if softcap:
            cap = float(softcap)

            def score_mod(score: Any, b: Any, h: Any, q: Any, kv: Any) -> Any:
                return cap * torch.tanh(score / cap)

        out = flex_attention(
            query,
            k_pool,
            v_pool,
            score_mod=score_mod,
            block_mask=batch.block_masks[sliding_window],
            scale=scaling,
            enable_gqa=True,
            kernel_options=batch.flex_options,  # type: ignore[arg-type]
        )
    else:
        gather = batch.gather_index()  # [B, L]
        keys = k_pool[0][:, gather].transpose(0, 1)  # [B, KV, L, d]
        values = v_pool[0][:, gather].transpose(0, 1)
        mask = batch.dense_mask(sliding_window)
        if softcap:
            out = _softcapped(query, keys, values, mask, scaling, float(softcap))
        else:
            out = F.scaled_dot_product_attention(
                query, keys, values, attn_mask=mask, scale=scaling, enable_gqa=True
            )
    return out.transpose(1, 2).contiguous(), None


def _softcapped(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scaling: float | None,
    cap: float,
) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = cap * torch.tanh(scores / cap)
    scores = scores.masked_fill(~mask, -math.inf)
    return scores.softmax(dim=-1).to(v.dtype) @ v


def decode_block_masks(
    pool: PagePool, positions: torch.Tensor, windows: set[int | None], full_blocks: bool = False
) -> dict[int | None, Any]:
    """Flex block masks of a one-token decode step, one per sliding window: row b reads the
    pages of its slot (row b is slot b) up to its position, from the window's first page.
    With `full_blocks` the pages a row sees whole are listed as full (the kernel skips the mask
    there; flex decoding then splits no row's list): all but the last, and a window's first."""
    from torch.nn.attention.flex_attention import BlockMask

    size = pool.page_size
    slots = positions.shape[0]
    logical, table = pool.logical, pool.table
    cols = torch.arange(pool.pages, device=positions.device)
    last = positions // size  # [S]

    def from_page(start: torch.Tensor) -> torch.Tensor:  # each row's logical pages from start on
        return (start[:, None] + cols[None, :]).clamp(max=pool.max_pages - 1)

    masks: dict[int | None, Any] = {}
    for window in windows:
        first = torch.zeros_like(last) if window is None else (positions - window + 1).clamp(min=0)
        first_page = first // size
        full: dict[str, torch.Tensor] = {}
        if full_blocks:  # partial: the last page, and a window's first; full: the rest
            edge = int(window is not None)
            inner = first_page + edge
            full["full_kv_num_blocks"] = (last - inner).clamp(min=0).to(torch.int32).view(-1, 1, 1)
            listed = table.gather(1, from_page(inner)).to(torch.int32)
            full["full_kv_indices"] = listed.view(slots, 1, 1, -1)
            num = (1 + edge * (last > first_page)).to(torch.int32)
            # as wide as the unsplit list: the kernel takes the pool's length from it
            col = last[:, None].expand(-1, pool.pages)
            if edge:
                col = torch.cat([first_page[:, None], col[:, 1:]], 1)
        else:
            num = (last - first_page + 1).to(torch.int32)
            col = from_page(first_page)
        indices = table.gather(1, col).to(torch.int32)  # [S, pages]

        # the block list holds only row b's pages (some shared with other rows, at the same
        # logical place): the mask keeps the positions up to the row's own, and says itself
        # which pages are the row's (eager flex attention reads the mask alone, not the lists)
        def mask_mod(b: Any, h: Any, q: Any, kv: Any, window: int | None = window) -> Any:
            page = kv // size
            pos = logical[page] * size + kv % size
            ok = (pos <= positions[b]) & (table[b, logical[page]] == page)
            if window is not None:
                ok = ok & (pos > positions[b] - window)
            return ok

        masks[window] = BlockMask.from_kv_blocks(
            num.view(slots, 1, 1),
            indices.view(slots, 1, 1, -1),
            **full,
            BLOCK_SIZE=(DECODE_Q_BLOCK, size),
            mask_mod=mask_mod,
            seq_lengths=(1, pool.pages * size),
            compute_q_blocks=False,  # the transposed lists serve only a backward pass
        )
    return masks


def register() -> None:
    """Make `ptb_paged` an attention implementation transformers models can be set to."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, paged_attention)
    # the engine builds its own masks: the model's mask builder returns nothing
    AttentionMaskInterface.register(ATTN_NAME, _no_mask)


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None
