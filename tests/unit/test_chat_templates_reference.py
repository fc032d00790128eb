"""Prompts byte-identical to the reference's (aisa-group/PostTrainBench 9082063, its templates kept
verbatim in tests/fixtures/reference_templates/).

The reference renders through vLLM's chat endpoint: its own template file, no `enable_thinking`,
tools in vLLM's `{"type": "function", "function": {...}}` wrapper, assistant tool-call arguments
parsed to objects, Gemma's content as OpenAI text parts (vLLM detects templates that loop over
`message['content']`), and the prompt tokenised with `add_special_tokens=False`. Here that
rendering is rebuilt from the fixtures by hand and compared with what our `hf` backend renders and
feeds the model, for every family x (plain, system, multi-turn, tools). SmolLM3's system block
carries the day of rendering, in the reference too; the tests fix the day.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from posttrainbench.evaluate import hermes
from posttrainbench.evaluate.chat_templates import TEMPLATES_DIR, family, template_path
from tests.fixtures.models import tokenizer

REF = Path(__file__).parents[1] / "fixtures" / "reference_templates"
OURS_TO_REFERENCE = {
    "qwen3.jinja": "qwen3.jinja",
    "smollm3.jinja": "smollm.jinja",
    "gemma3.jinja": "gemma3.jinja",
    "gemma3-tools.jinja": "gemma3_tool_calling.jinja",
}
DAY = datetime(2026, 4, 1, 12, 0)

ADD = {
    "name": "add",
    "description": "Add two numbers.",
    "parameters": {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "first"},
            "b": {"type": "number", "description": "second"},
        },
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}
# Conversations as inspect's OpenAI provider sends them to vLLM.
CASES: dict[str, list[dict[str, Any]]] = {
    "plain": [{"role": "user", "content": "What is 2+2?"}],
    "system": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
    ],
    "multi": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello."},
        {"role": "user", "content": "2+2?"},
    ],
    "tools": [
        {"role": "system", "content": "Call functions."},
        {"role": "user", "content": "Add one and 2.5."},
    ],
    "tool_history": [
        {"role": "user", "content": "Add one and 2.5."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2.5}'},
                }
            ],
        },
        {"role": "tool", "content": "3.5", "tool_call_id": "call_1"},
    ],
}
TOOL_CASES = {"tools", "tool_history"}
FAMILIES = ("qwen3", "smollm3", "gemma3")


@pytest.fixture(autouse=True)
def fixed_day(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from transformers.utils import chat_template_utils

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:  # type: ignore[override]
            return cls(DAY.year, DAY.month, DAY.day, DAY.hour, DAY.minute)

    monkeypatch.setattr(chat_template_utils, "datetime", Frozen)
    yield


def reference_file(fam: str, tools: bool) -> Path:
    name = {"qwen3": "qwen3", "smollm3": "smollm", "gemma3": "gemma3"}[fam]
    if fam == "gemma3" and tools:
        name = "gemma3_tool_calling"  # the reference's BFCL task gives Gemma this one
    return REF / f"{name}.jinja"


def vllm_conversation(messages: list[dict[str, Any]], parts: bool) -> list[dict[str, Any]]:
    """What vLLM's chat endpoint hands the template for these request messages."""
    out = []
    for m in messages:
        m = json.loads(json.dumps(m))
        if parts and isinstance(m.get("content"), str):
            m["content"] = [{"type": "text", "text": m["content"]}]
        for call in m.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        out.append(m)
    return out


def reference_render(fam: str, case: str) -> str:
    tools = case in TOOL_CASES
    text = reference_file(fam, tools).read_text(encoding="utf-8")
    # vLLM's content-format detection finds Gemma's loop over message['content'] (through
    # `loop_messages = messages[1:]`) and hands those templates OpenAI text parts
    parts = fam == "gemma3"
    rendered = tokenizer(fam).apply_chat_template(
        vllm_conversation(CASES[case], parts),
        tools=[{"type": "function", "function": ADD}] if tools else None,
        chat_template=text,
        add_generation_prompt=True,
        tokenize=False,
    )
    assert isinstance(rendered, str)
    return rendered


def inspect_messages(case: str) -> list[Any]:
    from inspect_ai.model import (
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
    )
    from inspect_ai.tool import ToolCall

    out: list[Any] = []
    for m in CASES[case]:
        if m["role"] == "system":
            out.append(ChatMessageSystem(content=m["content"]))
        elif m["role"] == "user":
            out.append(ChatMessageUser(content=m["content"]))
        elif m["role"] == "assistant":
            calls = [
                ToolCall(
                    id=c["id"],
                    function=c["function"]["name"],
                    arguments=json.loads(c["function"]["arguments"]),
                )
                for c in m.get("tool_calls") or []
            ]
            out.append(ChatMessageAssistant(content=m["content"], tool_calls=calls or None))
        else:
            out.append(
                ChatMessageTool(
                    content=m["content"], tool_call_id=m["tool_call_id"], function="add"
                )
            )
    return out


