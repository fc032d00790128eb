"""What the agent downloaded from the Hugging Face hub, read from the cache folders it left.

The hub cache names each repo's folder `models--org--name` (`datasets--…`, `spaces--…`), and the
`datasets` library its processed copies `org___name`: wherever they are in the frozen trees
(HOME's `.cache/huggingface`, a workspace `HF_HOME`, /tmp), their names say which repos were
fetched. Not decisive on its own (the agent may download public data and models); provenance
uses the models as alternatives, decontamination lists the datasets as context.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posttrainbench.integrity.frozen import TREES

RepoKind = Literal["model", "dataset", "space"]
_HUB_FOLDER = re.compile(r"(models|datasets|spaces)--(.+)")
_KINDS: dict[str, RepoKind] = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_DEPTH = 8


@dataclass(frozen=True)
class DownloadedRepo:
    repo_id: str  # org/name as on the hub
    kind: RepoKind
    path: str  # the cache folder, `<tree>/<path>` (home/.cache/huggingface/hub/models--a--b)


def downloaded_repos(frozen_root: Path) -> list[DownloadedRepo]:
    """Every hub repo whose cache folder is in the frozen copy (`<run>/frozen`), sorted, one
    entry per repo and folder."""
    found: set[DownloadedRepo] = set()
    for tree in TREES:
        root = frozen_root / tree
        if not root.is_dir():
            continue
        for dirpath, dirs, _ in os.walk(root, followlinks=False):
            here = Path(dirpath)
            rel = here.relative_to(root)
            if len(rel.parts) >= MAX_DEPTH:
                dirs[:] = []
                continue
            for name in dirs:
                repo = _repo(name, parent=here.name)
                if repo is not None:
                    found.add(DownloadedRepo(repo[0], repo[1], f"{tree}/{(rel / name).as_posix()}"))
            dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return sorted(found, key=lambda r: (r.kind, r.repo_id, r.path))


def _repo(name: str, parent: str) -> tuple[str, RepoKind] | None:
    match = _HUB_FOLDER.fullmatch(name)
    if match:
        parts = match.group(2).split("--")
        if 1 <= len(parts) <= 2 and all(_PART.fullmatch(p) for p in parts):
            return "/".join(parts), _KINDS[match.group(1)]
        return None
    if parent == "datasets" and "___" in name:  # the datasets library's own cache
        parts = name.split("___")
        if len(parts) == 2 and all(_PART.fullmatch(p) for p in parts):
            return "/".join(parts), "dataset"
    return None
