"""Turn the options of `ptb run` into a RunSpec, refusing what the user got wrong."""

from __future__ import annotations

import logging
import os
import re

from posttrainbench.catalog import AGENTS, BENCHMARKS, MODELS
from posttrainbench.catalog.suites import suite_for_run
from posttrainbench.cli.run_options import RunOptions
from posttrainbench.errors import ConfigError
from posttrainbench.records import (
    AGENT_NAME_PATTERN,
    MAX_BUDGET_S,
    RunSpec,
    SandboxLimits,
    format_duration,
    new_run_id,
    parse_duration,
)
from posttrainbench.results.layout import check_sweep_name
from posttrainbench.sandbox import SANDBOXES, default_sandbox
from posttrainbench.sandbox.egress import parse_allow_host
from posttrainbench.sandbox.gpu import parse_gpu_list
from posttrainbench.scale.sweep import bare_number

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def duration(option: str, text: str, example: str) -> int:
    if bare_number(text):
        n = text.strip()
        raise ConfigError(
            f"{option} {n}: a duration needs its unit", f"write {n}m, {n}h or {n}s (or 1h30m)"
        )
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}", f"e.g. {option} {example}") from None


def _agent_name(name: str | None) -> str | None:
    if name is not None and not re.match(AGENT_NAME_PATTERN, name):
        raise ConfigError(
            f"--agent-name {name!r} is not a usable label",
            "use up to 64 letters, digits and . _ @ + : - (starting with a letter or digit)",
        )
    return name


def _pass_env(names: list[str]) -> list[str]:
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"--pass-env {name!r} is not an environment variable name",
                "pass the name only, e.g. --pass-env WANDB_MODE (its value is read from here)",
            )
        if name not in os.environ:
            log.warning("--pass-env %s: not set here, so the agent will not get it", name)
    return list(dict.fromkeys(names))


def _budget(o: RunOptions) -> int:
    budget_s = duration("--budget", o.budget, "10h")
    if budget_s > MAX_BUDGET_S and not o.allow_long:
        raise ConfigError(
            f"--budget {o.budget} ({format_duration(budget_s)}) is over 7 days",
            "pass --allow-long if you mean it",
        )
    return budget_s


def spec_from(o: RunOptions) -> RunSpec:
    """The spec of a new run; refused here, before anything is created."""
    if not o.agent or not o.base_model or not o.benchmark:
        missing = [n for n, v in (("--agent", o.agent), ("--base-model", o.base_model),
                                  ("--benchmark", o.benchmark)) if not v]  # fmt: skip
        raise ConfigError(f"missing {', '.join(missing)}", "or pass --resume RUN_DIR")
    benchmark_id = BENCHMARKS.get(o.benchmark).id
    run_suite = suite_for_run(o.suite, benchmark_id)
    budget_s = _budget(o)
    eval_timeout_s = duration("--eval-timeout", o.eval_timeout, "2h") if o.eval_timeout else None
    return RunSpec(
        run_id=new_run_id(o.agent, o.base_model, o.benchmark),
        sweep=check_sweep_name(o.sweep),
        agent=AGENTS.get(o.agent).name,
        agent_model=o.agent_model,
        agent_cmd=o.agent_cmd,
        agent_name=_agent_name(o.agent_name),
        agent_dir=str(o.agent_dir.resolve()) if o.agent_dir else None,
        agent_effort=o.agent_effort,
        continue_prompts=o.continue_prompts,
        continue_min_s=duration("--continue-min", o.continue_min, "10m"),
        base_model=MODELS.get(o.base_model).name,
        benchmark=benchmark_id,
        suite=run_suite.id,
        budget_s=budget_s,
        sandbox=SANDBOXES.get(o.sandbox).name if o.sandbox else default_sandbox(),
        seed=o.seed,
        resume_policy=o.resume_policy.value,
        eval_timeout_s=eval_timeout_s,
        eval_backend=o.eval_backend,
        judge_model=o.judge_model,
        judge_base_url=o.judge_base_url,
        agent_judge_budget_usd=o.agent_judge_budget,
        pass_env=_pass_env(o.pass_env or []),
        network=o.network.value if o.network else None,
        allow_hosts=[parse_allow_host(h) for h in o.allow_host or []],
        api_provider=o.api_provider.value if o.api_provider else None,
        api_budget_usd=o.api_budget_usd,
        allow_provider_tools=o.allow_provider_tools,
        gpus=parse_gpu_list(o.gpus) if o.gpus is not None else None,
        limits=SandboxLimits(
            memory_gb=o.memory_gb, workspace_gb=o.workspace_gb, processes=o.max_procs
        ),
        image=o.image,
    )
