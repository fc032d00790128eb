"""Where everything of a run lives. Every path into a run directory comes from `RunPaths`.

<results>/<sweep>/<run_id>/
  run.json              RunRecord: spec, stage states, outcome (the one source of truth)
  .lock                 held (flock) by the one harness working on the run; names its pid
  prompt.md             exactly what the agent was told
  workspace/            the agent's task directory (its working copy of everything)
    prompt.md           the agent's copy of the prompt
    final_model/        the deliverable, as the agent left it
  final_model/          the collected deliverable (safetensors + config/tokenizer files)
  agent/                stdout.log, stderr.log of the agent process (capped)
    llm_calls.jsonl     every call through the API relay: tokens, cost, status
    relay_bodies.jsonl  the request and response bodies the relay carried (redacted, capped)
    trajectory_stdout.json  the trajectory as the CLI's stdout tells it (cross-checked)
    trajectory.json     the agent's steps in one schema (ATIF-compatible), secrets redacted
    transcript.md       the same, readable
    input-<n>.txt       what launch n was given on stdin (the prompt, or a re-prompt)
    home/               the agent's HOME, kept across its launches (bound into the sandbox)
    tmp/, var_tmp/      the sandbox's /tmp and /var/tmp (bound in where the sandbox can)
    files/              the --agent-dir snapshot (read-only at /agent in the sandbox)
  monitor.csv           timestamped CPU/memory/disk (and GPU where present) samples
  egress.jsonl          every request through the egress proxy: host, bytes, allowed/denied
  frozen/               what the agent left, copied at collect: workspace/, frozen.json; home/,
                        tmp/, var_tmp/ with <name>.json
  integrity/            evaluator_manifest.json (at prepare), <check>.json, verdict.json,
                        review.json (a signed human override)
  eval/                 inspect-ai logs, evaluate.log, metrics.json (EvalPaths)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import ConfigError

_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Folder names inside a run directory: a sweep named like one would confuse scans of results.
RESERVED_NAMES = frozenset(
    {"workspace", "final_model", "agent", "integrity", "eval", "home", "frozen", "imported"}
)


def check_sweep_name(name: str) -> str:
    """A sweep name is one plain folder name under the results root."""
    if not _SWEEP_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"sweep name {name!r} is not a plain folder name",
            "use letters, digits, '.', '_' and '-' (no '/', no '..'), e.g. --sweep my-sweep",
        )
    if name.lower() in RESERVED_NAMES:
        raise ConfigError(
            f"sweep name {name!r} is reserved for run-directory contents",
            f"choose another name; reserved: {', '.join(sorted(RESERVED_NAMES))}",
        )
    return name


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def prompt(self) -> Path:
        return self.root / "prompt.md"

    @property
    def workspace_prompt(self) -> Path:
        return self.workspace / "prompt.md"  # = workspace.builder.PROMPT_FILE

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def workspace_final_model(self) -> Path:
        return self.workspace / "final_model"

    @property
    def final_model(self) -> Path:
        return self.root / "final_model"

    @property
    def agent_dir(self) -> Path:
        return self.root / "agent"

    @property
    def agent_stdout(self) -> Path:
        return self.agent_dir / "stdout.log"

    @property
    def agent_stderr(self) -> Path:
        return self.agent_dir / "stderr.log"

    @property
    def agent_home(self) -> Path:
        return self.agent_dir / "home"

    @property
    def agent_tmp(self) -> Path:
        return self.agent_dir / "tmp"  # the sandbox's /tmp, kept for the frozen copy

    @property
    def agent_var_tmp(self) -> Path:
        return self.agent_dir / "var_tmp"  # the sandbox's /var/tmp

    @property
    def agent_files(self) -> Path:
        return self.agent_dir / "files"  # the --agent-dir snapshot

    @property
    def monitor_csv(self) -> Path:
        return self.root / "monitor.csv"

    @property
    def trajectory(self) -> Path:
        return self.agent_dir / "trajectory.json"

    @property
    def transcript(self) -> Path:
        return self.agent_dir / "transcript.md"

    def agent_input(self, launch: int) -> Path:
        return self.agent_dir / f"input-{launch}.txt"

    @property
    def llm_calls(self) -> Path:
        return self.root / "agent" / "llm_calls.jsonl"

    @property
    def relay_bodies(self) -> Path:
        return self.agent_dir / "relay_bodies.jsonl"  # harness-side only: never bound in

    @property
    def stdout_trajectory(self) -> Path:
        return self.agent_dir / "trajectory_stdout.json"  # the CLI's own account: a cross-check

    @property
    def egress(self) -> Path:
        return self.root / "egress.jsonl"

    @property
    def integrity_dir(self) -> Path:
        return self.root / "integrity"

    @property
    def evaluator_manifest(self) -> Path:
        return self.integrity_dir / "evaluator_manifest.json"

    def check_file(self, name: str) -> Path:
        return self.integrity_dir / f"{name}.json"

    @property
    def frozen_workspace(self) -> Path:
        return self.root / "frozen" / "workspace"

    def frozen_tree(self, name: str) -> Path:
        """frozen/<name>: a frozen copy of what the agent left (integrity/frozen.py TREES)."""
        return self.root / "frozen" / name

    @property
    def review(self) -> Path:
        return self.integrity_dir / "review.json"

    @property
    def verdict(self) -> Path:
        return self.integrity_dir / "verdict.json"

    @property
    def eval(self) -> EvalPaths:
        return EvalPaths(self.root / "eval")


@dataclass(frozen=True)
class EvalPaths:
    """One evaluation's output folder: the run's eval/, a measured baseline's, or evaluate.py's."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def log(self) -> Path:
        return self.root / "evaluate.log"
