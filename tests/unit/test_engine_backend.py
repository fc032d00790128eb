"""The `engine` backend through inspect-ai on the embedded model (CPU, fp32): the same answers as
the `hf` path, seeded sampling reproducible, the fallback taken and recorded, `auto` resolved."""

import concurrent.futures
import gc
import json
import shutil
import weakref
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.errors import PtbError
from posttrainbench.evaluate.backends import resolve
from posttrainbench.evaluate.engine_backend import EngineServer, cut_at_stop
from posttrainbench.evaluate.run import evaluate_model


def _completions(log_file: str) -> list[str]:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_file.removeprefix("file://"))
    return [s.output.completion for s in sorted(log.samples or [], key=lambda s: str(s.id))]


def test_engine_answers_as_the_hf_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    kw = dict(limit=12, template_family="ptb-tiny")
    hf = evaluate_model(tiny_model_dir, "arith", tmp_path / "hf", backend="hf", **kw)
    eng = evaluate_model(tiny_model_dir, "arith", tmp_path / "eng", backend="engine", **kw)
    assert eng.backend == "engine" and eng.params["engine"] == "used", eng.params
    assert eng.params["engine_slots"] == eng.params["batch_size"] == 256
    assert eng.params["engine_compiled"] == "no"
    assert hf.log_file and eng.log_file
    assert _completions(eng.log_file) == _completions(hf.log_file)
    assert eng.score == hf.score


def test_engine_sampling_is_seeded(tiny_model_dir: Path, tmp_path: Path) -> None:
    hot = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, hot)
    (hot / "generation_config.json").write_text(json.dumps({"temperature": 1.5, "top_k": 20}))

    def run(name: str, seed: int) -> list[str]:
        m = evaluate_model(
            hot, "arith", tmp_path / name, limit=12, template_family="ptb-tiny",
            backend="engine", seed=seed,
        )  # fmt: skip
        assert m.params["engine"] == "used" and m.decoding["temperature"] != 0.0
        assert m.log_file
        return _completions(m.log_file)

    a = run("a", 3)
    assert a == run("b", 3)
    assert a != run("c", 4)


def test_a_benchmarks_seeds_share_the_batch_and_draw_as_each_alone(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    hot = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, hot)
    (hot / "generation_config.json").write_text(json.dumps({"temperature": 1.5, "top_k": 20}))
    kw: dict[str, Any] = dict(limit=8, template_family="ptb-tiny", backend="engine")
    together = evaluate_model(hot, "arith", tmp_path / "all", seed=3, seeds=3, **kw)
    assert together.params["seeds_run"] == "together", together.params
    runs = []
    for s in together.seeds:
        alone = evaluate_model(hot, "arith", tmp_path / f"s{s.seed}", seed=s.seed, seeds=1, **kw)
        assert alone.params["seeds_run"] is None and alone.log_file and s.log_file
        assert _completions(s.log_file) == _completions(alone.log_file), s.seed
        assert s.score == alone.score
        runs.append(tuple(_completions(s.log_file)))
    assert len(set(runs)) == 3  # each seed draws its own answers


def test_a_model_the_engine_refuses_falls_back_and_says_why(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM

    bloom = tmp_path / "bloom"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    BloomForCausalLM(
        BloomConfig(vocab_size=len(tok), hidden_size=32, n_layer=2, n_head=4)
    ).save_pretrained(bloom)
    for f in tiny_model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, bloom / f.name)
    m = evaluate_model(
        bloom, "arith", tmp_path / "eval", limit=4, template_family="ptb-tiny", backend="engine",
        seeds=2,
    )  # fmt: skip
    assert m.n_samples == 4 and m.backend == "engine"
    reason = str(m.params["engine"])
    assert reason.startswith("not used: model type 'bloom'") and "hf path" in reason, reason
    # hf's generation draws from the process's generator: its seeds cannot share a batch
    assert m.params["seeds_run"] == "in turn" and len(m.seeds) == 2


