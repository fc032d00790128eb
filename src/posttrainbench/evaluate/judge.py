"""The LLM judge of judged benchmarks (Arena-Hard Writing, HealthBench).

Any inspect-ai model (`--judge-model openai/gpt-5-mini`), or one behind an OpenAI-compatible
endpoint (`--judge-base-url`). Replies are cached on disk by content — judge model, its
settings and the exact prompt — under `<cache>/judgments/`, so re-scoring costs nothing and a
judgment never changes under a rerun. An unparsable reply or a failed call is retried; after the
last attempt the judgment is a recorded failure that the scorer counts (never dropped from the
denominator); how it counts is the benchmark's rule. A prompt may come with a system turn
(Arena-Hard sends one). Every call's tokens and cost (the relay's price table) are tallied per
sample and reported in the score metadata under "judge" (summed into metrics.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from posttrainbench.errors import ConfigError
from posttrainbench.records import JudgeUsage, Usage

T = TypeVar("T")
ATTEMPTS = 3


def require_judge(model: str | None, benchmark: str) -> str:
    if not model:
        raise ConfigError(
            f"{benchmark} is scored by an LLM judge and no judge model was given",
            "pass --judge-model openai/gpt-5-mini (the published judge), or any inspect model",
        )
    return model


class Tally(JudgeUsage):
    """What judging one sample cost (summed over samples into metrics.json's `judge`)."""

    def as_metadata(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass
class Judgment(Generic[T]):
    value: T | None
    reply: str | None = None
    attempts: int = 0
    cached: bool = False
    error: str | None = None


@dataclass
class Judge:
    model: str
    base_url: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. reasoning_effort
    cache_dir: Path | None = None
    attempts: int = ATTEMPTS
    draw: int = 0  # > 0: an independent repeat of the same judgment (majority votes), cached apart

    def __post_init__(self) -> None:
        if self.cache_dir is None:
            from posttrainbench.config import load_settings

            self.cache_dir = load_settings().cache_dir / "judgments"
        self._cache_root: Path = self.cache_dir
        self._model: Any = None

    def key(self, prompt: str, system: str | None = None) -> str:
        parts: list[Any] = [self.model, self.settings, prompt]
        if system is not None:
            parts.append({"system": system})
        blob = json.dumps([*parts, self.draw] if self.draw else parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self._cache_root / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> str | None:
        try:
            return str(json.loads(self._cache_path(key).read_text())["reply"])
        except (OSError, ValueError, KeyError):
            return None

    def _store(self, key: str, prompt: str, reply: str) -> None:
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".j-")
        with os.fdopen(fd, "w") as f:
            digest = hashlib.sha256(prompt.encode()).hexdigest()
            record = {"model": self.model, "settings": self.settings, "reply": reply}
            json.dump({**record, "prompt_sha256": digest}, f)
        os.replace(tmp, path)  # concurrent samples: last identical writer wins

    def _get_model(self) -> Any:
        if self._model is None:
            from inspect_ai.model import GenerateConfig, get_model

            kwargs: dict[str, Any] = {}
            if self.base_url:
                kwargs["base_url"] = self.base_url
                kwargs["api_key"] = os.environ.get("PTB_JUDGE_API_KEY") or os.environ.get(
                    "OPENAI_API_KEY", "unused"
                )
            self._model = get_model(
                self.model, config=GenerateConfig(**self.settings), memoize=False, **kwargs
            )
        return self._model

    async def ask(
        self,
        prompt: str,
        parse: Callable[[str], T | None],
        tally: Tally,
        system: str | None = None,
    ) -> Judgment[T]:
        """The parsed judgment of `prompt` (the user turn, after `system` when given): from the
        cache, else asked up to `attempts` times."""
        key = self.key(prompt, system)
        reply = self._cached(key)
        if reply is not None:
            value = parse(reply)
            if value is not None:
                tally.cached += 1
                return Judgment(value, reply, 0, cached=True)
        error = None
        for attempt in range(1, self.attempts + 1):
            try:
                output = await self._get_model().generate(_messages(prompt, system))
            except Exception as exc:  # an outage or refusal: retried, then counted
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                tally.calls += 1
                continue
            tally.calls += 1
            self._count(output, tally)
            reply = output.completion
            value = parse(reply)
            if value is not None:
                self._store(key, prompt, reply)
                return Judgment(value, reply, attempt)
            error = f"unparsable judgment: {reply[-200:]!r}"
        tally.failed += 1
        return Judgment(None, reply, self.attempts, error=error)

    def _count(self, output: Any, tally: Tally) -> None:
        usage = getattr(output, "usage", None)
        if usage is None:
            return
        tally.input_tokens += usage.input_tokens or 0
        tally.output_tokens += usage.output_tokens or 0
        from posttrainbench.sandbox.relay.prices import load_prices

        price = load_prices().lookup(self.model.rsplit("/", 1)[-1])
        if price is not None:
            cost = price.cost(
                Usage(
                    input_tokens=usage.input_tokens or 0,
                    output_tokens=usage.output_tokens or 0,
                    cached_tokens=usage.input_tokens_cache_read or 0,
                )
            )
            tally.cost_usd = round((tally.cost_usd or 0.0) + float(cost), 6)


def _messages(prompt: str, system: str | None) -> Any:
    if system is None:
        return prompt
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser

    return [ChatMessageSystem(content=system), ChatMessageUser(content=prompt)]
