"""Which transformers auto-class loads a checkpoint: read from its config.json alone, so that
callers outside the evaluation backend (the memorisation probe) need not import inspect-ai."""

from __future__ import annotations

import json
from pathlib import Path

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
