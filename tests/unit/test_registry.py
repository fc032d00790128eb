from types import SimpleNamespace

import pytest

from posttrainbench import registry
from posttrainbench.catalog import AGENTS, BENCHMARKS, MODELS
from posttrainbench.errors import NotEvaluableError, UnknownNameError
from posttrainbench.registry import Registry


def test_miss_suggests_and_lists() -> None:
    with pytest.raises(UnknownNameError) as err:
        AGENTS.get("recpie")
    assert "did you mean 'recipe'" in str(err.value)
    assert "noop" in str(err.value)


def test_lazy_reference_resolves_and_checks_type() -> None:
    reg: Registry[object] = Registry("thing", int)
    reg.register("ok", "math:inf")  # a float, not an int
    with pytest.raises(TypeError):
        reg.get("ok")
    reg.register("int", "builtins:int")
    assert reg.get("int") is int


def test_aliases_and_case() -> None:
    assert MODELS.get("Qwen3-4B-Base").name == "Qwen/Qwen3-4B-Base"
    assert BENCHMARKS.get("GSM8K").id == "gsm8k"


def test_broken_plugin_is_a_warning(monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # type: ignore[no-untyped-def]
    def boom() -> object:
        raise ImportError("plug-in is broken")

    good = SimpleNamespace(name="extra", load=lambda: 42)
    bad = SimpleNamespace(name="broken", load=boom)
    monkeypatch.setattr(registry, "entry_points", lambda group: [good, bad])
    reg: Registry[int] = Registry("widget")
    reg.register("one", 1)
    assert reg.get("extra") == 42
    assert "broken" not in reg.names()
    assert "plug-in is broken" in caplog.text


def test_catalog_has_the_official_grid() -> None:
    assert {
        "Qwen/Qwen3-1.7B-Base",
        "Qwen/Qwen3-4B-Base",
        "HuggingFaceTB/SmolLM3-3B-Base",
        "google/gemma-3-4b-pt",
        "ptb-tiny",
    } == set(MODELS.names())
    assert set(BENCHMARKS.names()) == {
        "aime2025", "arenahardwriting", "bfcl", "gpqamain", "gsm8k", "healthbench", "humaneval",
        "arith",
    }  # fmt: skip
    assert MODELS.get("google/gemma-3-4b-pt").instruct == "google/gemma-3-4b-it"
    assert set(AGENTS.names()) == {
        "noop", "recipe", "command", "claude-code", "codex", "gemini-cli", "opencode",
    }  # fmt: skip


def test_every_benchmark_declares_its_protocol_and_loads_its_implementation() -> None:
    from posttrainbench.evaluate.benchmarks.base import Benchmark

    for name, b in BENCHMARKS:
        assert b.evaluable and b.n_items and b.max_tokens and b.allowed_training, name
        impl = b.implementation()
        assert isinstance(impl, Benchmark) and impl.info is b
    assert BENCHMARKS.get("gsm8k").few_shot == 10 and BENCHMARKS.get("gsm8k").dev_limit == 150
    assert [s.max_tokens for s in BENCHMARKS.get("aime2025").max_tokens] == [16000, 12000, 8000]
    assert [s.attempts for s in BENCHMARKS.get("aime2025").max_tokens] == [4, 3, 2]
    assert BENCHMARKS.get("humaneval").executes_model_output
    assert "IS the test set" in BENCHMARKS.get("bfcl").allowed_training


def test_a_benchmark_without_implementation_is_refused() -> None:
    from posttrainbench.catalog.benchmarks import BenchmarkInfo

    with pytest.raises(NotEvaluableError, match="not yet evaluable"):
        BenchmarkInfo(id="x", display_name="X").implementation()
