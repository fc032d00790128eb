"""The `hf` evaluation backend: inspect-ai's transformers provider, made to follow the harness.

Registered with inspect as the model API `ptb-hf`. It loads like inspect's `hf` provider
(safetensors only, never remote code) and then replaces the model's generation config: decoding
comes from the benchmark, never from the submitted `generation_config.json` (an agent-controlled
lever in the reference), and generation stops at the template family's end-of-turn tokens.
A multimodal checkpoint (gemma-3-4b-pt's `Gemma3ForConditionalGeneration`) loads through
`AutoModelForImageTextToText` and generates from text alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspect_ai.model import GenerateConfig, modelapi
from inspect_ai.model._providers.hf import HuggingFaceAPI

API_NAME = "ptb-hf"
MULTIMODAL_ARCHITECTURES = ("Gemma3ForConditionalGeneration",)


def auto_model_class(model_dir: Path) -> str | None:
    """The transformers auto-class for a checkpoint AutoModelForCausalLM cannot load."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if any(a in MULTIMODAL_ARCHITECTURES for a in config.get("architectures") or []):
        return "AutoModelForImageTextToText"
    return None


@modelapi(name=API_NAME)
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
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self.model.generation_config = neutral_generation_config(self.tokenizer, stop_tokens)


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
