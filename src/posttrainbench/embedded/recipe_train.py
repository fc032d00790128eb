"""The `recipe` agent's training: SFT with trl on data/train.jsonl until the timer says stop.

Runs inside the sandbox with the workspace as its working directory, using only what any agent
gets: data/, timer.sh and evaluate.py. Every `eval_every_s` seconds it saves a checkpoint, scores
it with `evaluate.py --split dev --limit N`, and keeps the best one as final_model/ (safetensors,
config and tokenizer files only). It stops with `reserve_s` left so the last check fits in time.

    python -m posttrainbench.embedded.recipe_train --base-model PATH [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from posttrainbench.results.layout import EvalPaths


@dataclass
class RecipeConfig(SFTConfig):
    """SFTConfig with CPU-safe defaults plus the recipe's own time-keeping knobs."""

    eval_every_s: float = field(default=60.0, metadata={"help": "Seconds between dev checks."})
    reserve_s: float = field(default=25.0, metadata={"help": "Stop training this early."})
    dev_limit: int = field(default=100, metadata={"help": "Dev items per check."})


def seconds_left() -> float:
    out = subprocess.run(["bash", "timer.sh", "--seconds"], capture_output=True, text=True)
    return float(out.stdout.strip()) if out.returncode == 0 else float("inf")


def dev_score(ckpt: Path, limit: int, tag: str) -> float:
    log_dir = Path("eval_logs") / tag
    cmd = [sys.executable, "evaluate.py", "--model-path", str(ckpt), "--split", "dev"]
    cmd += ["--limit", str(limit), "--log-dir", str(log_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[recipe] dev eval of {ckpt} failed: {done.stderr.strip()[-300:]}", flush=True)
        return -1.0
    return float(json.loads(EvalPaths(log_dir).metrics.read_text())["score"])


class Keeper:
    """Saves checkpoints, scores them on dev, and keeps the best as final_model/."""

    def __init__(self, model: Any, tokenizer: Any, cfg: RecipeConfig) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.best = -1.0
        self.history: list[dict[str, float]] = []

    def check(self, step: int) -> None:
        ckpt = Path("checkpoints") / f"step-{step}"
        self.model.save_pretrained(ckpt, safe_serialization=True)
        self.tokenizer.save_pretrained(ckpt)
        score = dev_score(ckpt, self.cfg.dev_limit, f"dev-step-{step}")
        self.history.append({"step": step, "dev_accuracy": score, "time": time.time()})
        print(f"[recipe] step {step}: dev accuracy {score:.3f} (best {self.best:.3f})", flush=True)
        if score > self.best:
            self.best = score
            tmp = Path("final_model.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(ckpt, tmp)
            shutil.rmtree("final_model", ignore_errors=True)
            tmp.rename("final_model")
        shutil.rmtree(ckpt, ignore_errors=True)
        Path("recipe_history.json").write_text(json.dumps(self.history, indent=2))


def make_callback(keeper: Keeper, cfg: RecipeConfig) -> Any:
    from transformers import TrainerCallback

    class TimerCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.last_check = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if seconds_left() < cfg.reserve_s:
                control.should_training_stop = True
            elif time.time() - self.last_check >= cfg.eval_every_s:
                keeper.check(state.global_step)
                self.last_check = time.time()
            return control

    return TimerCallback()


def load_split(name: str) -> list[dict[str, str]]:
    lines = Path("data", f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args(argv)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    budget_left = seconds_left()
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    model = AutoModelForCausalLM.from_pretrained(args.base_model, use_safetensors=True)
    if not tokenizer.chat_template:
        print("[recipe] the base model's tokenizer has no chat template", file=sys.stderr)
        return 1

    def prompt(question: str) -> str:
        chat = [{"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return str(text)

    rows = [
        {"prompt": prompt(r["question"]), "completion": f" {r['answer']}{tokenizer.eos_token}"}
        for r in load_split("train")
    ]
    cfg = RecipeConfig(
        output_dir="checkpoints/trainer",
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=30,
        num_train_epochs=10_000,  # the timer, not the epoch count, ends training
        seed=args.seed,
        bf16=False,  # no bf16 on most CPUs: ~7x slower when emulated
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        completion_only_loss=True,
        max_length=64,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        eval_every_s=max(45.0, budget_left / 3),
        reserve_s=min(60.0, max(15.0, budget_left * 0.12)),
    )
    trainer = SFTTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    keeper = Keeper(model, tokenizer, cfg)
    trainer.add_callback(make_callback(keeper, cfg))
    print(f"[recipe] {len(rows)} training rows, {budget_left:.0f}s left", flush=True)
    trainer.train()
    keeper.check(trainer.state.global_step)
    print(f"[recipe] done: best dev accuracy {keeper.best:.3f}", flush=True)
    return 0 if Path("final_model", "config.json").is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
