"""A continuous-batching generation engine over a transformers causal LM.

Sequences run in `slots`; their keys and values live in a paged pool (evaluate/paged_kv.py) whose
size comes from free GPU memory, so memory follows the live lengths rather than the longest
possible one. Waiting prompts are prefilled in batches (left-padded, long prompts in chunks) into
free slots; then one decode step advances every slot by a token. The host reads a step's tokens
while the next step runs (one step in flight: its bookkeeping overlaps the device's work). A
sequence that reaches a stop token, a stop string, its `max_new_tokens` or the cache length
leaves then (the step already in flight computed one token more for it, which is dropped) and
the next waiting prompt takes its slot (no padding to the longest output). When the pool runs
dry the youngest sequence is preempted and later resumed from its tokens.

The model runs its own modules with the `ptb_paged` attention, so any transformers decoder that
uses the attention interface and takes per-row `position_ids` runs (Qwen3, Llama, Gemma 3 with
its sliding-window layers); `supports` names what it refuses. On CUDA the decode step has fixed
shapes (every slot, inactive ones writing to the trash page) and is compiled with CUDA graphs
around flex attention; on CPU it runs eagerly with gathered pages, for the running slots only.
Greedy output of a request does not depend on the rest of the batch and in fp32 equals
`model.generate`; sampled tokens are drawn by evaluate/sampler.py from the request's seed.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch

from posttrainbench.evaluate import paged_kv, sampler
from posttrainbench.evaluate.paged_kv import Batch, PagePool

PAGE_SIZE_CUDA = 128
PAGE_SIZE_CPU = 16
PREFILL_TOKENS = 8192  # tokens (padding included) per prefill forward pass
# the flex decode kernel's options by default (benchmarks/flex_sweep.py, H100, torch 2.11):
# torch leaves its loads unpipelined there (one stage); three stages and the inner pages listed
# as full (full_blocks) took GSM8K-shaped decoding from 7.0k to 11.1k tokens/s, and no batch
# shape slower, for Qwen3's and Gemma 3's heads. SPLIT_KV was slower on every shape.
FLEX_OPTIONS = {"num_stages": 3}


@dataclass(frozen=True)
class Request:
    """One generation: prompt token ids, its length limit, stops and decoding rule."""

    prompt_ids: Sequence[int]
    max_new_tokens: int
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Completion:
    tokens: list[int]
    stop_reason: str  # "stop" (token or string) or "length"


@dataclass
class Trace:
    """A request's tokens and the logits each was chosen from ([tokens, vocab], on CPU)."""

    tokens: list[int]
    logits: torch.Tensor


@dataclass
class EngineStats:
    """What a run did: steps, tokens and the live KV positions per decode step (a step's
    figures count every sequence it ran, one whose token was dropped too)."""

    prefill_tokens: int = 0
    shared_tokens: int = 0  # context tokens found in published pages, not computed again
    prefill_passes: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    preemptions: int = 0
    live_kv_positions: list[int] = field(default_factory=list)  # summed over active slots
    held_pages: list[int] = field(default_factory=list)  # distinct pages they hold
    active_per_step: list[int] = field(default_factory=list)


# decoder families whose attention goes through transformers' interface with per-row positions
SUPPORTED_TYPES = (
    "gemma3",
    "gemma3_text",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "smollm3",
)


def supports(model: Any) -> str | None:
    """None when the engine can run `model`, otherwise the reason it cannot."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "forward"):
        return "not a transformers model"
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if not getattr(model, "_supports_attention_backend", False):
        return f"{type(model).__name__} does not take a custom attention implementation"
    text = getattr(config, "text_config", None) or config
    kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
    if kinds - {"full_attention", "sliding_attention"}:
        return f"layer types {sorted(kinds)} are not supported"
    return None


class _Seq:
    __slots__ = ("out", "pos", "req", "req_id", "shared", "slot")

    def __init__(self, req_id: int, req: Request, out: list[int]) -> None:
        self.req_id = req_id
        self.req = req
        self.out = out  # generated so far
        self.slot = -1
        self.pos = 0  # tokens in the cache
        self.shared = 0  # leading context tokens in published pages when admitted

    def context(self) -> list[int]:
        """Tokens to prefill: the prompt and, when resumed, what it had generated."""
        return [*self.req.prompt_ids, *self.out]


@dataclass
class _Choosing:
    """How the running sequences' tokens are chosen, until one joins or leaves."""

    plan: sampler.Plan
    penalised: bool
    rows: torch.Tensor | None  # the running slots, where fewer run than there are slots
    rules: sampler.Rules  # of `rows`, or of every slot


