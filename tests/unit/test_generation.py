"""Sampling from the submitted model's generation_config.json, as the reference's vLLM reads it:
the allow-list, vLLM's defaults where the file is silent, strict parsing of an agent file."""

import json
from pathlib import Path

import pytest

from posttrainbench.evaluate.generation import is_greedy, model_sampling, request_extras


def _folder(tmp_path: Path, gen: object | None = None, config: object | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config or {"model_type": "qwen3"}))
    if isinstance(gen, str):
        (tmp_path / "generation_config.json").write_text(gen)
    elif gen is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(gen))
    return tmp_path


def test_allow_listed_fields_are_used_and_the_rest_ignored_and_named(tmp_path: Path) -> None:
    s = model_sampling(
        _folder(
            tmp_path,
            {
                "temperature": 0.6,
                "top_p": 0.95,
                "top_k": 20,
                "min_p": 0.05,
                "repetition_penalty": 1.1,
                "max_new_tokens": 10_000_000,
                "max_length": 10_000_000,
                "do_sample": True,
                "num_beams": 8,
                "eos_token_id": 1,
                "transformers_version": "4.51.0",
            },
        )
    )
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repetition_penalty) == (
        0.6,
        0.95,
        20,
        0.05,
        1.1,
    )
    assert s.used == ["temperature", "top_p", "top_k", "min_p", "repetition_penalty"]
    assert s.ignored == ["do_sample", "max_length", "max_new_tokens", "num_beams"]
    assert s.source == "generation_config.json" and not s.greedy
    assert request_extras(s) == {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}


def test_temperature_zero_is_greedy_and_do_sample_is_not_read(tmp_path: Path) -> None:
    """vLLM ignores do_sample: a file that says do_sample false but sets no temperature samples
    at vLLM's default 1.0; temperature 0 (below vLLM's epsilon) is the one greedy test."""
    assert model_sampling(_folder(tmp_path / "a", {"temperature": 0.0})).greedy
    quiet = model_sampling(_folder(tmp_path / "b", {"do_sample": False, "max_new_tokens": 2048}))
    assert (
        not quiet.greedy
        and quiet.temperature == 1.0
        and quiet.ignored
        == [
            "do_sample",
            "max_new_tokens",
        ]
    )
    assert is_greedy(0.0) and is_greedy(1e-6) and not is_greedy(1e-5)


def test_absent_file_samples_at_vllms_default_and_config_json_is_the_fallback(
    tmp_path: Path,
) -> None:
    none = model_sampling(_folder(tmp_path / "a"))
    assert none.source == "none" and none.temperature == 1.0 and not none.greedy
    assert none.top_k == 0 and none.used == [] and none.ignored == []
    cfg = model_sampling(_folder(tmp_path / "b", config={"model_type": "x", "temperature": 0}))
    assert cfg.source == "config.json" and cfg.greedy and cfg.ignored == []


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"temperature": NaN}',
        '"a string"',
        '{"temperature": 0.5, "temperature": 0}\x00',
    ],
)
def test_malformed_file_is_treated_as_absent_and_noted(tmp_path: Path, text: str) -> None:
    s = model_sampling(_folder(tmp_path, text))
    assert s.source == "none" and s.temperature == 1.0
    assert s.note and "generation_config.json" in s.note and "treated as absent" in s.note


def test_invalid_values_are_ignored_and_hf_defaults_dropped_as_vllm_does(tmp_path: Path) -> None:
    s = model_sampling(
        _folder(
            tmp_path,
            {"temperature": "0", "top_p": 2.0, "top_k": 50, "repetition_penalty": True},
        )
    )
    assert s.ignored == ["temperature", "top_p", "repetition_penalty"]
    assert s.temperature == 1.0 and s.top_p == 1.0 and s.repetition_penalty == 1.0
    assert s.top_k == 0 and s.note and "top_k=50" in s.note  # transformers' default: dropped


def test_oversized_or_linked_file_is_not_read(tmp_path: Path) -> None:
    big = _folder(tmp_path / "a", " " * (2 << 20) + '{"temperature": 0}')
    assert model_sampling(big).source == "none"
    outside = tmp_path / "outside.json"
    outside.write_text('{"temperature": 0}')
    linked = _folder(tmp_path / "b")
    (linked / "generation_config.json").symlink_to(outside)
    assert model_sampling(linked).source == "none"
