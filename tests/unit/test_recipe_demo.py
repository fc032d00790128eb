"""The demo always demonstrates: the recipe publishes final_model atomically and early (a deadline
mid-save leaves the previous model whole), and `ptb demo` says where the gain came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.embedded import recipe_train
from posttrainbench.embedded.demo_summary import gain_line
from posttrainbench.records import HarnessInfo, Outcome, RunRecord, RunSpec
from posttrainbench.results.store import save_run


class FakeModel:
    """Writes what save_pretrained would; `fail` simulates a kill in the middle of a save."""

    def __init__(self) -> None:
        self.version, self.fail = 0, False

    def save_pretrained(self, path: Path, **_: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "model.safetensors").write_text(f"weights {self.version}")
        if self.fail:
            raise KeyboardInterrupt("killed mid-save")
        (Path(path) / "config.json").write_text("{}")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "timer.sh").write_text("echo 0\n")  # no time left: no dev check at the end
    return tmp_path


def _keeper(model: FakeModel) -> recipe_train.Keeper:
    tokenizer = FakeModel()
    tokenizer.save_pretrained = lambda path, **_: None  # type: ignore[method-assign]
    cfg = recipe_train.RecipeConfig(output_dir="checkpoints/trainer", report_to=[], use_cpu=True)
    return recipe_train.Keeper(model, tokenizer, cfg, rows=1100)


def test_latest_weights_are_published_atomically_until_one_is_scored(workspace: Path) -> None:
    model = FakeModel()
    keeper = _keeper(model)
    keeper.save_latest(3)
    final = workspace / "final_model"
    assert final.is_symlink() and (final / "model.safetensors").read_text() == "weights 0"
    model.version = 1
    keeper.save_latest(7)
    assert (final / "model.safetensors").read_text() == "weights 1"
    assert not (workspace / "models" / "step-3").exists()  # the superseded one is removed
    model.version, model.fail = 2, True
    with pytest.raises(KeyboardInterrupt):
        keeper.save_latest(9)
    assert (final / "model.safetensors").read_text() == "weights 1"  # whole, and the old one
    assert (final / "config.json").is_file()
    history = json.loads((workspace / "recipe_history.json").read_text())
    assert history["train_rows"] == 1100 and history["steps"] == 7
    assert [s["step"] for s in history["saves"]] == [3, 7]


def test_finish_publishes_the_last_weights_when_nothing_was_scored(workspace: Path) -> None:
    keeper = _keeper(FakeModel())
    keeper.finish(12)
    assert (workspace / "final_model" / "config.json").is_file()
    assert Path(str(workspace / "final_model")).resolve().name == "step-12"


def test_a_real_folder_left_as_final_model_is_replaced(workspace: Path) -> None:
    (workspace / "final_model").mkdir()
    (workspace / "final_model" / "stale.txt").write_text("old")
    _keeper(FakeModel()).save_latest(1)
    assert (workspace / "final_model").is_symlink()


def _run(sweep: Path, agent: str, outcome: Outcome) -> Path:
    spec = RunSpec(
        run_id=f"{agent}-run", sweep="demo", agent=agent, base_model="ptb-tiny",
        benchmark="arith", budget_s=60,
    )  # fmt: skip
    run_dir = sweep / spec.run_id
    run_dir.mkdir(parents=True)
    info = HarnessInfo(version="0", python="3.11", hostname="h")
    save_run(run_dir, RunRecord(spec=spec, harness=info, outcome=outcome))
    return run_dir


def test_the_demo_says_where_the_gain_came_from(tmp_path: Path) -> None:
    sweep = tmp_path / "demo"
    _run(sweep, "noop", Outcome(score=0.0, source="evaluated", base_score=0.0))
    recipe = _run(sweep, "recipe", Outcome(score=0.84, source="evaluated", base_score=0.0))
    assert gain_line(sweep) == (
        "recipe 84.0 vs noop 0.0 — recipe left no training log; held-out arith test accuracy "
        "0.0 (base model) → 84.0 (recipe's final_model)"
    )
    history = {
        "train_rows": 1100, "steps": 412,
        "saves": [{"step": 40, "dev_accuracy": None}, {"step": 412, "dev_accuracy": 0.81}],
    }  # fmt: skip
    (recipe / "workspace").mkdir()
    (recipe / "workspace" / "recipe_history.json").write_text(json.dumps(history))
    assert gain_line(sweep) == (
        "recipe 84.0 vs noop 0.0 — recipe trained 412 steps on the arith training split "
        "(1,100 items) and published 2 model(s), dev accuracy at its last check 81.0; "
        "held-out arith test accuracy 0.0 (base model) → 84.0 (recipe's final_model)"
    )


def test_a_recipe_without_a_model_says_so(tmp_path: Path) -> None:
    sweep = tmp_path / "demo"
    _run(sweep, "noop", Outcome(score=0.0, source="evaluated", base_score=0.0))
    _run(sweep, "recipe", Outcome(score=0.0, source="fallback_no_model", reason="no final_model"))
    line = gain_line(sweep)
    assert line is not None and "fallback_no_model: no final_model" in line
    (tmp_path / "empty").mkdir()
    assert gain_line(tmp_path / "empty") is None
