"""Anthropic Messages API: `POST /v1/messages` (JSON or SSE), token counting and model lists.

Usage: `message_start` carries the prompt's tokens, `message_delta` the running output count (and,
in newer API versions, final prompt counts); the latest value of each field wins. Anthropic's
`input_tokens` leaves out cache reads and writes, so they are added to get every prompt token.

Provider-side tools are the typed ones (`web_search_20250305`, `web_fetch_*`, `code_execution_*`,
...) and `mcp_servers`; the agent's own tools have no type, or `custom`.
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

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class AnthropicMeter(Meter):
    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[str, int] = {}

    def event(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("type") == "message_start":
            message = data.get("message")
            self._take(message.get("usage") if isinstance(message, dict) else None)
        elif data.get("type") == "message_delta":
            self._take(data.get("usage"))
            self.final = isinstance(data.get("usage"), dict)

    def body(self, data: Any) -> None:
        if isinstance(data, dict):
            self._take(data.get("usage"))
            self.final = self.seen

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
            if (n := count(usage, key)) is not None:
                self._fields[key] = n
        if (n := count(usage, "cache_creation_input_tokens")) is not None:
            self._fields["cache_write"] = n
            self._fields["cache_write_1h"] = (
                count(usage, "cache_creation", "ephemeral_1h_input_tokens") or 0
            )
        self.seen = True
        f = self._fields
        cached, written = f.get("cache_read_input_tokens", 0), f.get("cache_write", 0)
        self.usage.input_tokens = f.get("input_tokens", 0) + cached + written
        self.usage.output_tokens = f.get("output_tokens", 0)
        self.usage.cached_tokens = cached
        self.usage.cache_write_tokens = written
        self.usage.cache_write_1h_tokens = f.get("cache_write_1h", 0)


class Anthropic(WireFormat):
    name = "anthropic"
    key_vars = ("ANTHROPIC_API_KEY",)
    base_var = "ANTHROPIC_BASE_URL"
    default_base = "https://api.anthropic.com"
    routes = (
        Route("POST", r"/v1/messages"),
        Route("POST", r"/v1/messages/count_tokens", metered=False),
        Route("GET", r"/v1/models(/[^/]+)?", metered=False),
    )
    default_max_output = 128_000

    def client_tokens(self, headers: Mapping[str, str], query: str) -> list[str]:
        keys = [headers["x-api-key"]] if "x-api-key" in headers else []
        return keys + bearer(headers)

    def upstream_auth(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def error_body(self, status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        return json_error({"type": "error", "error": {"type": kind, "message": message}})

    def meter(self) -> Meter:
        return AnthropicMeter()

    def max_output(self, match: re.Match[str], body: dict[str, Any], default: int) -> int:
        return limit(body, "max_tokens") or default

    def provider_tools(
        self, match: re.Match[str], body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        return strip_tools(body, _split, ("mcp_servers",), ("tool_choice",))

    def client_env(self, base_url: str, token: str) -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": base_url.rstrip("/"), "ANTHROPIC_API_KEY": token}


def _split(tool: Any) -> tuple[Any, list[str]]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    return (tool, []) if kind in (None, "custom") else (None, [str(kind)])