def test_a_failed_self_check_gives_the_pool_back_before_hf_serves(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posttrainbench.evaluate import engine_backend

    pools: list[weakref.ref[Any]] = []

    def disagrees(engine: Any) -> str:
        pools.append(weakref.ref(engine.pool.k[0]))
        return "prefill logits disagree with the model's forward pass"

    monkeypatch.setattr(engine_backend, "self_check", disagrees)
    fresh = tmp_path / "model"  # a path no earlier test served: inspect keeps built providers
    shutil.copytree(tiny_model_dir, fresh)
    gc.disable()  # as when the collector has not come round yet: `del engine` frees nothing
    try:
        m = evaluate_model(
            fresh, "arith", tmp_path / "eval", limit=2, template_family="ptb-tiny",
            backend="engine",
        )  # fmt: skip
    finally:
        gc.enable()
    assert m.n_samples == 2 and m.params["engine"] == (
        "not used: prefill logits disagree with the model's forward pass; generated by the hf path"
    )
    assert len(pools) == 1 and pools[0]() is None  # the hf path had the pool's memory


def test_auto_resolves_by_device_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    for cuda, want in ((True, "engine"), (False, "hf")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        assert resolve("auto") == want
    monkeypatch.undo()
    assert resolve("engine") == "engine" and resolve("vllm") == "vllm"
    with pytest.raises(PtbError):
        resolve("fast-please")


def test_stop_strings_are_cut_as_vllm_does() -> None:
    assert cut_at_stop("x = 1\n\nQuestion: y", ("Question:", "\n\n\n")) == "x = 1\n\n"
    assert cut_at_stop("no stop here", ("Question:",)) == "no stop here"
    assert cut_at_stop("ab", ()) == "ab"


class _Broken:
    """An engine whose step fails once a request is in."""

    busy = False

    def submit(self, req_id: int, req: object) -> None:
        if req == "refused":
            raise ValueError("prompt too long")
        self.busy = True

    def iterate(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access")

    def take_done(self) -> dict[int, object]:
        return {}

    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_broken_engine_fails_every_sample_and_never_hangs() -> None:
    engine = _Broken()
    server = EngineServer(engine)
    refused = server.submit("refused")
    with pytest.raises(ValueError, match="too long"):
        refused.result(timeout=30)
    first = server.submit("a")
    with pytest.raises(RuntimeError, match="illegal memory"):
        first.result(timeout=30)
    later = server.submit("b")  # after the break: fails at once, never waits forever
    with pytest.raises(RuntimeError, match="illegal memory"):
        later.result(timeout=30)
    server.stop()  # its thread ends before the engine's memory is given back
    assert engine.closed and not server._thread.is_alive()
    assert isinstance(later, concurrent.futures.Future)


def test_the_self_check_reads_across_pages_and_shared_pages_and_catches_a_wrong_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    import transformers

    from posttrainbench.evaluate import paged_kv
    from posttrainbench.evaluate.engine import Engine
    from posttrainbench.evaluate.engine_backend import self_check

    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
    )  # fmt: skip
    model = transformers.Gemma3ForCausalLM(config).eval()
    engine = Engine(model, slots=2, max_len=128)
    assert self_check(engine) is None
    assert engine.stats.shared_tokens == 2 * engine.pool.page_size  # the second prompt's start

    # a mask that lets a row see one position past its own (the token it is writing next)
    right = paged_kv.Batch.dense_mask

    def one_too_far(self: paged_kv.Batch, window: int | None) -> torch.Tensor:
        mask = right(self, window)
        return mask | torch.roll(mask, 1, dims=-1)

    monkeypatch.setattr(paged_kv.Batch, "dense_mask", one_too_far)
    problem = self_check(Engine(model, slots=2, max_len=128))
    assert problem is not None and "disagree" in problem


def test_each_backend_has_its_own_batch_size_unless_one_is_given(tmp_path: Path) -> None:
    from posttrainbench.evaluate.backends import BACKENDS, ModelRequest

    req = ModelRequest(model_dir=tmp_path, template_file=None)
    engine, hf = BACKENDS.get("engine"), BACKENDS.get("hf")
    assert engine.model(req).args["engine_slots"] == 256
    assert engine.model(req).max_connections == 512  # a finished slot refills at once
    assert hf.model(req).args["batch_size"] == hf.model(req).max_connections == 64
    given = req.model_copy(update={"batch_size": 8})
    assert engine.model(given).args["engine_slots"] == 8
    assert hf.model(given).max_connections == 8
