"""The agent's HOME, /tmp and /var/tmp as frozen at collect, read like the workspace.

Each tree (integrity/frozen.py `TREES`) is scanned as text with the workspace's readers; what is
found there is named `<tree>/<path>` (`home/.cache/huggingface/…`, `tmp/…`), so evidence says
where the agent kept it. Links are listed, never followed (as in the workspace).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from posttrainbench.integrity.frozen import agent_trees
from posttrainbench.integrity.texts import Skipped, TextChunk, iter_texts
from posttrainbench.results.layout import RunPaths


def agent_tree_texts(paths: RunPaths, skipped: list[Skipped], **read: Any) -> Iterator[TextChunk]:
    """Text chunks of every frozen tree beside the workspace, paths prefixed with the tree's
    name; files left out go to `skipped` under the same names. `read`: iter_texts' options
    (the token decoder, the decompression budget)."""
    for name, root in agent_trees(paths):
        left: list[Skipped] = []
        for chunk in iter_texts(root, skipped=left, **read):
            yield dataclasses.replace(chunk, path=f"{name}/{chunk.path}")
        skipped += [dataclasses.replace(s, path=f"{name}/{s.path}") for s in left]
