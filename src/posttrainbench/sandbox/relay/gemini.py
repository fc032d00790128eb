"""Gemini API: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`.

Clients send the key as `x-goog-api-key` or `?key=`; upstream it goes as `x-goog-api-key` only.
Every streamed chunk carries `usageMetadata` so far, the last one the totals. `promptTokenCount`
includes `cachedContentTokenCount`; thinking (`thoughtsTokenCount`) is billed as output, and
tool-use prompts (`toolUsePromptTokenCount`) as input. Without `alt=sse` the stream is one JSON
array of chunks.

A tool of a request may hold function declarations (the agent's own tools) and provider-side ones
(`googleSearch`, `googleSearchRetrieval`, `urlContext`, `codeExecution`, ...); only the function
declarations are the client's. The API takes every field in camelCase or snake_case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from posttrainbench.sandbox.relay.wire import (
    Meter,
    Route,
    WireFormat,
    count,
    drop_query_param,
    json_error,
    limit,
    query_values,
    strip_tools,
)

_VERSION = r"/v1(?:beta|alpha)?"
_FUNCTIONS = ("functionDeclarations", "function_declarations")
_MODEL = r"/models/(?P<model>[^/:]+)"
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


class GeminiMeter(Meter):
    def event(self, name: str, data: Any) -> None:
        """Every chunk has the usage so far; the one with a finish reason, the totals."""
        self._chunks(data)
        candidates = data.get("candidates") if isinstance(data, dict) else None
        for candidate in candidates if isinstance(candidates, list) else []:
            if isinstance(candidate, dict) and candidate.get("finishReason"):
                self.final = self.seen

    def body(self, data: Any) -> None:
        self._chunks(data)
        self.final = self.seen

    def _chunks(self, data: Any) -> None:
        for chunk in data if isinstance(data, list) else [data]:
            if isinstance(chunk, dict) and isinstance(chunk.get("usageMetadata"), dict):
                self._take(chunk["usageMetadata"])

    def _take(self, meta: dict[str, Any]) -> None:
        self.seen = True
        prompt = count(meta, "promptTokenCount") or 0
        tools = count(meta, "toolUsePromptTokenCount") or 0
        self.usage.input_tokens = prompt + tools
        self.usage.cached_tokens = count(meta, "cachedContentTokenCount") or 0
        candidates = count(meta, "candidatesTokenCount") or 0
        self.usage.output_tokens = candidates + (count(meta, "thoughtsTokenCount") or 0)


class Gemini(WireFormat):
    name = "gemini"
    key_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_var = "GOOGLE_GEMINI_BASE_URL"
    default_base = "https://generativelanguage.googleapis.com"
    routes = (
        Route("POST", _VERSION + _MODEL + r":(?P<action>generateContent|streamGenerateContent)"),
        Route("POST", _VERSION + _MODEL + r":countTokens", metered=False),
        Route("GET", _VERSION + r"/models(/[^/:]+)?", metered=False),
    )
    default_max_output = 65_536

    def client_tokens(self, headers: Mapping[str, str], query: str) -> list[str]:
        keys = [headers["x-goog-api-key"]] if "x-goog-api-key" in headers else []
        return keys + query_values(query, "key")

    def upstream_auth(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def forward_query(self, query: str) -> str:
        return drop_query_param(query, "key")

    def error_body(self, status: int, message: str) -> bytes:
        error = {"code": status, "message": message, "status": _STATUSES.get(status, "INTERNAL")}
        return json_error({"error": error})

    def meter(self) -> Meter:
        return GeminiMeter()

    def model(self, match: re.Match[str], body: Any) -> str | None:
        return match.groupdict().get("model")

    def is_stream(self, match: re.Match[str], body: Any, query: str) -> bool:
        return match.groupdict().get("action") == "streamGenerateContent"

    def max_output(self, match: re.Match[str], body: dict[str, Any], default: int) -> int:
        config = body.get("generationConfig", body.get("generation_config"))
        most = limit(config, "maxOutputTokens", "max_output_tokens") or default
        return most * (limit(config, "candidateCount", "candidate_count") or 1)

    def provider_tools(
        self, match: re.Match[str], body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        return strip_tools(body, _split, (), ("toolConfig", "tool_config"))

    def client_env(self, base_url: str, token: str) -> dict[str, str]:
        return {"GOOGLE_GEMINI_BASE_URL": base_url.rstrip("/"), "GEMINI_API_KEY": token}


def _split(tool: Any) -> tuple[Any, list[str]]:
    if not isinstance(tool, dict):
        return tool, []
    client = {k: v for k, v in tool.items() if k in _FUNCTIONS}
    return client or None, [k for k in tool if k not in _FUNCTIONS]
