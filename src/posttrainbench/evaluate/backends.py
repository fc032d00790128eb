"""Model backends of the evaluation, registered by name (`--eval-backend`).

A backend turns (model folder, template, stop tokens) into an inspect-ai model name and its
arguments. `auto` (the default) is AUTO_WITH_CUDA (`engine`) where CUDA is available and `hf`
elsewhere. `engine`
loads and renders as `hf` and generates with the harness's continuous-batching engine
(evaluate/engine.py), keeping `hf`'s generation where the engine cannot run, with the reason in
metrics.json. `hf` (transformers, CPU or GPU) runs in the evaluating process; `vllm`
uses inspect's vLLM provider, which starts `vllm serve` on the folder or, given a base URL
(`--eval-base-url` or `VLLM_BASE_URL`), talks to a running OpenAI-compatible server. Given a
`tokenizer_dir` (the base model's folder), both tokenise with its files, never the submitted ones.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from posttrainbench.records import SamplingDefaults
from posttrainbench.registry import Registry


class ModelRequest(BaseModel):
    """What the evaluation asks of a backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path
    template_file: Path | None  # the family's Jinja template; None: the model's own
    tokenizer_dir: Path | None = None  # the base model's tokenizer files; None: the model's own
    stop_tokens: tuple[str, ...] = ()
    tools: bool = False
    batch_size: int | None = None  # samples in flight (engine: its slots); None: the backend's
    base_url: str | None = None
    sampling: SamplingDefaults | None = None  # the model's own (generation.py); None: greedy
    seed: int | None = None  # the evaluation seed: run_task seeds the sampler with it


class ModelSpec(BaseModel):
    """How inspect-ai reaches the model: its name, model_args and base URL."""

    name: str
    args: dict[str, Any]
    base_url: str | None = None
    max_connections: int  # samples inspect keeps in flight
    extra_body: dict[str, Any] = {}  # what every request carries besides the task's settings


class EvalBackend(ABC):
    name: str
    description: str
    default_batch_size = 64

    def batch_size(self, req: ModelRequest) -> int:
        return req.batch_size or self.default_batch_size

    @abstractmethod
    def model(self, req: ModelRequest) -> ModelSpec:
        """The inspect model name, model_args and base URL."""

    def describe(self, req: ModelRequest) -> dict[str, str | int | float | None]:
        """What metrics.json records about how the model was served."""
        return {"backend": self.name}

    def runs_seeds_together(self, api: Any) -> bool:
        """Whether the loaded model (`api`: its inspect ModelAPI) can serve a benchmark's
        seeds at once, each sample drawn from its own task's seed. Not where sampling draws
        from the process's generator, which run_task seeds before each evaluation."""
        return False


class HfBackend(EvalBackend):
    name = "hf"
    description = "transformers in the evaluating process (CPU or GPU)"

    def model(self, req: ModelRequest) -> ModelSpec:
        from posttrainbench.evaluate import hf_backend

        args: dict[str, Any] = {
            "model_path": str(req.model_dir),
            "trust_remote_code": False,
            "use_safetensors": True,
            "do_sample": bool(req.sampling and not req.sampling.greedy),
            "batch_size": self.batch_size(req),
            "stop_tokens": list(req.stop_tokens),
            "sampling": hf_backend.sampling_fields(req.sampling),
            # as vLLM's chat endpoint: the template writes the BOS (Gemma), nothing is added
            "tokenizer_call_args": {"add_special_tokens": False},
        }
        if req.tokenizer_dir is not None:
            args["tokenizer_path"] = str(req.tokenizer_dir)
        if req.template_file is not None:
            args["chat_template"] = req.template_file.read_text(encoding="utf-8")
        auto = hf_backend.auto_model_class(req.model_dir)
        if auto:
            args["auto_model_class"] = auto
        return ModelSpec(
            name=f"{hf_backend.API_NAME}/{req.model_dir.name}",
            args=args,
            max_connections=self.batch_size(req),
        )