def tool_infos() -> list[Any]:
    from inspect_ai.tool import ToolInfo, ToolParams

    return [
        ToolInfo(
            name=ADD["name"],
            description=ADD["description"],
            parameters=ToolParams.model_validate(ADD["parameters"]),
        )
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The families' tiny models served by our real `hf` backend, one per template file."""
    from inspect_ai.model import get_model

    from posttrainbench.evaluate.backends import BACKENDS, ModelRequest
    from tests.fixtures.hub import hf_home
    from tests.fixtures.models import build_family_model

    root = tmp_path_factory.mktemp("families")
    paths: dict[str, Path] = {}
    models: dict[tuple[str, bool], Any] = {}

    def get(fam: str, tools: bool) -> Any:
        key = (fam, tools and fam == "gemma3")  # only Gemma has a tools variant
        if key not in models:
            with hf_home(root / "hf"):
                if fam not in paths:
                    paths[fam] = build_family_model(root / "hf", fam)[1]
                spec = BACKENDS.get("hf").model(
                    ModelRequest(
                        model_dir=paths[fam],
                        template_file=template_path(fam, tools=tools),
                        stop_tokens=family(fam).stop,
                        tools=tools,
                    )
                )
                models[key] = get_model(spec.name, memoize=False, **spec.args)
        return models[key]

    return get


def scripted(model: Any, reply: str) -> tuple[list[str], list[list[int]]]:
    """Make the HF model answer `reply`; returns the prompts rendered and the token ids fed."""
    import torch

    api = model.api
    texts: list[str] = []
    ids: list[list[int]] = []
    answer = api.tokenizer(reply, add_special_tokens=False)["input_ids"]
    render = type(api).hf_chat

    def hf_chat(messages: Any, tools: Any) -> str:
        texts.append(render(api, messages, tools))
        return texts[-1]

    def generate(input_ids: Any, **kwargs: Any) -> Any:
        ids.extend(input_ids.tolist())
        tail = torch.tensor([answer] * input_ids.shape[0], dtype=input_ids.dtype)
        return SimpleNamespace(
            sequences=torch.cat([input_ids, tail.to(input_ids.device)], dim=1),
            logits=None,
            hidden_states=None,
        )

    api.hf_chat = hf_chat
    api.model.generate = generate
    return texts, ids


def ask(model: Any, case: str) -> Any:
    from inspect_ai.model import GenerateConfig

    return asyncio.run(
        model.generate(
            inspect_messages(case),
            tools=tool_infos() if case in TOOL_CASES else [],
            config=GenerateConfig(max_tokens=8),
        )
    )


def ours_render(served: Any, fam: str, case: str) -> str:
    """What our hf backend renders for the case (through inspect's provider, end to end)."""
    model = served(fam, case in TOOL_CASES)
    texts, _ = scripted(model, "ok")
    ask(model, case)
    [text] = texts
    return text


def test_our_templates_are_the_reference_files_verbatim() -> None:
    for ours, ref in OURS_TO_REFERENCE.items():
        assert (TEMPLATES_DIR / ours).read_bytes() == (REF / ref).read_bytes(), ours
    assert template_path("gemma3", tools=True).name == "gemma3-tools.jinja"
    assert template_path("qwen3", tools=True).name == "qwen3.jinja"
    assert template_path("smollm3", tools=True).name == "smollm3.jinja"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fam", FAMILIES)
def test_hf_backend_feeds_the_model_the_reference_prompt(served: Any, fam: str, case: str) -> None:
    model = served(fam, case in TOOL_CASES)
    texts, ids = scripted(model, "ok")
    ask(model, case)
    reference = reference_render(fam, case)
    assert texts == [reference]
    assert ids == [model.api.tokenizer(reference, add_special_tokens=False)["input_ids"]]


def test_thinking_is_left_as_the_reference_leaves_it(served: Any) -> None:
    qwen = ours_render(served, "qwen3", "system")
    assert qwen == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # an earlier assistant turn loses its reasoning, as Qwen3's template does
    assert ours_render(served, "qwen3", "multi").endswith(
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    smol = ours_render(served, "smollm3", "plain")
    assert smol.startswith(
        "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n"
        "Today Date: 01 April 2026\nReasoning Mode: /think\n\n## Custom Instructions\n\n"
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role"
    )
    # SmolLM3's system block is not closed without tools, as in the real template
    assert smol.endswith(
        "conclusion.\n\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    smol = ours_render(served, "smollm3", "system")
    assert "## Custom Instructions\n\nBe brief.\n\n<|im_start|>user\nHi?" in smol
    assert "<|im_end|>" not in smol.split("<|im_start|>user")[0]


def test_tools_reach_the_template_in_vllms_wrapper(served: Any) -> None:
    qwen = ours_render(served, "qwen3", "tools")
    wrapped = json.dumps({"type": "function", "function": ADD}, ensure_ascii=False)
    assert f"<tools>\n{wrapped}\n</tools>" in qwen
    gemma = ours_render(served, "gemma3", "tools")
    assert f"<tools>{wrapped}</tools>" in gemma  # its whitespace control eats the newlines
    # the reference's Gemma tool template prints a system message's content as it gets it: under
    # vLLM, OpenAI text parts (BFCL's items have no system message, so this never shows there)
    assert gemma.startswith(
        "<bos>\n<start_of_turn>system[{'type': 'text', 'text': 'Call functions.'}]# Tools\n\n"
    )


def test_gemma_plain_template_keeps_strict_alternation() -> None:
    from jinja2.exceptions import TemplateError

    api_messages = CASES["plain"] * 2
    with pytest.raises(TemplateError, match="alternate"):
        tokenizer("gemma3").apply_chat_template(
            api_messages,
            chat_template=template_path("gemma3").read_text(encoding="utf-8"),
            add_generation_prompt=True,
            tokenize=False,
        )


@pytest.mark.parametrize("case", ["plain", "system", "tools"])
def test_gemma_prompt_starts_with_exactly_one_bos(served: Any, case: str) -> None:
    model = served("gemma3", case in TOOL_CASES)
    tok = model.api.tokenizer
    bos = tok.bos_token_id
    # the fixture's tokenizer adds a BOS as Gemma's does: tokenising as inspect does by default
    # would give two
    assert tok("<bos>x")["input_ids"][:2] == [bos, bos]
    _, ids = scripted(model, "Hello.")
    ask(model, case)
    [prompt] = ids
    assert prompt[0] == bos and prompt.count(bos) == 1


CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n</tool_call>'


@pytest.mark.parametrize(
    ("text", "calls", "content"),
    [
        ("I would add them.", [], "I would add them."),
        ("Sure.\n" + CALL, [("add", {"a": 1, "b": 2.5})], "Sure.\n"),
        (CALL, [("add", {"a": 1, "b": 2.5})], None),
        (CALL + "\n" + CALL, [("add", {"a": 1, "b": 2.5})] * 2, None),
        ('<tool_call>{"name": "add", "arguments": {"a": 1}}', [("add", {"a": 1})], None),
        # fenced JSON inside the block: vLLM's hermes parser fails, so no calls at all
        (
            '<tool_call>\n```json\n{"name": "add", "arguments": {"a": 1}}\n```\n</tool_call>',
            [],
            "*",
        ),
        # one bad block voids the good one
        (CALL + '\n<tool_call>{"name": "add"}</tool_call>', [], "*"),
        ('<tool_call>[{"name": "add", "arguments": {}}]</tool_call>', [], "*"),
        ("<tool_call></tool_call>", [], "*"),
        # fenced JSON with no block is text (inspect's own HF handler took it as a call)
        ('```json\n{"name": "add", "arguments": {"a": 1}}\n```', [], "*"),
    ],
)
def test_hermes_rule(text: str, calls: list[Any], content: str | None) -> None:
    parsed = hermes.parse(text)
    assert [(c.name, c.arguments) for c in parsed.calls] == calls
    assert parsed.content == (text if content == "*" else content)


def test_hf_backend_reads_calls_by_the_hermes_rule(served: Any) -> None:
    """Through the real provider: a Hermes call is a tool call; fenced JSON is none."""
    model = served("qwen3", True)
    scripted(model, CALL)
    out = ask(model, "tools")
    [call] = out.message.tool_calls
    assert (call.function, call.arguments) == ("add", {"a": 1, "b": 2.5})
    fenced = '```json\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n```'
    scripted(model, fenced)
    out = ask(model, "tools")
    assert not out.message.tool_calls and out.message.text == fenced


@pytest.mark.parametrize("fam", FAMILIES)
def test_vllm_backend_serves_as_the_reference(fam: str, tmp_path: Path) -> None:
    """`vllm serve` gets the reference's template file and, for tool items, the hermes parser;
    no reasoning parser and no template kwargs (thinking as the template leaves it)."""
    from posttrainbench.evaluate.backends import BACKENDS, ModelRequest

    for tools in (False, True):
        req = ModelRequest(
            model_dir=tmp_path, template_file=template_path(fam, tools=tools), tools=tools
        )
        args = BACKENDS.get("vllm").model(req).args
        reference = reference_file(fam, tools).read_bytes()
        assert Path(args["chat_template"]).read_bytes() == reference
        assert not {"reasoning_parser", "chat_template_kwargs", "enable_thinking"} & set(args)
        if tools:
            assert args["tool_call_parser"] == "hermes" and args["enable_auto_tool_choice"]
        else:
            assert "tool_call_parser" not in args


def test_bfcl_types_map_as_the_references_inspect_evals_solver() -> None:
    from posttrainbench.evaluate.benchmarks.bfcl import json_schema

    bfcl = {
        "type": "dict",
        "properties": {
            "x": {"type": "float"},
            "flag": {"type": "bool"},
            "pair": {"type": "tuple", "items": {"type": "integer"}},
            "thing": {"type": "any", "description": "anything"},
            "type": {"type": "String"},  # a parameter named "type" stays a parameter
        },
        "required": ["x"],
    }
    assert json_schema(bfcl) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "flag": {"type": "boolean"},
            "pair": {"type": "array", "items": {"type": "integer"}},
            "thing": {"description": "anything"},
            "type": {"type": "string"},
        },
        "required": ["x"],
    }
