"""The `hf` evaluation backend: inspect-ai's transformers provider, made to follow the harness.

Registered with inspect as the model API `ptb-hf`. It loads like inspect's `hf` provider
(safetensors only, never remote code) and then replaces the model's generation config: sampling
is only the allow-listed fields the harness read from the submitted `generation_config.json` as
the reference's vLLM reads them (evaluate/generation.py; nothing else of the file applies), seeded
by the evaluation seed (run.run_task, before each evaluation), and generation stops at the
template family's end-of-turn tokens. A multimodal checkpoint (gemma-3-4b-pt's
`Gemma3ForConditionalGeneration`) loads through `AutoModelForImageTextToText` and generates
from text alone.

Prompts reach the template as vLLM's chat endpoint hands them over (the reference's engine):
tools in the `{"type": "function", "function": {...}}` wrapper, assistant tool calls as OpenAI
`function` objects with parsed arguments, no `enable_thinking` unless asked for. The prompt is
tokenised without added special tokens (the template writes its own BOS), and tool calls are read
from the output by vLLM's `hermes` rule (evaluate/hermes.py), never by inspect's HF handler.
"""

from __future__ import annotations

import json
import re
from typing import Any

from inspect_ai.model import ChatMessage, GenerateConfig, ModelOutput, modelapi
from inspect_ai.model._providers.hf import HuggingFaceAPI
from inspect_ai.tool import ToolChoice, ToolInfo

from posttrainbench.evaluate import hermes
from posttrainbench.evaluate.model_class import (  # re-exported: the backend's own names
    MULTIMODAL_ARCHITECTURES as MULTIMODAL_ARCHITECTURES,
)
from posttrainbench.evaluate.model_class import auto_model_class as auto_model_class
from posttrainbench.records import SamplingDefaults

API_NAME = "ptb-hf"
# vLLM renders a template that iterates over a message's content with OpenAI content parts
_LOOPS_OVER_CONTENT = re.compile(r"for\s+\w+\s+in\s+message(\[['\"]content['\"]\]|\.content\b)")


class HarnessHuggingFace(HuggingFaceAPI):
    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),  # noqa: B008 (inspect's own signature)
        **model_args: Any,
    ) -> None:
        stop_tokens: list[str] = list(model_args.pop("stop_tokens", None) or [])
        sampling: dict[str, float | int] = dict(model_args.pop("sampling", None) or {})
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self.model.generation_config = neutral_generation_config(self.tokenizer, stop_tokens)
        for name, value in sampling.items():
            setattr(self.model.generation_config, name, value)
        self._chat_tools: list[ToolInfo] = []

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        # inspect renders the chat synchronously before its first await, so the tools set here
        # are the ones _apply_chat_template reads; given no tools, inspect parses no calls.
        self._chat_tools = tools
        output = await super().generate(input, [], tool_choice, config)
        return with_hermes_calls(output, tools) if tools else output

    def _apply_chat_template(
        self, hf_messages: list[ChatMessage], tools_list: list[dict[str, Any]], chat_template: Any
    ) -> str:
        kwargs: dict[str, Any] = {}
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        parts = bool(_LOOPS_OVER_CONTENT.search(chat_template or ""))
        rendered = self.tokenizer.apply_chat_template(
            [vllm_message(m, parts=parts) for m in hf_messages],
            chat_template=chat_template,
            tools=[vllm_tool(t) for t in self._chat_tools] or None,
            add_generation_prompt=True,
            tokenize=False,
            **kwargs,
        )
        if not isinstance(rendered, str):
            raise TypeError(f"the chat template rendered {type(rendered).__name__}, not text")
        return rendered


# registered by a call, not as a decorator: the decorator hands back a factory, and the
# engine backend's provider subclasses this class
modelapi(name=API_NAME)(HarnessHuggingFace)


def vllm_tool(tool: ToolInfo) -> dict[str, Any]:
    """A tool as vLLM hands it to the template (its ChatCompletionToolsParam, dumped)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters.model_dump(exclude_none=True),
        },
    }


def vllm_message(message: ChatMessage, *, parts: bool = False) -> dict[str, Any]:
    """A message as vLLM hands it to the template: role, text (as OpenAI text parts for a
    template that loops over the content, as vLLM's content-format detection does), OpenAI-shaped
    tool calls."""
    text = message.text
    content: Any = [{"type": "text", "text": text}] if parts else text
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function, "arguments": c.arguments},
            }
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def with_hermes_calls(output: ModelOutput, tools: list[ToolInfo]) -> ModelOutput:
    """The output with its tool calls read by vLLM's hermes rule, as the vllm backend gets it."""
    from inspect_ai.model._call_tools import parse_tool_call

    for choice in output.choices:
        parsed = hermes.parse(choice.message.text)
        if parsed.calls:
            choice.message.content = parsed.content or ""
            choice.message.tool_calls = [
                parse_tool_call(
                    f"call_{i}", c.name, json.dumps(c.arguments, ensure_ascii=False), tools
                )
                for i, c in enumerate(parsed.calls)
            ]
            choice.stop_reason = "tool_calls"
    return output


def sampling_fields(s: SamplingDefaults | None) -> dict[str, float | int]:
    """The generation-config fields that make transformers sample as vLLM would (greedy: none;
    temperature, top_p and top_k also travel in each request's GenerateConfig)."""
    if s is None or s.greedy:
        return {}
    fields: dict[str, float | int] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,  # 0: no top-k in transformers as in vLLM
        "repetition_penalty": s.repetition_penalty,
    }
    if s.min_p > 0:
        fields["min_p"] = s.min_p
    return fields


def neutral_generation_config(tokenizer: Any, stop_tokens: list[str]) -> Any:
    """A generation config with no decoding defaults: only stop and pad ids."""
    from transformers import GenerationConfig

    eos: list[int] = []
    vocab = tokenizer.get_vocab()
    for token in [*stop_tokens, tokenizer.eos_token]:
        if token and token in vocab and vocab[token] not in eos:
            eos.append(vocab[token])
    return GenerationConfig(
        eos_token_id=eos or None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else None,
        bos_token_id=tokenizer.bos_token_id,
    )