class VllmBackend(EvalBackend):
    name = "vllm"
    description = "vLLM server (started by inspect, or a running one at --eval-base-url)"

    def base_url(self, req: ModelRequest) -> str | None:
        return req.base_url or os.environ.get("VLLM_BASE_URL")

    def model(self, req: ModelRequest) -> ModelSpec:
        args: dict[str, Any] = {}
        url = self.base_url(req)
        if not url:  # vllm serve arguments
            args["trust_remote_code"] = False
            # neutral server defaults: the allow-listed sampling goes explicitly in every request
            args["generation_config"] = "vllm"
            if req.tokenizer_dir is not None:
                args["tokenizer"] = str(req.tokenizer_dir)
            if req.template_file is not None:
                args["chat_template"] = str(req.template_file)
            if req.tools:
                args["enable_auto_tool_choice"] = True
                args["tool_call_parser"] = "hermes"
        extra: dict[str, Any] = {}
        if req.stop_tokens:  # vLLM stops at the tokenizer's EOS alone: end-of-turn ids too
            ids = stop_token_ids(req.tokenizer_dir or req.model_dir, req.stop_tokens)
            if ids:
                extra["stop_token_ids"] = list(ids)
        return ModelSpec(
            name=f"vllm/{req.model_dir}",
            args=args,
            base_url=url,
            extra_body=extra,
            max_connections=self.batch_size(req),
        )

    def describe(self, req: ModelRequest) -> dict[str, str | int | float | None]:
        url = self.base_url(req)
        return {
            "backend": self.name,
            "server": url or "started by inspect",
            # A running server applies its own chat template; sampling is sent in every request.
            "template_applied_by": "server" if url else "harness (vllm --chat-template)",
        }


@functools.cache
def stop_token_ids(tokenizer_dir: Path, tokens: tuple[str, ...]) -> tuple[int, ...]:
    """The ids of those `tokens` the tokenizer has as single tokens; none where there is no
    tokenizer to read (a running server's model need not be on this machine). Read once per
    process: every seed of every benchmark asks again."""
    from transformers import AutoTokenizer

    try:
        vocab = AutoTokenizer.from_pretrained(tokenizer_dir).get_vocab()
    except (OSError, ValueError):
        return ()
    return tuple(vocab[t] for t in tokens if t in vocab)


class EngineBackend(EvalBackend):
    name = "engine"
    description = "the harness's continuous-batching engine on a GPU (else hf's generation)"
    # the slots measured on the H100: decode reads the weights once per step for all of them
    default_batch_size = 256

    def model(self, req: ModelRequest) -> ModelSpec:
        from posttrainbench.evaluate import engine_backend

        spec = HfBackend().model(req)
        slots = self.batch_size(req)
        return ModelSpec(
            name=f"{engine_backend.API_NAME}/{req.model_dir.name}",
            args={**spec.args, "engine_slots": slots},
            # twice the slots in flight: a finished sample's slot refills at once
            max_connections=2 * slots,
        )

    def describe(self, req: ModelRequest) -> dict[str, str | int | float | None]:
        from posttrainbench.evaluate import engine_backend

        return {"backend": self.name, **engine_backend.STATUS.get(str(req.model_dir), {})}

    def runs_seeds_together(self, api: Any) -> bool:
        # the engine seeds every draw from the task's seed; its hf fallback does not
        return getattr(api, "server", None) is not None


AUTO = "auto"
# What `auto` picks where CUDA is available: the engine (token-identical to `hf` on CPU; on an
# H100 it runs compiled, several times the `hf` provider's rate, and checks itself against the
# model's own forward pass at every start, handing generation back to `hf` where it disagrees)
AUTO_WITH_CUDA = "engine"


def resolve(name: str) -> str:
    """The backend `name` stands for here: `auto` is AUTO_WITH_CUDA with CUDA, `hf` without."""
    if name != AUTO:
        BACKENDS.get(name)  # an unknown name fails here, with the registry's hint
        return name
    import torch

    return AUTO_WITH_CUDA if torch.cuda.is_available() else "hf"


BACKENDS: Registry[EvalBackend] = Registry("backend", EvalBackend)
for _b in (HfBackend(), EngineBackend(), VllmBackend()):
    BACKENDS.register(_b.name, _b)
