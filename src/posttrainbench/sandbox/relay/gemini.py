"""Gemini API: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`.

Clients send the key as `x-goog-api-key` or `?key=`; upstream it goes as `x-goog-api-key` only.
Every streamed chunk carries `usageMetadata` so far, the last one the totals. `promptTokenCount`
includes `cachedContentTokenCount`; thinking (`thoughtsTokenCount`) is billed as output, and
tool-use prompts (`toolUsePromptTokenCount`) as input. Without `alt=sse` the stream is one JSON
array of chunks.
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
    query_values,
)

_VERSION = r"/v1(?:beta|alpha)?"
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
        self.body(data)

    def body(self, data: Any) -> None:
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

    def client_env(self, base_url: str, token: str) -> dict[str, str]:
        return {"GOOGLE_GEMINI_BASE_URL": base_url.rstrip("/"), "GEMINI_API_KEY": token}
