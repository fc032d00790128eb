"""The `recipe` agent's training: SFT with trl on data/train.jsonl until the timer says stop.

Runs inside the sandbox with the workspace as its working directory, using only what any agent
gets: data/, timer.sh and evaluate.py. Until a checkpoint has been scored it publishes the latest
weights as final_model/ every `save_every_s` seconds (so that even a one-minute budget leaves a
model); every `eval_every_s` seconds it scores a checkpoint with `evaluate.py --split dev --limit
N` and publishes it if it beats the best so far. It stops with `reserve_s` left, publishes its
last weights if nothing was scored, and scores them if the time left allows.

Publishing is atomic: the model is written in full under models/, then final_model (a link into
models/, which collect follows) is swapped to it with one rename; a deadline mid-save leaves the
previous final_model whole. recipe_history.json records every save and check, for `ptb demo`.

    python -m posttrainbench.embedded.recipe_train --base-model PATH [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
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
    save_every_s: float = field(
        default=10.0, metadata={"help": "Seconds between saves until a dev check has scored one."}
    )
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


LONG_S = 180.0
FINAL = Path("final_model")
MODELS = Path("models")
HISTORY = Path("recipe_history.json")


def publish(model_dir: Path) -> None:
    """Make final_model point at `model_dir` (a complete model under MODELS) in one rename."""
    link = Path("final_model.swap")
    link.unlink(missing_ok=True)
    link.symlink_to(model_dir)
    if FINAL.is_dir() and not FINAL.is_symlink():  # a real folder (e.g. from an older launch)
        shutil.rmtree(FINAL)
    os.replace(link, FINAL)


class Keeper:
    """Saves and publishes models: the latest until one is scored, then the best on dev."""

    def __init__(self, model: Any, tokenizer: Any, cfg: RecipeConfig, rows: int) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.best = -1.0
        self.published: Path | None = None
        self.started = time.time()
        self.last_eval_s = 0.0  # how long the last dev check took
        self.history: dict[str, Any] = {"train_rows": rows, "saves": [], "checks": []}

    def _save(self, step: int) -> Path:
        path = MODELS / f"step-{step}"
        if not path.is_dir():
            tmp = MODELS / f".step-{step}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            tmp.rename(path)
        return path

    def _publish(self, path: Path, step: int, dev: float | None) -> None:
        publish(path)
        old, self.published = self.published, path
        if old is not None and old != path:
            shutil.rmtree(old, ignore_errors=True)
        self.history["steps"] = step
        self.history["saves"].append(
            {"step": step, "dev_accuracy": dev, "seconds": round(time.time() - self.started, 1)}
        )
        self._write_history()
        scored = f", dev accuracy {dev:.3f}" if dev is not None else " (not scored yet)"
        print(f"[recipe] step {step}: published as final_model{scored}", flush=True)

    def save_latest(self, step: int) -> None:
        """Publish the current weights, unscored (while no scored model exists)."""
        if self.published is not None and self.published.name == f"step-{step}":
            return
        self._publish(self._save(step), step, None)

    def check(self, step: int) -> None:
        """Score the current weights on dev; publish them if they beat the best so far."""
        path = self._save(step)
        began = time.time()
        score = dev_score(path, self.cfg.dev_limit, f"dev-step-{step}")
        self.last_eval_s = time.time() - began
        self.history["checks"].append({"step": step, "dev_accuracy": score})
        print(f"[recipe] step {step}: dev accuracy {score:.3f} (best {self.best:.3f})", flush=True)
        if score > self.best:
            self.best = score
            self._publish(path, step, score)
        elif path != self.published:
            shutil.rmtree(path, ignore_errors=True)
        self.history["steps"] = step
        self._write_history()

    def finish(self, step: int) -> None:
        """At the end: the last weights published if nothing was scored, scored if time allows."""
        if self.best < 0:
            self.save_latest(step)
        if seconds_left() > max(self.last_eval_s * 1.2, 8.0):  # a check fits, as the last did
            self.check(step)

    def _write_history(self) -> None:
        tmp = HISTORY.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.history, indent=2))
        os.replace(tmp, HISTORY)


def make_callback(keeper: Keeper, cfg: RecipeConfig) -> Any:
    from transformers import TrainerCallback

    class TimerCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.last_check = self.last_save = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if seconds_left() < cfg.reserve_s:
                control.should_training_stop = True
            elif time.time() - self.last_check >= cfg.eval_every_s:
                keeper.check(state.global_step)
                self.last_check = time.time()
            elif keeper.best < 0 and time.time() - self.last_save >= cfg.save_every_s:
                keeper.save_latest(state.global_step)
                self.last_save = time.time()
            return control

    return TimerCallback()


def load_split(name: str) -> list[dict[str, str]]:
    lines = Path("data", f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="Default: by the time left.")
    p.add_argument("--batch-size", type=int, default=None, help="Default: by the time left.")
    p.add_argument("--warmup-steps", type=int, default=None, help="Default: by the time left.")
    args = p.parse_args(argv)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    budget_left = seconds_left()
    long = budget_left > LONG_S  # short budgets: small batches, a high rate, a short warm-up
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
        per_device_train_batch_size=args.batch_size or (128 if long else 32),
        learning_rate=args.lr or (4e-3 if long else 1e-2),
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=args.warmup_steps if args.warmup_steps is not None else (30 if long else 3),
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
        eval_every_s=max(45.0, budget_left / 3) if long else float("inf"),  # a check costs ~15s
        save_every_s=min(30.0, max(5.0, budget_left / 12)),
        reserve_s=min(60.0, max(10.0, budget_left * 0.1)),  # the last check, or exiting
    )
    trainer = SFTTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    keeper = Keeper(model, tokenizer, cfg, len(rows))
    trainer.add_callback(make_callback(keeper, cfg))
    print(f"[recipe] {len(rows)} training rows, {budget_left:.0f}s left", flush=True)
    trainer.train()
    keeper.finish(trainer.state.global_step)
    print(f"[recipe] done: best dev accuracy {keeper.best:.3f}", flush=True)
    return 0 if (FINAL / "config.json").is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
