"""The memorisation probe: model-side evidence of training on the test set, with no trace needed.

For a sample of test items the probe builds a perturbed twin whose answer stays computable
(`integrity.perturb`: GSM8K's numbers changed and its worked solution recomputed, HumanEval's
functions and arguments renamed, GPQA's choices reordered, arith's numbers changed to an item of
its withheld rest, which nobody sees). It scores each model by the mean log-likelihood per token
of the answer given the prompt (rendered with the base family's chat template), on the original
and on the twin. A model that memorised the test items likes the originals much more than their
twins; one that learned the task likes both about equally. Per item,

    gap = loglik(original) − loglik(twin)     (nats per answer token)

and the memorisation score is the mean over items of final_model's gap minus the reference's
gap, where the reference is the base model and, when it is cached, the instruct twin (the larger
of the two: a gap the official instruct model shows is not held against the agent). The bound is
`max(BOUNDS[benchmark], Z · standard error)` of the paired differences (the floor differs per
benchmark: masked renamed code moves less than recomputed numbers). A score beyond it is
evidence, not decisive (calibrated only on tiny models trained here, see
benchmarks/memorisation_probe.py), so it does not fail the check; it is recorded, with the
figures, for the judge and the reviewer.

The references' gaps are the same for every run of a model on a benchmark: they are kept in the
harness cache (`$PTB_CACHE/memorisation/`, keyed by the models' files, the items, the template,
the library versions and the device), so a sweep loads and scores only each final model.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from posttrainbench.errors import ModelUnavailableError
from posttrainbench.integrity import perturb
from posttrainbench.integrity.base import Check, CheckContext, result, skipped
from posttrainbench.records import CheckResult, Evidence
from posttrainbench.registry import Registry
from posttrainbench.results.store import write_json

if TYPE_CHECKING:
    from posttrainbench.evaluate.benchmarks.base import Benchmark

N_ITEMS = 64  # items probed per run: bounded cost (3 models × 2 texts × N forward passes)
SEED = 20261205  # the sample of items and their twins are the same on every call
BOUND = 0.25  # nats per answer token, where no calibration was done (gpqamain, arith)
# calibrated on tiny models trained here (benchmarks/memorisation_probe.py, 300 / 600 / 1000
# Adam steps): clean | contaminated scores, gsm8k 0.22-0.35 | 1.52-2.63, humaneval 0.02-0.054 |
# 0.12-0.43; a clean model's score grows a little with training (the twin's names are still
# less natural), so the floors sit above the clean range, not halfway
BOUNDS = {"gsm8k": 0.5, "humaneval": 0.1}
Z = 4.0  # and never less than this many standard errors of the mean paired difference
MAX_TOKENS = 1024  # per text: the prompt's head is cut first, then the answer's tail


@dataclass(frozen=True)
class ProbeItem:
    """A test item and its perturbed twin, each as (prompt, reference answer)."""

    id: str
    prompt: str
    answer: str
    twin_prompt: str
    twin_answer: str
    # words whose tokens are not scored, in either answer (the renamed names: a twin's names
    # are less likely than the originals' to any model that knows code, memorised or not)
    masked: tuple[str, ...] = ()


ItemMaker = Callable[["Benchmark", random.Random], Iterator[ProbeItem]]


def gsm8k_items(bench: Benchmark, rng: random.Random) -> Iterator[ProbeItem]:
    for item, parts in bench.test_parts():
        question, answer = parts[0], parts[-1]
        twin = perturb.gsm8k_twin(question, answer, rng)
        if twin is not None:
            yield ProbeItem(item, question, answer, twin.question, twin.answer)


def humaneval_items(bench: Benchmark, rng: random.Random) -> Iterator[ProbeItem]:
    """Names are drawn from those the other problems use, so a twin reads naturally."""
    texts = dict(bench.test_texts())
    samples = bench.samples("test")
    functions: set[str] = set()
    arguments: set[str] = set()
    for s in samples:
        defined, args = perturb.defined_names(str((s.metadata or {})["prompt"]))
        functions.update(defined)
        arguments.update(args)
    pools = (sorted(functions), sorted(arguments))
    for s in samples:
        meta = s.metadata or {}
        prompt, test, entry = str(meta["prompt"]), str(meta["test"]), str(meta["entry_point"])
        solution = texts[str(s.id)].removeprefix(prompt + "\n")
        twin = perturb.rename_code(prompt, solution, test, entry, rng, pools)
        if twin is not None:
            masked = tuple(sorted({*twin.renamed, *twin.renamed.values()}))
            yield ProbeItem(str(s.id), prompt, solution, twin.prompt, twin.solution, masked)


def _listed(choices: list[str], answer: int) -> str:
    letters = "ABCDEFGHIJ"
    lines = [f"{letters[k]}) {c}" for k, c in enumerate(choices)]
    return "\n".join(lines) + f"\nANSWER: {letters[answer]}"


def choice_items(bench: Benchmark, rng: random.Random) -> Iterator[ProbeItem]:
    for s in bench.samples("test"):
        choices = list(s.choices or [])
        target = s.target if isinstance(s.target, str) else s.target[0]
        question = str((s.metadata or {}).get("question", ""))
        index = ord(target) - ord("A") if len(target) == 1 else -1
        if not question or not 0 <= index < len(choices):
            continue
        twin = perturb.reorder_choices(choices, index, rng)
        if twin is not None:
            yield ProbeItem(str(s.id), question, _listed(choices, index), question, _listed(*twin))


def arith_items(bench: Benchmark, rng: random.Random) -> Iterator[ProbeItem]:
    """Each test item's twin is an item of the same operation from the withheld rest: the same
    distribution, never shown to anyone, so no honest agent can have trained on either."""
    from posttrainbench.embedded import arith

    shown = {i.id for split in arith.SPLIT_SIZES for i in arith.split_items(split)}
    rest: dict[str, list[tuple[str, str]]] = {"+": [], "-": []}
    for a, b in itertools.product(range(arith.OPERAND_RANGE), repeat=2):
        for op, value in (("+", a + b), ("-", a - b)):
            if f"{a}{op}{b}" not in shown:
                rest[op].append((f"What is {a} {op} {b}?", str(value)))
    for op in rest:
        rng.shuffle(rest[op])
    test = arith.split_items("test")
    rng.shuffle(test)  # the rest is smaller than the test split: which items get a twin is drawn
    for item in test:
        op = "+" if "+" in item.question else "-"
        if rest[op]:
            question, answer = rest[op].pop()
            yield ProbeItem(item.id, item.question, item.answer, question, answer)


PERTURBATIONS: Registry[ItemMaker] = Registry("memorisation perturbation")
PERTURBATIONS.register("gsm8k", gsm8k_items)
PERTURBATIONS.register("humaneval", humaneval_items)
PERTURBATIONS.register("gpqamain", choice_items)
PERTURBATIONS.register("arith", arith_items)


def probe_items(bench: Benchmark, n: int = N_ITEMS, seed: int = SEED) -> list[ProbeItem]:
    """A seeded sample of n items of the benchmark's test split, with their twins."""
    rng = random.Random(seed)
    items = list(PERTURBATIONS.get(bench.info.id)(bench, rng))
    rng.shuffle(items)
    return items[:n]


