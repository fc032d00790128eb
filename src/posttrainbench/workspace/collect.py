"""Copies the agent's final_model out of the workspace, refusing anything unsafe to load.

Accepted: safetensors weights and the JSON/text/Jinja files of configs and tokenizers. Refused (the
whole model): a symlink anywhere, pickled weights (.bin .pt .pth .pkl .ckpt …), or no
config.json / no *.safetensors. Other files (READMEs, training scripts) are left behind and listed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from posttrainbench.records import CollectOutcome

ALLOWED_SUFFIXES = {".safetensors", ".json", ".jinja", ".txt", ".model", ".tiktoken"}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib"}


def inspect_model_dir(src: Path) -> CollectOutcome | tuple[list[Path], list[str]]:
    """A refusal/missing outcome, or (files to copy, relative names skipped)."""
    if src.is_symlink():
        return CollectOutcome(status="refused", reason="final_model is a symlink")
    if not src.is_dir():
        return CollectOutcome(status="missing", reason="the agent left no final_model/ folder")
    keep: list[Path] = []
    skipped: list[str] = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_symlink():
            return CollectOutcome(status="refused", reason=f"symlink in final_model: {rel}")
        if path.is_dir():
            continue
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            return CollectOutcome(
                status="refused",
                reason=f"pickle file in final_model: {rel} (only safetensors weights are loaded)",
            )
        if suffix in ALLOWED_SUFFIXES:
            keep.append(path)
        else:
            skipped.append(rel)
    names = {p.relative_to(src).as_posix() for p in keep}
    if "config.json" not in names:
        reason = "final_model has no config.json"
        return CollectOutcome(status="refused", reason=reason, skipped=skipped)
    if not any(n.endswith(".safetensors") for n in names):
        reason = "final_model has no *.safetensors weights"
        return CollectOutcome(status="refused", reason=reason, skipped=skipped)
    return keep, skipped


def collect_final_model(src: Path, dest: Path) -> CollectOutcome:
    checked = inspect_model_dir(src)
    if isinstance(checked, CollectOutcome):
        return checked
    keep, skipped = checked
    if dest.exists():
        shutil.rmtree(dest)  # a resumed collect starts over; the workspace copy is the source
    for path in keep:
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)  # copyfile never follows into special files or keeps modes
    return CollectOutcome(
        status="collected",
        files=[p.relative_to(src).as_posix() for p in keep],
        skipped=skipped,
    )
