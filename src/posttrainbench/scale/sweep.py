"""Sweeps: a sweep file (TOML or YAML) — agents × base models × benchmarks × seeds, with the run
options and the executor — expanded deterministically into `RunSpec`s with stable run ids, so
that running the same file again finds the same run directories. Every run of a sweep follows
its `suite`; an official benchmark the suite leaves out is refused before anything is created.

    name = "qwen-math"
    suite = "ptb-v1.2"          # the protocol version (default); "ptb-v1.0" for the paper's
    base_models = ["Qwen/Qwen3-1.7B-Base"]
    benchmarks = ["gsm8k", "aime2025"]
    seeds = [0, 1, 2]
    budget = "10h"

    [[agents]]
    agent = "claude-code"
    agent_model = "claude-sonnet-4-5"
    continue_prompts = 3

    [[agents]]
    agent = "command"
    agent_name = "my-agent"     # its label in reports
    agent_dir = "my_agent"      # relative to this file; snapshotted, read-only at /agent
    agent_cmd = "python /agent/my_agent.py"

    [executor]
    kind = "slurm"
    gpus_per_run = 1
    options = { partition = "gpu" }
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from posttrainbench.agents import agent_files
from posttrainbench.catalog.suites import DEFAULT_SUITE, V1_0, suite_for_run
from posttrainbench.catalog.suites import suite as get_suite
from posttrainbench.config import Settings
from posttrainbench.errors import ConfigError
from posttrainbench.plain_errors import plain
from posttrainbench.records import (
    AGENT_NAME_PATTERN,
    ApiProvider,
    NetworkPolicy,
    RunSpec,
    SandboxLimits,
    parse_duration,
)
from posttrainbench.registry import Registry
from posttrainbench.sandbox import default_sandbox
from posttrainbench.scale.executors.base import ExecutorConfig


class AgentEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    agent: str
    agent_model: str | None = None
    agent_cmd: str | None = None
    agent_dir: str | None = None  # relative to the sweep file's folder
    agent_name: str | None = Field(default=None, pattern=AGENT_NAME_PATTERN)
    agent_effort: str | None = None
    continue_prompts: int = Field(default=0, ge=0)
    api_provider: ApiProvider | None = None


class SweepSpec(BaseModel):
    """A sweep file's contents; durations may be written as text ("10h", "90m")."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    agents: list[AgentEntry]
    base_models: list[str]
    benchmarks: list[str]
    suite: str = DEFAULT_SUITE
    seeds: list[int] = [0]
    budget_s: int = Field(gt=0, alias="budget")
    sandbox: str | None = None  # None: the default (bwrap; refused where it cannot isolate)
    network: NetworkPolicy | None = None
    allow_hosts: list[str] = Field(default_factory=list)
    api_budget_usd: float | None = Field(default=None, gt=0)
    allow_provider_tools: bool = False
    continue_min_s: int = Field(default=600, ge=0, alias="continue_min")
    eval_timeout_s: int | None = Field(default=None, gt=0, alias="eval_timeout")
    eval_backend: str = "auto"
    judge_model: str | None = None
    judge_base_url: str | None = None
    limits: SandboxLimits = Field(default_factory=lambda: SandboxLimits())
    executor: ExecutorConfig = Field(default_factory=lambda: ExecutorConfig())

    @field_validator("budget_s", "continue_min_s", "eval_timeout_s", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def agent_dirs_from(self, folder: Path) -> SweepSpec:
        """The sweep with its agents' relative `agent_dir`s taken from `folder` (its file's)."""
        agents = [
            a.model_copy(update={"agent_dir": str(folder / a.agent_dir)}) if a.agent_dir else a
            for a in self.agents
        ]
        return self.model_copy(update={"agents": agents})

    def expand(self) -> list[RunSpec]:
        """Every run of the grid, in a fixed order, each with its stable id."""
        suite = get_suite(self.suite).id  # unknown ids: one line with a suggestion
        for b in self.benchmarks:
            suite_for_run(suite, b)
        sandbox = self.sandbox or default_sandbox()
        grid = itertools.product(self.agents, self.base_models, self.benchmarks, self.seeds)
        agent_dirs = {a: agent_files.resolve(a.agent_dir) for a in self.agents if a.agent_dir}
        specs = []
        for a, m, b, seed in grid:
            folder, sha256 = agent_dirs.get(a, (None, None))
            spec = RunSpec(
                run_id="pending",
                sweep=self.name,
                agent=a.agent,
                agent_model=a.agent_model,
                agent_cmd=a.agent_cmd,
                agent_name=a.agent_name,
                agent_dir=folder,
                agent_dir_sha256=sha256,
                agent_effort=a.agent_effort,
                continue_prompts=a.continue_prompts,
                continue_min_s=self.continue_min_s,
                api_provider=a.api_provider,
                base_model=m,
                benchmark=b,
                suite=suite,
                budget_s=self.budget_s,
                sandbox=sandbox,
                seed=seed,
                network=self.network,
                allow_hosts=self.allow_hosts,
                api_budget_usd=self.api_budget_usd,
                allow_provider_tools=self.allow_provider_tools,
                eval_timeout_s=self.eval_timeout_s,
                eval_backend=self.eval_backend,
                judge_model=self.judge_model,
                judge_base_url=self.judge_base_url,
                limits=self.limits,
            )
            specs.append(spec.model_copy(update={"run_id": stable_run_id(spec)}))
        return specs


# AgentConfig keys added after sweeps had stable ids.
_LATER_CONFIG_KEYS = ("agent_name", "agent_dir_sha256")


def stable_run_id(spec: RunSpec) -> str:
    """Readable and the same for the same cell of the same configuration and suite, whenever
    expanded. Runs from before suites followed ptb-v1.0, whose ids leave the suite out, so
    such a sweep still finds its runs (as a v1.0 sweep)."""
    config = spec.agent_config.model_dump(mode="json")
    for key in _LATER_CONFIG_KEYS:  # absent, they leave the ids of older sweeps as they were
        if config[key] is None:
            del config[key]
    cell: list[object] = [
        config,
        spec.base_model,
        spec.benchmark,
        spec.seed,
    ]
    if spec.suite != V1_0.id:
        cell.append(spec.suite)
    key = json.dumps(cell, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    model = spec.base_model.rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec.agent}-{model}-{spec.benchmark}")
    return f"{name}-s{spec.seed}-{digest}"


def load_sweep_file(path: Path) -> SweepSpec:
    """A sweep file (`.toml`, `.yaml`/`.yml`), with one-line errors naming the file and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read sweep file {path}: {exc.strerror}", "check the path"
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: unknown sweep file type", "use a .toml or .yaml file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not valid {path.suffix[1:]}: {exc}", "fix its syntax"
        ) from None
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise ConfigError(
            f"{path} is not valid YAML: {exc}".splitlines()[0], "fix its syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a table of settings", "see ptb sweep run --help")
    for key in DURATION_KEYS:
        value = data.get(key)
        if isinstance(value, int | float) or (isinstance(value, str) and bare_number(value)):
            n = str(value).strip()
            raise ConfigError(
                f"{path}: {key} = {value!r} has no unit", f'write {key} = "{n}m", "{n}h" or "{n}s"'
            )
    try:
        sweep = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {plain(exc, SweepSpec)}", "see ptb sweep run --help") from None
    return sweep.agent_dirs_from(path.parent)


# The sweep file's durations, which must carry their unit ("10" could be seconds or minutes).
DURATION_KEYS = ("budget", "continue_min", "eval_timeout")


def bare_number(text: str) -> bool:
    """A duration written without a unit: "10", "1.5"."""
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


RunOne = Callable[[RunSpec, Settings], Path]
InProcess = Callable[[Iterable[RunSpec], Settings, RunOne], list[Path]]


def run_local(specs: Iterable[RunSpec], settings: Settings, run_one: RunOne) -> list[Path]:
    """One run after another in this process (`ptb demo`)."""
    return [run_one(spec, settings) for spec in specs]


IN_PROCESS: Registry[InProcess] = Registry("in-process executor")
IN_PROCESS.register("sequential", run_local)