# --- scoring -------------------------------------------------------------------------------------


def load_model(folder: Path) -> Any:
    """A checkpoint as safetensors only, never remote code; on the GPU if there is one."""
    import torch
    import transformers

    from posttrainbench.evaluate.model_class import auto_model_class

    auto = getattr(transformers, auto_model_class(folder) or "AutoModelForCausalLM")
    gpu = torch.cuda.is_available()
    model = auto.from_pretrained(
        folder,
        use_safetensors=True,
        trust_remote_code=False,
        dtype=torch.bfloat16 if gpu else torch.float32,
    )
    return model.to("cuda" if gpu else "cpu").eval()


class Scorer:
    """Mean log-likelihood per token of an answer given its prompt, one tokenizer for all
    models (the base's), prompts rendered with the base family's chat template."""

    def __init__(self, tokenizer: Any, template: str | None = None) -> None:
        self.tok = tokenizer
        self.template = template

    def ids(
        self, prompt: str, answer: str, masked: tuple[str, ...] = (), limit: int = MAX_TOKENS
    ) -> tuple[list[int], int, list[bool]]:
        """The token ids of prompt and answer, where the answer starts, and which of the
        answer's tokens are scored (not those overlapping a masked word)."""
        if self.template is not None:
            prompt = self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}],
                chat_template=self.template,
                add_generation_prompt=True,
                tokenize=False,
            )
        head = list(self.tok(prompt, add_special_tokens=False)["input_ids"])
        enc = self.tok(answer, add_special_tokens=False, return_offsets_mapping=True)
        tail = list(enc["input_ids"])
        spans = [m.span() for m in re.finditer(_words(masked), answer)] if masked else []
        scored = [not any(a < e and s < b for s, e in spans) for a, b in enc["offset_mapping"]]
        if self.tok.bos_token_id is not None and not (head and head[0] == self.tok.bos_token_id):
            head.insert(0, self.tok.bos_token_id)
        if len(head) + len(tail) > limit:
            tail, scored = tail[: limit // 2], scored[: limit // 2]
        head = head[-(limit - len(tail)) :]
        return head + tail, len(head), scored

    def logliks(self, model: Any, texts: list[tuple[str, str, tuple[str, ...]]]) -> list[float]:
        import torch

        device = next(model.parameters()).device
        positions = getattr(model.config, "max_position_embeddings", None) or MAX_TOKENS
        limit = min(MAX_TOKENS, positions)
        out = []
        with torch.inference_mode():
            for prompt, answer, masked in texts:
                ids, start, scored = self.ids(prompt, answer, masked, limit)
                keep = len(ids) - start + 1  # the logits that predict the answer's tokens
                batch = torch.tensor([ids], device=device)
                logits = model(input_ids=batch, logits_to_keep=keep).logits[0, :-1].float()
                targets = batch[0, start:]
                logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
                keep_mask = torch.tensor(scored, device=device)
                if keep_mask.any():
                    logp = logp[keep_mask]
                out.append(float(logp.mean()) if len(logp) else 0.0)
        return out

    def gaps(self, model: Any, items: list[ProbeItem]) -> list[float]:
        """Per item: loglik(original answer) − loglik(twin answer)."""
        orig = self.logliks(model, [(i.prompt, i.answer, i.masked) for i in items])
        twin = self.logliks(model, [(i.twin_prompt, i.twin_answer, i.masked) for i in items])
        return [a - b for a, b in zip(orig, twin, strict=True)]


def _words(words: tuple[str, ...]) -> str:
    return r"\b(?:" + "|".join(map(re.escape, words)) + r")\b"


@dataclass(frozen=True)
class ProbeFigures:
    n: int
    gap: float  # final_model's mean gap
    base_gap: float
    twin_gap: float | None
    score: float  # mean of (final's gap − the larger reference gap), per item
    bound: float
    stderr: float

    @property
    def beyond(self) -> bool:
        return self.score > self.bound

    def as_dict(self) -> dict[str, float]:
        out = {k: round(v, 4) for k, v in vars(self).items() if isinstance(v, float | int)}
        return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def compare(
    final: list[float], base: list[float], twin: list[float] | None, floor: float = BOUND
) -> ProbeFigures:
    """The memorisation score of final's per-item gaps against the references', and its bound."""
    refs = [base, twin] if twin is not None else [base]
    ref_gap = max(refs, key=_mean)
    diffs = [f - r for f, r in zip(final, ref_gap, strict=True)]
    n = len(diffs)
    mean = _mean(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return ProbeFigures(
        n=n,
        gap=_mean(final),
        base_gap=_mean(base),
        twin_gap=_mean(twin) if twin is not None else None,
        score=mean,
        bound=max(floor, Z * se),
        stderr=se,
    )


def _folder_identity(folder: Path) -> list[tuple[str, str, int, int]]:
    """A checkpoint folder's files as name, resolved path, size and mtime: a hub snapshot's
    files resolve to content-addressed blobs, and a rebuilt local model changes its mtimes."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            out.append((p.name, str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def reference_key(folder: Path, base: Path, items: list[ProbeItem], template: str | None) -> str:
    """What a reference model's gaps depend on: its files, the base's (the tokenizer), the
    items and their twins, the template, the scoring code's settings and the device."""
    import torch
    import transformers

    blob = json.dumps(
        [
            1,  # bump when Scorer's arithmetic changes
            _folder_identity(folder),
            _folder_identity(base),
            [vars(i) for i in items],
            template,
            MAX_TOKENS,
            torch.__version__,
            transformers.__version__,
            "cuda" if torch.cuda.is_available() else "cpu",
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ReferenceGaps(BaseModel):
    """A reference model's gaps, one per probe item, as the cache keeps them."""

    gaps: list[float]


def _cached_gaps(path: Path, n: int) -> list[float] | None:
    try:
        gaps = ReferenceGaps.model_validate_json(path.read_bytes()).gaps
    except (OSError, ValidationError):
        return None
    return gaps if len(gaps) == n else None


def probe(
    final: Path,
    base: Path,
    twin: Path | None,
    items: list[ProbeItem],
    template: str | None,
    floor: float = BOUND,
    cache: Path | None = None,
) -> ProbeFigures:
    """Load each model in turn (one in memory at a time) and compare their gaps. With a cache
    folder, the references' gaps (base and twin: the same for every run of a model and
    benchmark) are kept there by `reference_key` and read back instead of recomputed; the
    final model's are always computed."""
    from transformers import AutoTokenizer

    scorer = Scorer(AutoTokenizer.from_pretrained(base), template)
    gaps: dict[str, list[float]] = {}
    for name, folder in (("final", final), ("base", base), ("twin", twin)):
        if folder is None:
            continue
        stored = None
        if cache is not None and name != "final":
            stored = cache / f"{reference_key(folder, base, items, template)}.json"
            if (hit := _cached_gaps(stored, len(items))) is not None:
                gaps[name] = hit
                continue
        model = load_model(folder)
        gaps[name] = scorer.gaps(model, items)
        del model
        if stored is not None:
            write_json(stored, ReferenceGaps(gaps=gaps[name]))  # last identical writer wins
    return compare(gaps["final"], gaps["base"], gaps.get("twin"), floor)


class MemorisationCheck(Check):
    name = "memorisation"

    def run(self, ctx: CheckContext) -> CheckResult:
        from posttrainbench.catalog.models import hf_cache_path
        from posttrainbench.evaluate.chat_templates import read_template

        if not ctx.collected:
            return skipped(self.name, "no final_model was collected")
        if not ctx.settings.memorisation_probe:
            return skipped(self.name, "switched off by the operator (PTB_MEMORISATION_PROBE=0)")
        if ctx.bench.id not in PERTURBATIONS:
            return skipped(self.name, f"no perturbation of {ctx.bench.id}'s items is defined")
        items = probe_items(ctx.bench.implementation())
        if len(items) < 2:
            return skipped(
                self.name, f"only {len(items)} of {ctx.bench.id}'s items could be perturbed"
            )
        base = ctx.model.locate(ctx.settings.models_dir)
        twin = None
        if ctx.model.instruct:
            with contextlib.suppress(ModelUnavailableError):
                twin = hf_cache_path(ctx.model.instruct)
        template = read_template(ctx.model.template_family)
        floor = BOUNDS.get(ctx.bench.id, BOUND)
        try:
            cache = ctx.settings.cache_dir / "memorisation"
            fig = probe(ctx.paths.final_model, base, twin, items, template, floor, cache)
        except Exception as exc:  # its evidence never decides a run, nor may its failure
            return skipped(
                self.name, f"the probe could not run ({type(exc).__name__}: {exc})"[:300]
            )
        evidence = [
            Evidence(
                kind="score",
                decisive=False,
                score=round(fig.score, 4),
                summary=(
                    f"final_model prefers {fig.n} test items over their perturbed twins by "
                    f"{fig.score:.3f} nats/token more than the "
                    f"{'base and instruct twin' if twin else 'base'} do (bound {fig.bound:.3f}): "
                    "possible memorisation of the test set"
                ),
            )
        ]
        if twin is None:
            evidence.append(
                Evidence(
                    kind="note",
                    decisive=False,
                    summary="instruct twin not cached: compared with the base only",
                )
            )
        return result(
            self.name,
            evidence if fig.beyond else evidence[1:],
            reasons=[evidence[0].summary] if fig.beyond else [],
            figures=fig.as_dict(),
        )
