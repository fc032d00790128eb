"""Builds the agent's task directory: prompt.md, evaluate.py, timer.sh, templates/, data/.

workspace/
  prompt.md        the task, adapted from the PostTrainBench prompt
  evaluate.py      calls the harness's evaluation code (the score never uses this copy)
  check_data.py    official benchmarks: asks the harness whether a data file holds test items
  timer.sh         time left; reads .ptb_deadline, written when the agent starts
  templates/       the harness's chat templates
  eval_data/       official benchmarks: the test items' inputs evaluate.py generates on (no
                   target, reference solution, test or rubric: the harness's scoring service
                   scores, evaluate/scoring_service.py)
  data/            the benchmark's agent-allowed data, where it has any
"""

from __future__ import annotations

import shutil
from pathlib import Path
from string import Template

from posttrainbench.catalog import BaseModelInfo, BenchmarkInfo
from posttrainbench.evaluate.chat_templates import TEMPLATES_DIR
from posttrainbench.records import GpuPreflight, RunSpec, format_duration

FILES = Path(__file__).parent / "files"
DEADLINE_FILE = ".ptb_deadline"
PROMPT_FILE = "prompt.md"
# What the agent must not modify (rule 4): hashed at prepare, compared at integrity.
EVAL_DATA = "eval_data"
CHECK_DATA = "check_data.py"
EVALUATOR_PATHS = ("evaluate.py", "templates", EVAL_DATA, CHECK_DATA)
# Written by the harness, not the agent: the integrity scans of what the agent wrote skip them.
HARNESS_PATHS = (*EVALUATOR_PATHS, PROMPT_FILE, DEADLINE_FILE, "timer.sh")


def hardware_summary(preflight: GpuPreflight | None = None) -> str:
    """The prompt's hardware line: the GPUs the run's preflight checked, else what torch sees."""
    import os

    cpu_only = f"CPU only ({os.cpu_count()} cores), no GPU"
    if preflight is not None:
        if not preflight.checks:
            return cpu_only
        names = sorted({c.name or "GPU" for c in preflight.checks})
        return f"{len(preflight.checks)} × {', '.join(names)}"
    try:
        import torch

        if torch.cuda.is_available():
            found = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
            return f"{torch.cuda.device_count()} × {', '.join(sorted(found))}"
    except Exception:  # torch missing or CUDA broken: say CPU, the agent will find out
        pass
    return cpu_only


def network_note(spec: RunSpec) -> str:
    from posttrainbench.sandbox import SANDBOXES
    from posttrainbench.sandbox.egress import DEFAULT_ALLOW_HOSTS

    if not SANDBOXES.get(spec.sandbox).capabilities.network_policy:
        return "unrestricted (this sandbox does not filter the network)."
    if spec.network == "none":
        return "none (no internet access)."
    if spec.network == "open":
        return "open, through the HTTP(S) proxy set in HTTPS_PROXY; every request is logged."
    hosts = ", ".join([*DEFAULT_ALLOW_HOSTS, *spec.allow_hosts])
    return (
        f"only through the HTTP(S) proxy set in HTTPS_PROXY, to: {hosts}. Every request is logged."
    )


def render_prompt(
    spec: RunSpec,
    model: BaseModelInfo,
    bench: BenchmarkInfo,
    model_path: Path,
    has_data: bool,
    hardware: str | None = None,
) -> str:
    data_note = (
        "- Training data the benchmark allows is in `data/` (see data/README.md).\n"
        if has_data
        else f"- `{EVAL_DATA}/` holds the test items' inputs evaluate.py generates on (the "
        "harness scores the answers; the targets are not in the workspace); training on them "
        "or their paraphrases is contamination and is detected. `python check_data.py FILE` "
        "tells you which test items a data file holds, if any (not the items themselves).\n"
    )
    data_note += f"- Allowed training data: {bench.allowed_training}.\n"
    return Template((FILES / "prompt.md").read_text()).substitute(
        model=model.name,
        benchmark=bench.display_name,
        model_path=model_path,
        budget=format_duration(spec.budget_s),
        hardware=hardware or hardware_summary(),
        network=network_note(spec),
        data_note=data_note,
    )


def write_evaluator(dest: Path, model: BaseModelInfo, bench: BenchmarkInfo) -> None:
    """Write EVALUATOR_PATHS (evaluate.py, templates/, eval_data/) into dest. Deterministic:
    the integrity check re-derives the expected files this way instead of trusting a manifest
    on disk."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TEMPLATES_DIR, dest / "templates", dirs_exist_ok=True)
    split_help = (
        f"    python evaluate.py --split dev           # {', '.join(bench.splits[1:])} split\n"
        if len(bench.splits) > 1
        else ""
    )
    limit = bench.dev_limit
    evaluate_py = Template((FILES / "evaluate.py.txt").read_text()).substitute(
        benchmark=bench.display_name,
        benchmark_id=bench.id,
        template_family=model.template_family,
        split_help=split_help,
        default_scope=f"{limit} test items (--limit)" if limit else "the full benchmark",
        default_limit_args=repr(["--default-limit", str(limit)] if limit else []),
    )
    (dest / "evaluate.py").write_text(evaluate_py)
    if bench.public_data is None:  # official benchmarks: the test inputs, never the targets
        bench.implementation().export(dest / EVAL_DATA)
        check = Template((FILES / f"{CHECK_DATA}.txt").read_text())
        (dest / CHECK_DATA).write_text(check.substitute(benchmark=bench.display_name))


def build_workspace(
    workspace: Path,
    spec: RunSpec,
    model: BaseModelInfo,
    bench: BenchmarkInfo,
    model_path: Path,
    data_cache: Path,
    hardware: str | None = None,
) -> str:
    """Create the workspace and return the prompt text."""
    workspace.mkdir(parents=True, exist_ok=True)
    public = bench.write_public_data(data_cache / bench.id)
    if public is not None:
        shutil.copytree(public, workspace / "data", dirs_exist_ok=True)
    write_evaluator(workspace, model, bench)
    shutil.copy(FILES / "timer.sh", workspace / "timer.sh")
    (workspace / "timer.sh").chmod(0o755)
    prompt = render_prompt(spec, model, bench, model_path, public is not None, hardware)
    (workspace / PROMPT_FILE).write_text(prompt)
    return prompt


def start_timer(workspace: Path, deadline_epoch: float) -> None:
    (workspace / DEADLINE_FILE).write_text(f"{int(deadline_epoch)}\n")
