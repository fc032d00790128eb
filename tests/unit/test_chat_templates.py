"""The harness's chat templates rendered by transformers on tokenizers that know each family's
special tokens: exact prompts, thinking off, Gemma's folding and strict alternation, tools."""

from typing import Any

import pytest

from posttrainbench.evaluate.chat_templates import FAMILIES, read_template, template_path
from tests.fixtures.models import tokenizer

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "2+2?"},
]
TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
    },
}
CALL = {"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}


def render(family: str, messages: list[dict[str, Any]], tools: bool = False, **kw: Any) -> str:
    out = tokenizer(family).apply_chat_template(
        messages,
        tools=[TOOL] if tools else None,
        chat_template=read_template(family, tools=tools),
        tokenize=False,
        add_generation_prompt=True,
        **kw,
    )
    assert isinstance(out, str)
    return out


def test_qwen3_is_chatml_with_thinking_off() -> None:
    assert render("qwen3", CHAT) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_smollm3_has_its_metadata_block_and_no_think() -> None:
    text = render("smollm3", CHAT[1:2])
    assert text.startswith("<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n")
    assert "Reasoning Mode: /no_think" in text and "named SmolLM" in text
    assert text.endswith(
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n"
    )
    assert "Be brief." in render("smollm3", CHAT)  # a system message replaces the default


def test_gemma3_folds_system_and_alternates() -> None:
    assert render("gemma3", CHAT) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\nHello."
        "<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
    )
    with pytest.raises(Exception, match="alternate"):
        render("gemma3", [CHAT[1], CHAT[1]])


@pytest.mark.parametrize("family", ["qwen3", "smollm3", "gemma3"])
def test_tools_are_described_and_calls_rendered(family: str) -> None:
    messages = [
        {"role": "user", "content": "Add one."},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "1"},
    ]
    text = render(family, messages, tools=True)
    assert '"name": "add"' in text and "<tools>" in text
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>' in text
    assert "<tool_response>\n1\n</tool_response>" in text


def test_gemma_has_a_tools_variant_and_the_others_one_template() -> None:
    assert template_path("gemma3", tools=True).name == "gemma3-tools.jinja"
    assert template_path("qwen3", tools=True).name == "qwen3.jinja"
    assert set(FAMILIES) == {"qwen3", "smollm3", "gemma3", "ptb-tiny"}
