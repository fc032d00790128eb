"""Base models that can be post-trained: the four official ones and the embedded `ptb-tiny`.

Each entry names its instruct counterpart (used for the score gap and the provenance checks), its
chat-template family, its column in the baseline table, and how to find its weights locally.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from posttrainbench.errors import ModelUnavailableError


class BaseModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    hf_id: str | None = None
    instruct: str | None = None
    twin_exempt: str | None = None  # why there is no instruct twin (provenance then has none)
    template_family: str
    builder: str | None = None  # "module:function(models_root) -> Path" for built-in models
    description: str = ""

    @property
    def baseline_key(self) -> str:
        """The model's row in baseline tables: the repo name without the owner."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def instruct_key(self) -> str | None:
        return self.instruct.rsplit("/", 1)[-1] if self.instruct else None

    def locate(self, models_root: Path) -> Path:
        """Local folder holding the weights; builds built-in models, never downloads."""
        if self.builder:
            module, _, func = self.builder.partition(":")
            path: Path = getattr(importlib.import_module(module), func)(models_root)
            return path
        return hf_cache_path(self.hf_id or self.name)


def hf_cache_path(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from posttrainbench.config import hub_cache

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hub_cache()))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        raise ModelUnavailableError(
            f"base model {repo_id} is not in the local Hugging Face cache",
            f"run `hf download {repo_id}` where there is network (HF_HOME selects the cache)",
        ) from exc


OFFICIAL = [
    BaseModelInfo(
        name="Qwen/Qwen3-1.7B-Base",
        display_name="Qwen3 1.7B Base",
        hf_id="Qwen/Qwen3-1.7B-Base",
        instruct="Qwen/Qwen3-1.7B",
        template_family="qwen3",
    ),
    BaseModelInfo(
        name="Qwen/Qwen3-4B-Base",
        display_name="Qwen3 4B Base",
        hf_id="Qwen/Qwen3-4B-Base",
        instruct="Qwen/Qwen3-4B",
        template_family="qwen3",
    ),
    BaseModelInfo(
        name="HuggingFaceTB/SmolLM3-3B-Base",
        display_name="SmolLM3 3B Base",
        hf_id="HuggingFaceTB/SmolLM3-3B-Base",
        instruct="HuggingFaceTB/SmolLM3-3B",
        template_family="smollm3",
    ),
    BaseModelInfo(
        name="google/gemma-3-4b-pt",
        display_name="Gemma 3 4B PT",
        hf_id="google/gemma-3-4b-pt",
        instruct="google/gemma-3-4b-it",
        template_family="gemma3",
    ),
]

EMBEDDED = [
    BaseModelInfo(
        name="ptb-tiny",
        display_name="ptb-tiny (embedded)",
        template_family="ptb-tiny",
        builder="posttrainbench.embedded.tiny_model:ensure_built",
        twin_exempt="built here from random weights; no instruct version of it exists",
        description="Qwen3-architecture toy model built offline; random weights.",
    ),
]
