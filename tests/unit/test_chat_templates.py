"""The template families: their files, tool variants, stop tokens and errors. What the official
families render is proven against the reference in test_chat_templates_reference.py."""

from typing import Any

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.chat_templates import FAMILIES, family, read_template, template_path
from tests.fixtures.models import tokenizer

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "2+2?"},
]


def render(fam: str, messages: list[dict[str, Any]], **kw: Any) -> str:
    out = tokenizer(fam).apply_chat_template(
        messages, chat_template=read_template(fam), tokenize=False, add_generation_prompt=True, **kw
    )
    assert isinstance(out, str)
    return out


def test_qwen3_is_chatml_and_leaves_thinking_on() -> None:
    assert render("qwen3", CHAT) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # thinking off only when a caller asks for it, as in Qwen3's own template
    assert render("qwen3", CHAT[1:2], enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_smollm3_thinks_by_default() -> None:
    text = render("smollm3", CHAT[1:2])
    assert "Reasoning Mode: /think\n" in text and "/no_think" not in text
    assert text.endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert "Reasoning Mode: /no_think" in render("smollm3", CHAT[1:2], enable_thinking=False)


def test_gemma3_folds_system_and_alternates() -> None:
    assert render("gemma3", CHAT) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\nHello."
        "<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
    )
    with pytest.raises(Exception, match="alternate"):
        render("gemma3", [CHAT[1], CHAT[1]])


def test_gemma_has_a_tools_variant_and_the_others_one_template() -> None:
    assert template_path("gemma3", tools=True).name == "gemma3-tools.jinja"
    assert template_path("qwen3", tools=True).name == "qwen3.jinja"
    assert template_path("ptb-tiny", tools=True).name == "ptb-tiny.jinja"
    assert set(FAMILIES) == {"qwen3", "smollm3", "gemma3", "ptb-tiny"}


def test_stop_tokens_end_an_assistant_turn() -> None:
    assert family("qwen3").stop == ("<|im_end|>", "<|endoftext|>")
    assert family("smollm3").stop == ("<|im_end|>", "<|end_of_text|>")
    assert family("gemma3").stop == ("<end_of_turn>", "<eos>")
    for name in ("qwen3", "smollm3", "gemma3"):
        assert "think" not in " ".join(family(name).stop)  # thinking ends no turn


def test_an_unknown_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no chat template for family 'llama'"):
        template_path("llama")
