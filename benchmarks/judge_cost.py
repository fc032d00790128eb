"""What the LLM judge costs per run at the suite's votes (v1.2: 3): calls, prompt characters and
tokens, for a synthetic run of a typical size (200 steps, a workspace of code, configs, notes and
a training-data file) or for a run directory you name (e.g. one of `ptb demo`'s runs).

The real judge check runs, chunks and votes included, against a local OpenAI-compatible judge
that answers clean; input tokens are estimated as prompt characters / 4 (no tokenizer of the
judge here); output tokens are set per answer by `--reply-tokens` (the stub writes little).

python benchmarks/judge_cost.py [--steps 200] [--seed 0] [--run RUN_DIR] [--reply-tokens 600]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply, Seen, chat_json, responses_json

CLEAN = json.dumps(
    {
        c: {"verdict": "clean", "justification": "nothing seen", "citations": []}
        for c in (
            "contamination",
            "model_substitution",
            "evaluator_tampering",
            "disallowed_api_use",
        )
    }
)


def _longest(x: object) -> str:
    """The prompt of an OpenAI request body: its longest string."""
    if isinstance(x, str):
        return x
    items = x.values() if isinstance(x, dict) else x if isinstance(x, list) else []
    return max((_longest(v) for v in items), key=len, default="")


class CountingJudge(FakeUpstream):
    """Answers clean; reports input tokens as the request's characters / 4."""

    def __init__(self, reply_tokens: int) -> None:
        super().__init__()
        self.reply_tokens = reply_tokens
        self.handler = self._reply

    def _reply(self, seen: Seen) -> Reply:
        body = seen.body.decode()
        probe = "hello, world" in body
        wire = responses_json if seen.path.endswith("/responses") else chat_json
        content = "hello, world" if probe else CLEAN
        tokens = len(_longest(json.loads(body))) // 4
        return Reply(chunks=[wire(content, input_tokens=tokens, output_tokens=self.reply_tokens)])


def _step(rng: random.Random, i: int) -> dict[str, object]:
    """A step of a typical coding-agent trajectory: a thought, a command, its output (log-normal
    sizes: median ~1.2k characters, a few long training logs)."""
    out = int(min(60_000, rng.lognormvariate(7.1, 1.2)))
    return {
        "step_id": i,
        "source": "agent",
        "message": "Next I will check the training loss and adjust the learning rate. " * 2,
        "tool_calls": [
            {
                "tool_call_id": f"c{i}",
                "function_name": "Bash",
                "arguments": {"command": f"python train.py --epochs 1 --lr 2e-5 --step {i}"},
            }
        ],
        "observation": {
            "results": [{"source_call_id": f"c{i}", "content": f"loss {i} 0.42\n" * (out // 12)}]
        },
    }


def _synthetic(root: Path, steps: int, seed: int) -> Path:
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.integrity import frozen
    from posttrainbench.records import RunRecord, RunSpec
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.results.store import save_run
    from posttrainbench.runner import harness_info
    from posttrainbench.workspace import builder

    rng = random.Random(seed)
    paths = RunPaths(root / "run")
    model, bench = MODELS.get("ptb-tiny"), BENCHMARKS.get("arith")
    builder.write_evaluator(paths.workspace, model, bench)
    files = {
        "train.py": "import torch\n" + "x = model(batch)  # a training loop line\n" * 150,
        "prepare_data.py": "import json\n" + "rows.append(clean(r))\n" * 80,
        "config/sft.yaml": "lr: 2e-5\nepochs: 3\n" * 20,
        "NOTES.md": "# Plan\nTrain on the train split, check on dev.\n" * 30,
        "data/train.jsonl": "".join(
            json.dumps({"text": f"What is {a} + {b}? {a + b}"}) + "\n"
            for a, b in ((rng.randrange(99), rng.randrange(99)) for _ in range(12_000))
        ),
    }
    for rel, text in files.items():
        (paths.workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (paths.workspace / rel).write_text(text)
    frozen.freeze(paths.workspace, paths.frozen_workspace)
    paths.agent_dir.mkdir(parents=True)
    head = {
        "schema_version": "ATIF-v1.4",
        "session_id": "s",
        "agent": {"name": "x", "version": "1"},
    }
    paths.trajectory.write_text(json.dumps(head | {"steps": [_step(rng, i) for i in range(steps)]}))
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    save_run(paths.root, RunRecord(spec=spec, harness=harness_info()))
    return paths.root


def _measure(run_dir: Path, reply_tokens: int) -> None:
    from posttrainbench import runner
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.config import load_settings
    from posttrainbench.integrity.base import CheckContext
    from posttrainbench.integrity.llm_judge import JudgeCheck
    from posttrainbench.records import CheckResult
    from posttrainbench.results.layout import RunPaths

    record = runner.load(run_dir)
    paths = RunPaths(run_dir)
    earlier = [
        CheckResult.model_validate_json(p.read_text())
        for p in sorted(paths.integrity_dir.glob("*.json"))
        if p.stem not in {"judge", "verdict", "review", "evaluator_manifest"}
    ]
    with CountingJudge(reply_tokens) as judge:
        ctx = CheckContext(
            paths=paths,
            record=record,
            model=MODELS.get(record.spec.base_model),
            bench=BENCHMARKS.get(record.spec.benchmark),
            settings=load_settings(),
            judge_model="openai/gpt-5-mini",
            judge_base_url=f"{judge.url}/v1",
            earlier=earlier,
        )
        start = time.perf_counter()
        got = JudgeCheck().run(ctx)
        took = time.perf_counter() - start
    f = got.figures
    traj = sum(len(json.dumps(s)) for s in ctx.steps)
    print(f"run: {run_dir}")
    print(f"  steps {int(f['steps_read'])} ({traj / 1e3:.0f} kB as JSON), text files read "
          f"{int(f['files_read'])}, sampled {int(f['files_sampled'])}, not read (vendored) "
          f"{int(f['files_not_read'])}")  # fmt: skip
    print(f"  votes {int(f['votes'])} (flag at {int(f['flag_at'])}), chunks per vote "
          f"{int(f['chunks'])}, calls {int(f['calls'])}")  # fmt: skip
    print(f"  prompt characters per vote {int(f['prompt_chars']):,}; input tokens per run "
          f"(chars/4) {int(f['input_tokens']):,}; output tokens per run {int(f['output_tokens']):,}"
          f" (at {reply_tokens} per answer)")  # fmt: skip
    print(
        f"  cost per run at gpt-5-mini prices ${f['cost_usd']:.4f}; judge check took {took:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", type=Path, help="a run directory to measure instead")
    ap.add_argument("--reply-tokens", type=int, default=600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptb-judge-cost-") as tmp:
        os.environ.setdefault("PTB_CACHE", str(Path(tmp) / "cache"))
        run_dir = args.run.resolve() if args.run else _synthetic(Path(tmp), args.steps, args.seed)
        _measure(run_dir, args.reply_tokens)


if __name__ == "__main__":
    main()
