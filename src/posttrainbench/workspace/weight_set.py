"""The one weight set of a model folder: what every reader of final_model (provenance, the
evaluation, vLLM) loads, and nothing else.

The set is `model.safetensors` alone, or `model.safetensors.index.json` with exactly the shards
its weight_map names, plain file names in the folder itself. Anything that would let one reader
load other weights than another is refused with a one-line reason: a further *.safetensors
beside the set (transformers loads `model.safetensors` first, a glob reads every shard), an index
naming a path (`..`, absolute, a sub-folder) or a missing shard, `transformers_weights` in
config.json (transformers loads the file it names), a PEFT adapter (applied on top of the
weights). Sub-folders are not part of the folder's weights: nobody loads from them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"
MAX_INDEX_BYTES = 64 << 20
Reader = Callable[[str], bytes]
_MERGE_HINT = "merge it into the model (merge_and_unload) and save the full model"


class WeightSetError(Exception):
    """The folder has no single weight set; the message is the one-line reason."""


def is_weights(name: str) -> bool:
    return name.lower().endswith(".safetensors")


def weight_set(folder: Path) -> list[str]:
    """The folder's weight set, in load order ([SINGLE] or [INDEX, shards...]); raises
    WeightSetError naming why there is none."""
    names = {p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()}
    return check(names, lambda name: (folder / name).read_bytes())


def check(names: set[str], read: Reader) -> list[str]:
    """`weight_set` over the top-level file names and a reader of their bytes."""
    weights = sorted(n for n in names if is_weights(n))
    if ADAPTER_CONFIG in names or "adapter_model.safetensors" in names:
        raise WeightSetError(
            f"final_model holds a PEFT adapter, which would be applied on top of its weights: "
            f"{_MERGE_HINT}"
        )
    if "config.json" in names:
        config = _json(read, "config.json")
        if isinstance(config, dict) and "transformers_weights" in config:
            raise WeightSetError(
                "config.json names its own weights file (transformers_weights = "
                f"{str(config['transformers_weights'])[:80]!r}); remove the key"
            )
    if INDEX not in names:
        if weights != [SINGLE]:
            listed = ", ".join(weights[:5]) or "none"
            raise WeightSetError(
                f"final_model must hold exactly one weight set ({SINGLE}, or {INDEX} and the "
                f"shards it names); found *.safetensors: {listed}"
            )
        return [SINGLE]
    shards = _shards(read)
    missing = sorted(shards - names)
    if missing:
        raise WeightSetError(f"{INDEX} names shards that are not in final_model: {missing[:5]}")
    extra = sorted(set(weights) - shards)
    if extra:
        raise WeightSetError(
            f"*.safetensors beside the weight set {INDEX} names (never loaded by everyone "
            f"alike): {', '.join(extra[:5])}; delete them"
        )
    return [INDEX, *sorted(shards)]


def _shards(read: Reader) -> set[str]:
    index = _json(read, INDEX)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightSetError(f"{INDEX} has no weight_map naming the shards")
    shards: set[str] = set()
    for shard in weight_map.values():
        if (
            not isinstance(shard, str)
            or not is_weights(shard)
            or "/" in shard
            or "\\" in shard
            or shard.startswith(".")
        ):
            raise WeightSetError(
                f"{INDEX} names {str(shard)[:80]!r}: a shard must be a *.safetensors file in "
                "final_model itself"
            )
        shards.add(shard)
    return shards


def _json(read: Reader, name: str) -> object:
    try:
        data = read(name)
    except OSError as e:
        raise WeightSetError(f"{name} cannot be read: {e.strerror}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise WeightSetError(f"{name} is larger than {MAX_INDEX_BYTES >> 20} MB")
    try:
        return json.loads(data)
    except ValueError:
        if name == "config.json":
            return None  # not this rule's concern: loading it fails plainly
        raise WeightSetError(f"{name} is not valid JSON") from None
