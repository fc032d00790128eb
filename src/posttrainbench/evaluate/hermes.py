"""Tool calls read from a model's text by the rule of vLLM's `hermes` parser (the reference's).

A response with no `<tool_call>` is plain content. Otherwise every `<tool_call>…</tool_call>`
block (and an unclosed last one, up to the end) must hold a JSON object with `name` and
`arguments`; if any block does not (fenced JSON, a list, a missing key), the response has no tool
calls at all and its whole text is the content. With calls, the content is the text before the
first `<tool_call>`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

START = "<tool_call>"
_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


class HermesCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arguments: Any  # the JSON value the model wrote (vLLM passes it on re-serialised)


class HermesParse(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str | None
    calls: tuple[HermesCall, ...] = ()


def parse(text: str) -> HermesParse:
    if START not in text:
        return HermesParse(content=text)
    calls: list[HermesCall] = []
    for closed, unclosed in _BLOCK.findall(text):
        try:
            obj = json.loads(closed or unclosed)
            name, arguments = obj["name"], obj["arguments"]
        except (ValueError, TypeError, KeyError, IndexError):
            return HermesParse(content=text)
        if not isinstance(name, str):  # vLLM's FunctionCall(name=...) rejects it
            return HermesParse(content=text)
        calls.append(HermesCall(name=name, arguments=arguments))
    return HermesParse(content=text[: text.find(START)] or None, calls=tuple(calls))
