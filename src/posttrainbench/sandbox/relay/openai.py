"""OpenAI Responses (`POST /v1/responses`) and Chat Completions (`POST /v1/chat/completions`).

Responses: usage is `response.usage` of the `response.completed` (or `.incomplete`, `.failed`)
event, or `usage` of the JSON body; `input_tokens` already includes the cached ones.

Chat Completions streams carry usage only in a last chunk (with `choices: []`) that the upstream
sends when the request asks `stream_options.include_usage`. The relay sets it on every streamed
chat request, since a stream without usage cannot be priced nor held to a budget. The client then
gets one more chunk than it asked for, byte for byte as the upstream sent it; clients built on the
official SDKs read it as the usage they did not ask for.

Provider-side tools are the built-in ones of Responses (`web_search`, `file_search`,
`code_interpreter`, `mcp`, `image_generation`, ...: every type but `function`, `custom` and
`local_shell`, which the client runs) and Chat Completions' `web_search_options`; the search
models (`gpt-4o-search-preview`, `*-deep-research`) search whatever the request holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from posttrainbench.sandbox.relay.wire import (
    Meter,
    Route,
    WireFormat,
    bearer,
    count,
    json_error,
    limit,
    strip_tools,
)

_CHAT = "/v1/chat/completions"
_CLIENT_TOOLS = ("function", "custom", "local_shell")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {401: "invalid_api_key", 403: "ptb_relay_refused", 502: "ptb_upstream_unreachable"}


class OpenAIMeter(Meter):
    def event(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        response = data.get("response")
        if isinstance(response, dict):
            self._take(response.get("usage"))
        else:
            self._take(data.get("usage"))

    def body(self, data: Any) -> None:
        if isinstance(data, dict):
            self._take(data.get("usage"))

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:
            prompt, output, details = "input_tokens", "output_tokens", "input_tokens_details"
        elif "prompt_tokens" in usage:
            prompt, output, details = "prompt_tokens", "completion_tokens", "prompt_tokens_details"
        else:
            return
        self.seen = self.final = True  # usage comes once, with the end of the answer
        self.usage.input_tokens = count(usage, prompt) or 0
        self.usage.output_tokens = count(usage, output) or 0
        self.usage.cached_tokens = count(usage, details, "cached_tokens") or 0


class OpenAI(WireFormat):
    name = "openai"
    key_vars = ("OPENAI_API_KEY",)
    base_var = "OPENAI_BASE_URL"
    default_base = "https://api.openai.com/v1"
    routes = (
        Route("POST", r"/v1/responses"),
        Route("POST", re.escape(_CHAT)),
        Route("GET", r"/v1/models(/[^/]+)?", metered=False),
    )
    default_max_output = 128_000
    search_models = ("*search*", "*deep-research*")

    def client_tokens(self, headers: Mapping[str, str], query: str) -> list[str]:
        return bearer(headers)

    def upstream_auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def error_body(self, status: int, message: str) -> bytes:
        error = {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": _ERROR_CODES.get(status),
        }
        return json_error({"error": error})

    def meter(self) -> Meter:
        return OpenAIMeter()

    def prepare(self, match: re.Match[str], body: Any) -> Any | None:
        if match.string != _CHAT or not self.is_stream(match, body, ""):
            return None
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        if options.get("include_usage") is True:
            return None
        return {**body, "stream_options": {**options, "include_usage": True}}

    def max_output(self, match: re.Match[str], body: dict[str, Any], default: int) -> int:
        if match.string != _CHAT:
            return limit(body, "max_output_tokens") or default
        most = limit(body, "max_completion_tokens", "max_tokens") or default
        return most * (limit(body, "n") or 1)

    def provider_tools(
        self, match: re.Match[str], body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        fields = ("web_search_options",) if match.string == _CHAT else ()
        return strip_tools(body, _split, fields, ("tool_choice",))

    def client_env(self, base_url: str, token: str) -> dict[str, str]:
        return {"OPENAI_BASE_URL": base_url.rstrip("/") + "/v1", "OPENAI_API_KEY": token}


def _split(tool: Any) -> tuple[Any, list[str]]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    return (tool, []) if kind in _CLIENT_TOOLS else (None, [str(kind)])