@dataclass
class _Launched:
    """A decode step in flight: who ran in which slot, and where its tokens arrive."""

    rows: list[tuple[_Seq, int]]  # (sequence, its slot) when launched
    tokens: torch.Tensor  # [slots] on the host (pinned on CUDA, filled asynchronously)
    ready: torch.cuda.Event | None

    def read(self) -> list[int]:
        if self.ready is not None:
            self.ready.synchronize()
        return self.tokens.tolist()


class Engine:
    """Continuous batching over `slots` sequences and a paged pool of `pages` pages."""

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        max_len: int,
        pages: int | None = None,
        memory_fraction: float = 0.85,
        compile_decode: bool | None = None,
        share_prefixes: bool = True,
        admit_batch: int | None = None,
        steps_ahead: int = 1,
        tokenizer: Any = None,
        page_size: int | None = None,
        flex_options: dict[str, Any] | None = None,
        full_blocks: bool = True,
    ) -> None:
        reason = supports(model)
        if reason:
            raise ValueError(f"engine cannot run this model: {reason}")
        if steps_ahead not in (0, 1):
            # one step in flight keeps every write inside the cache: a running sequence has at
            # least one position left, which the step after its last token writes
            raise ValueError(f"steps_ahead is 0 or 1, not {steps_ahead}")
        paged_kv.register()
        self.model = model.eval()
        self._configs = list({id(c): c for c in _configs(model)}.values())
        # inference only: flex attention under the compiler refuses inputs that need a gradient
        for p in model.parameters():
            p.requires_grad_(False)
        self._read_shape(model)
        self.slots = slots
        self.max_len = max_len
        self.tokenizer = tokenizer
        self.share_prefixes = share_prefixes
        # the compiled step's flex decode kernel options: None takes FLEX_OPTIONS, {} torch's
        options = FLEX_OPTIONS if flex_options is None else flex_options
        self.flex_options = dict(options) or None
        # the decode mask lists the pages inside a row's window as full: no mask computed there
        self.full_blocks = full_blocks
        # while sequences run, waiting prompts are admitted once this many slots are free (or
        # every waiting prompt fits): a prefill pass is one eager forward whatever its size
        self.admit_batch = max(1, slots // 8) if admit_batch is None else max(1, admit_batch)
        cuda = self.device.type == "cuda"
        self.pool = self._make_pool(pages, memory_fraction, page_size)
        self.stats = EngineStats()
        self._make_slot_state()
        self._plan: _Choosing | None = None  # of the active sequences
        # decode steps launched before the host reads their tokens: the host's bookkeeping of
        # step n (stops, finished sequences) runs while the device computes step n+1, which a
        # sequence ending at step n also runs (its extra token is dropped, never recorded)
        self.ahead = steps_ahead
        self._launched: deque[_Launched] = deque()
        self._launches = 0
        # where a step's tokens land on the host (CUDA; on CPU they are there already)
        self._host_tokens = (
            [torch.zeros(slots, dtype=torch.long, pin_memory=True) for _ in range(self.ahead + 1)]
            if cuda
            else []
        )
        self._vacated: list[int] = []  # slots left since the device state was last told
        # compiled: flex attention on the pages, CUDA graphs on a GPU (CPU: for tests only)
        self.compiled = cuda if compile_decode is None else compile_decode
        self._decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
            self._compiled_decode() if self.compiled else self._decode_dense
        )
        self._compiled_once = False
        self.on_compile_failure: Callable[[str], None] = lambda reason: None
        self._seen: torch.Tensor | None = None  # [slots, vocab] for the repetition penalty
        self._trace: list[torch.Tensor] | None = None
        self._waiting: deque[_Seq] = deque()
        self._active: dict[int, _Seq] = {}  # slot -> sequence
        self._free = list(range(slots - 1, -1, -1))
        self._done: dict[int, Completion] = {}
        self.closed = False

    def _read_shape(self, model: Any) -> None:
        """What the pool and the step need of the model: layers, KV heads, head size, sliding
        windows, device, dtype, vocabulary."""
        text = getattr(model.config, "text_config", None) or model.config
        self.layers = int(text.num_hidden_layers)
        self.kv_heads = int(text.num_key_value_heads)
        self.head_dim = int(
            getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        )
        self.windows: set[int | None] = set()
        for kind in getattr(text, "layer_types", None) or ["full_attention"]:
            self.windows.add(int(text.sliding_window) if kind == "sliding_attention" else None)
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        self.vocab = int(model.get_output_embeddings().weight.shape[0])

    def close(self) -> None:
        """Give the memory back now, not when the garbage collector finds the engine (its decode
        step is a method of its own, a cycle `del` leaves standing): the KV pool, the slot state
        and the compiled step, then on CUDA the allocator's cache. Requests in it are dropped;
        it takes no more. CUDA graph trees keep their private pool (the last step's logits and
        activations) until `torch._dynamo.reset()`, which is process-wide, so left to the caller."""
        self.closed = True
        self._waiting.clear()
        self._active.clear()
        self._launched.clear()
        self._done.clear()
        self.pool.close()
        self._decode = _refuse_closed
        self._seen = None
        self._trace = None
        self._host_tokens = []
        self._make_slot_state(0)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _make_slot_state(self, slots: int | None = None) -> None:
        """Each slot's state on the device, so a decode step needs nothing built by the host."""
        slots, dev = self.slots if slots is None else slots, self.device
        self._tok = torch.zeros(slots, dtype=torch.long, device=dev)  # last token
        self._pos = torch.zeros(slots, dtype=torch.long, device=dev)  # its position
        self._made = torch.zeros(slots, dtype=torch.long, device=dev)  # tokens generated
        self._live = torch.zeros(slots, dtype=torch.long, device=dev)  # 1: a sequence runs
        self._slot_rules = sampler.Rules(
            greedy=torch.ones(slots, dtype=torch.bool, device=dev),
            temperature=torch.zeros(slots, device=dev),
            top_p=torch.ones(slots, device=dev),
            top_k=torch.zeros(slots, dtype=torch.long, device=dev),
            min_p=torch.zeros(slots, device=dev),
            repetition_penalty=torch.ones(slots, device=dev),
            seed=torch.zeros(slots, dtype=torch.long, device=dev),
        )

    def _make_pool(self, pages: int | None, memory_fraction: float, page: int | None) -> PagePool:
        cuda = self.device.type == "cuda"
        page = page or (PAGE_SIZE_CUDA if cuda else PAGE_SIZE_CPU)
        if pages is None:
            pages = self._pages_from_memory(page, memory_fraction)
            if not cuda:  # every slot can hold max_len, where the memory allows
                pages = min(pages, self.slots * math.ceil(self.max_len / page) + 1)
            # a layer's pool indexes in 32 bits: a tiny model's pool from a GPU's memory passed
            # 2**31 elements, and torch 2.11's flex decode kernel failed to compile (int64)
            pages = min(pages, (2**31 - 1) // (self.kv_heads * page * self.head_dim))
        return PagePool(
            layers=self.layers,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            pages=pages,
            page_size=page,
            slots=self.slots,
            max_len=self.max_len,
            dtype=self.dtype,
            device=self.device,
        )

    def _compiled_decode(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        for t in (*self.pool.k, *self.pool.v, self.pool.table, self.pool.logical):
            torch._dynamo.mark_static_address(t)
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        # one whole graph or none: a graph break would leave flex attention eager, which
        # scores every position of the pool
        compiled: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.compile(
            self._decode_flex, mode=mode, dynamic=False, fullgraph=True
        )
        return compiled

    def _pages_from_memory(self, page: int, fraction: float) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
        else:
            free = host_memory_free()
        per_page = 2 * self.layers * self.kv_heads * self.head_dim * page * self.dtype.itemsize
        # room for activations and logits of a prefill pass and a decode step
        reserve = 2 * PREFILL_TOKENS * self.vocab * 4 // 8 + 2 * self.slots * self.vocab * 4
        return max(2, int((free * fraction - reserve) // per_page))

    # ---- forward passes ----------------------------------------------------------------

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, batch: Batch) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=1,
            ptb_kv=batch,
        )
        return out.logits[:, -1].float()

    def _decode_dense(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The eager step (CPU, or where compiling failed): only the running slots' rows are
        computed, the idle ones' logits are zeros (their draws are never read)."""
        slots = paged_kv.upload(sorted(self._active), self.device, torch.long)
        ids, positions = ids[slots], positions[slots]
        write = self.pool.physical(slots, positions)
        batch = Batch(self.pool, write, positions, slots, int(positions.max()) + 1)
        logits = torch.zeros((self.slots, self.vocab), device=self.device)
        logits[slots] = self._forward(ids, positions, batch)
        return logits

    def _decode_flex(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        slots = torch.arange(self.slots, device=self.device)
        pos = positions[:, 0]
        write = self.pool.physical(slots, positions)  # inactive slots: table row is trash
        masks = paged_kv.decode_block_masks(self.pool, pos, self.windows, self.full_blocks)
        batch = Batch(self.pool, write, positions, slots, 0, masks, self.flex_options)
        return self._forward(ids, positions, batch)

    # ---- scheduling --------------------------------------------------------------------

    def submit(self, req_id: int, req: Request) -> None:
        if self.closed:
            _refuse_closed()
        if len(req.prompt_ids) == 0:
            raise ValueError("empty prompt")
        if len(req.prompt_ids) >= self.max_len:
            raise ValueError(f"prompt of {len(req.prompt_ids)} tokens >= cache {self.max_len}")
        if self.pool.pages_for(len(req.prompt_ids) + 1) > self.pool.pages - 1:
            raise ValueError(
                f"prompt of {len(req.prompt_ids)} tokens does not fit the KV pool "
                f"({self.pool.pages - 1} pages of {self.pool.page_size})"
            )
        self._waiting.append(_Seq(req_id, req, []))

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._active)

    def take_done(self) -> dict[int, Completion]:
        done, self._done = self._done, {}
        return done

    @torch.no_grad()
    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        """The new tokens of each request (stop token included), in request order."""
        return [c.tokens for c in self.complete(requests)]

    @torch.no_grad()
    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        for i, r in enumerate(requests):
            self.submit(i, r)
        results: dict[int, Completion] = {}
        while self.busy:
            self.iterate()
            results.update(self.take_done())
        return [results[i] for i in range(len(requests))]

    @contextmanager
    def attention(self) -> Iterator[None]:
        """The model (and a multimodal model's text part) on the engine's attention, for a
        while: the model stays usable as it was outside the engine."""
        before = [(c, c._attn_implementation) for c in self._configs]
        for c in self._configs:
            c._attn_implementation = paged_kv.ATTN_NAME
        try:
            yield
        finally:
            for c, value in before:
                c._attn_implementation = value

    @torch.no_grad()
    def logits_trace(self, req: Request) -> Trace:
        """Run `req` alone and keep the logits of every step (the engine's self-check)."""
        if self.busy:
            raise RuntimeError("logits_trace needs an idle engine")
        self._trace = []
        try:
            (done,) = self.complete([req])
        finally:
            rows, self._trace = self._trace, None
        return Trace(done.tokens, torch.cat(rows))

    @torch.no_grad()
    def iterate(self) -> None:
        """Admit and prefill what fits, then one decode step of every active sequence."""
        with self.attention():
            self._admit()
            if self._active:
                self._step()

    def _admit(self) -> None:
        if self._active and len(self._free) < min(len(self._waiting), self.admit_batch):
            return
        group: list[_Seq] = []
        width = 0
        while self._waiting and self._free:
            seq = self._waiting[0]
            context = seq.context()
            n = len(context)
            shared = self.pool.lookup(context) if self.share_prefixes else []
            # keep a page per running sequence in hand so decode rarely preempts
            spare = self.pool.free_pages - len(self._active) - len(group)
            spare -= self.pool.cached_among(shared)
            if self.pool.pages_for(n + 1) - len(shared) > spare:
                if not self._active and not group:
                    raise RuntimeError(
                        f"a prompt of {n} tokens does not fit the KV pool "
                        f"({self.pool.pages} pages of {self.pool.page_size})"
                    )
                break
            rest = min(n - len(shared) * self.pool.page_size, PREFILL_TOKENS)
            if group and max(width, rest) * (len(group) + 1) > PREFILL_TOKENS:
                break
            self._waiting.popleft()
            seq.slot = self._free.pop()
            self.pool.share(seq.slot, shared)
            seq.shared = len(shared) * self.pool.page_size
            self.stats.shared_tokens += seq.shared
            self.pool.ensure(seq.slot, n + 1)
            group.append(seq)
            width = max(width, rest)
        if group:
            self._prefill(group)

    def _prefill(self, group: list[_Seq]) -> None:
        self.pool.sync()
        contexts = [s.context() for s in group]
        done = [s.shared for s in group]
        logits: list[torch.Tensor | None] = [None] * len(group)
        while any(d < len(c) for d, c in zip(done, contexts, strict=True)):
            rows = [i for i, c in enumerate(contexts) if done[i] < len(c)]
            chunks = [contexts[i][done[i] : done[i] + PREFILL_TOKENS] for i in rows]
            width = max(len(c) for c in chunks)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            pos = torch.zeros((len(rows), width), dtype=torch.long)
            real = torch.zeros((len(rows), width), dtype=torch.bool)
            for r, (i, chunk) in enumerate(zip(rows, chunks, strict=True)):
                pad = width - len(chunk)
                ids[r, pad:] = torch.tensor(chunk)
                pos[r, pad:] = torch.arange(done[i], done[i] + len(chunk))
                real[r, pad:] = True
            ids, pos, real = (paged_kv.upload(t, self.device) for t in (ids, pos, real))
            slots = paged_kv.upload([group[i].slot for i in rows], self.device)
            trash = self.pool.trash(width)[None].expand(len(rows), -1)
            write = torch.where(real, self.pool.physical(slots, pos), trash)
            kv_len = max(done[i] + len(c) for i, c in zip(rows, chunks, strict=True))
            out = self._forward(ids, pos, Batch(self.pool, write, pos, slots, kv_len))
            self.stats.prefill_passes += 1
            for r, (i, chunk) in enumerate(zip(rows, chunks, strict=True)):
                done[i] += len(chunk)
                self.stats.prefill_tokens += len(chunk)
                if done[i] == len(contexts[i]):
                    logits[i] = out[r]
        for seq, ctx in zip(group, contexts, strict=True):
            seq.pos = len(ctx)
            if self.share_prefixes:
                self.pool.publish(seq.slot, ctx)
            self._active[seq.slot] = seq
            if self._penalised(seq.req):
                seen = self._seen_rows()
                seen[seq.slot] = False
                seen[seq.slot, paged_kv.upload(ctx, self.device)] = True
        rows_logits = torch.stack([x for x in logits if x is not None])
        self._append(group, rows_logits)
        self._load([s for s in group if s.slot >= 0])

    def _load(self, seqs: list[_Seq]) -> None:
        """The device state of newly admitted sequences' slots (one copy for all)."""
        if not seqs:
            return
        index = paged_kv.upload([s.slot for s in seqs], self.device)
        state = paged_kv.upload([[s.out[-1], s.pos, len(s.out), 1] for s in seqs], self.device)
        for t, column in zip((self._tok, self._pos, self._made, self._live), state.T, strict=True):
            t[index] = column
        rules = self._rules(seqs)
        for name in sampler.Rules.__dataclass_fields__:
            getattr(self._slot_rules, name)[index] = getattr(rules, name)
        self._plan = None

    def _flush_vacated(self) -> None:
        if self._vacated:
            index = paged_kv.upload(self._vacated, self.device)
            self._live[index] = 0
            self._pos[index] = 0  # an idle slot writes to the trash page's first positions
            self._vacated = []
            self._plan = None

    def _step(self) -> None:
        self._grow_or_preempt()
        if not self._active:  # reading the step in flight for room ended every sequence
            return
        self._flush_vacated()
        self.pool.sync()
        logits = self._run_decode(self._tok[:, None], self._pos[:, None])
        seqs = list(self._active.values())
        self.stats.decode_steps += 1
        self.stats.active_per_step.append(len(seqs))
        self.stats.live_kv_positions.append(sum(s.pos + 1 for s in seqs))
        self.stats.held_pages.append(self.pool.held_pages)
        for s in seqs:
            s.pos += 1
        if self._trace is not None:
            index = torch.tensor([s.slot for s in seqs], device=self.device)
            self._trace.append(logits.index_select(0, index).float().cpu())
        if self._plan is None:
            self._plan = self._choosing(seqs)
        seen = self._seen if self._plan.penalised else None
        chosen = self._choose(logits, self._plan, seen)
        self._tok.copy_(chosen)
        self._pos += self._live
        self._made += self._live
        if seen is not None:
            seen[torch.arange(self.slots, device=self.device), chosen] = True
        self._launched.append(self._launch_record(seqs, chosen))
        # tracing keeps no step in flight: every traced row belongs to a recorded token
        self._settle_until(0 if self._trace is not None else self.ahead)

    def _choosing(self, seqs: list[_Seq]) -> _Choosing:
        reqs = [s.req for s in seqs]
        plan = sampler.Plan.of([r.greedy for r in reqs], [r.top_k for r in reqs], self.vocab)
        penalised = any(self._penalised(r) for r in reqs)
        if plan.all_greedy or len(seqs) == self.slots:  # an argmax per row costs next to nothing
            return _Choosing(plan, penalised, None, self._slot_rules)
        # sampling ranks each row's vocabulary: only the running rows (a batch's tail runs a
        # few of 256 slots, where ranking them all took ~0.8 ms of a 6.4 ms step on the H100)
        rows = paged_kv.upload(sorted(s.slot for s in seqs), self.device, torch.long)
        return _Choosing(plan, penalised, rows, self._slot_rules.rows(rows))

    def _choose(
        self, logits: torch.Tensor, c: _Choosing, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """The next token of every slot (an idle slot's is 0, never read)."""
        if c.rows is None:
            return sampler.choose(logits, c.rules, self._made, seen, c.plan)
        picked = sampler.choose(
            logits.index_select(0, c.rows),
            c.rules,
            self._made.index_select(0, c.rows),
            None if seen is None else seen.index_select(0, c.rows),
            c.plan,
        )
        return torch.zeros_like(self._tok).index_copy_(0, c.rows, picked)

    def _run_decode(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        try:
            if self.compiled and self._compiled_once:
                # the shapes never change: a recompile means a guard fails every step
                with torch.compiler.set_stance("fail_on_recompile"):
                    return self._decode(ids, pos)
            logits = self._decode(ids, pos)
            self._compiled_once = self.compiled
            return logits
        except Exception as exc:  # the compiler failed here: the eager step computes the same
            if not self.compiled:
                raise
            return self._after_compile_failure(exc, ids, pos)

    def _after_compile_failure(
        self, exc: Exception, ids: torch.Tensor, pos: torch.Tensor
    ) -> torch.Tensor:
        """Compile once more without the flex kernel's options, the likelier culprit, where the
        step had some and never compiled; else take the eager step. Either way say why."""
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self.flex_options and not self._compiled_once:
            refused, self.flex_options = self.flex_options, None
            self.on_compile_failure(
                f"flex options {refused} refused, compiled without: {reason}"[:300]
            )
            return self._run_decode(ids, pos)
        self.compiled = False
        self._decode = self._decode_dense
        self.on_compile_failure(reason[:300])
        return self._decode(ids, pos)

    def _launch_record(self, seqs: list[_Seq], chosen: torch.Tensor) -> _Launched:
        rows = [(s, s.slot) for s in seqs]
        if self.device.type != "cuda":
            return _Launched(rows, chosen, None)
        self._launches += 1
        host = self._host_tokens[self._launches % len(self._host_tokens)]
        host.copy_(chosen, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(self.device))
        return _Launched(rows, host, ready)

    def _settle_until(self, in_flight: int) -> None:
        """Record the oldest launched steps until `in_flight` remain: each one's tokens of the
        sequences still running as they ran then (a sequence that ended or was preempted since
        has no token from it; one step in flight at most, so none came back into a slot)."""
        while len(self._launched) > in_flight:
            self._settle(self._launched.popleft())

    def _settle(self, launched: _Launched) -> None:
        tokens = launched.read()
        rows = [(s, slot) for s, slot in launched.rows if s.slot == slot]
        self._record([s for s, _ in rows], [tokens[slot] for _, slot in rows])

    def _grow_or_preempt(self) -> None:
        """Every active sequence gets the page its next position needs; when the pool is dry,
        the step in flight is read first (sequences it ended give their pages back rather than
        take one for a token that would be dropped), then the youngest sequences go back to the
        front of the queue."""
        order = sorted(self._active.values(), key=lambda s: s.req_id)
        while order:
            if all(self.pool.ensure(s.slot, s.pos + 1) for s in order):
                return
            if self._launched:
                self._settle_until(0)
                order = sorted(self._active.values(), key=lambda s: s.req_id)
                continue
            victim = order.pop()  # the youngest
            self._release(victim)
            victim.pos = 0
            self._waiting.appendleft(victim)
            self.stats.preemptions += 1

    def _append(self, seqs: list[_Seq], logits: torch.Tensor) -> None:
        """The first token of newly prefilled sequences."""
        if self._trace is not None:
            self._trace.append(logits.float().cpu())
        reqs = [s.req for s in seqs]
        rules = self._rules(seqs)
        plan = sampler.Plan.of([r.greedy for r in reqs], [r.top_k for r in reqs], self.vocab)
        steps = paged_kv.upload([len(s.out) for s in seqs], self.device)
        seen = None
        if self._seen is not None and any(self._penalised(r) for r in reqs):
            seen = self._seen[paged_kv.upload([s.slot for s in seqs], self.device)]
        chosen = sampler.choose(logits, rules, steps, seen, plan).tolist()
        for seq, tok in zip(seqs, chosen, strict=True):
            if self._seen is not None and self._penalised(seq.req):
                self._seen[seq.slot, int(tok)] = True
        self._record(seqs, chosen)

    def _record(self, seqs: list[_Seq], tokens: list[int]) -> None:
        self.stats.generated_tokens += len(seqs)
        for seq, tok in zip(seqs, tokens, strict=True):
            seq.out.append(int(tok))
            reason = self._finished(seq)
            if reason:
                self._done[seq.req_id] = Completion(seq.out, reason)
                self._release(seq)
        self._flush_vacated()

    def _release(self, seq: _Seq) -> None:
        self._active.pop(seq.slot, None)
        self.pool.release(seq.slot)
        self._free.append(seq.slot)
        self._vacated.append(seq.slot)
        seq.slot = -1

    def _finished(self, seq: _Seq) -> str | None:
        req = seq.req
        if seq.out[-1] in req.stop_token_ids:
            return "stop"
        if req.stop_strings and self.tokenizer is not None:
            longest = max(len(s) for s in req.stop_strings)
            tail = self.tokenizer.decode(seq.out[-(longest + 8) :], skip_special_tokens=False)
            if any(s in tail for s in req.stop_strings):
                return "stop"
        if len(seq.out) >= req.max_new_tokens:
            return "length"
        if len(req.prompt_ids) + len(seq.out) >= self.max_len:
            return "length"
        return None

    def _rules(self, seqs: list[_Seq]) -> sampler.Rules:
        def col(values: list[Any], dtype: torch.dtype) -> torch.Tensor:
            return paged_kv.upload(values, self.device, dtype)

        reqs = [s.req for s in seqs]
        return sampler.Rules(
            greedy=col([r.greedy for r in reqs], torch.bool),
            temperature=col([r.temperature for r in reqs], torch.float32),
            top_p=col([r.top_p for r in reqs], torch.float32),
            top_k=col([r.top_k for r in reqs], torch.long),
            min_p=col([r.min_p for r in reqs], torch.float32),
            repetition_penalty=col([r.repetition_penalty for r in reqs], torch.float32),
            seed=col([r.seed for r in reqs], torch.long),
        )

    @staticmethod
    def _penalised(req: Request) -> bool:
        return not req.greedy and req.repetition_penalty != 1.0

    def _seen_rows(self) -> torch.Tensor:
        if self._seen is None:
            self._seen = torch.zeros((self.slots, self.vocab), dtype=torch.bool, device=self.device)
        return self._seen


def _refuse_closed(*_: object) -> NoReturn:
    """Stands in for a closed engine's decode step, and refuses its submits."""
    raise RuntimeError("the engine is closed: its memory was given back")


def host_memory_free() -> int:
    """Bytes of memory this process can still take: the kernel's estimate of what is available
    (free memory and reclaimable cache), within the cgroup's limit where one is set."""
    import psutil

    free = int(psutil.virtual_memory().available)  # Linux: MemAvailable
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return free
    return free if limit == "max" else min(free, max(0, int(limit) - used))


def _configs(model: Any) -> Iterator[Any]:
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None:
            yield config
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            yield config
