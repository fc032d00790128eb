import subprocess
import time
from pathlib import Path

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.records import RunSpec
from posttrainbench.workspace import builder


def _spec() -> RunSpec:
    return RunSpec(
        run_id="r1", agent="noop", base_model="ptb-tiny", benchmark="arith", budget_s=5400
    )


def test_workspace_has_prompt_tools_and_data(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    prompt = builder.build_workspace(
        ws, _spec(), MODELS.get("ptb-tiny"), BENCHMARKS.get("arith"), Path("/m"), tmp_path / "d"
    )
    assert (ws / "prompt.md").read_text() == prompt
    rules = [
        "no user interaction",
        "1h30m",
        "timer.sh",
        "Do not use Arith (embedded) test data",
        "Do not modify evaluate.py",
        "Work only in the current directory",
        "pickled weights",
        "not allowed to fine-tune any model other than `ptb-tiny`",
    ]
    for rule in rules:
        assert rule in prompt, rule
    assert "`/m`" in prompt
    assert sorted(p.name for p in (ws / "data").iterdir()) == [
        "README.md",
        "dev.jsonl",
        "train.jsonl",
    ]
    assert (ws / "templates" / "ptb-tiny.jinja").is_file()
    assert '"--benchmark", "arith"' in (ws / "evaluate.py").read_text()


def test_timer_counts_down_from_the_deadline(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    builder.build_workspace(
        ws, _spec(), MODELS.get("ptb-tiny"), BENCHMARKS.get("arith"), Path("/m"), tmp_path / "d"
    )
    not_started = subprocess.run(["bash", "timer.sh"], cwd=ws, capture_output=True, text=True)
    assert not_started.returncode == 1
    builder.start_timer(ws, time.time() + 3725)
    human = subprocess.run(["bash", "timer.sh"], cwd=ws, capture_output=True, text=True).stdout
    assert human.startswith("Remaining time: 1h 02m")
    secs = subprocess.run(["bash", "timer.sh", "--seconds"], cwd=ws, capture_output=True, text=True)
    assert 3700 < int(secs.stdout) <= 3725
    builder.start_timer(ws, time.time() - 10)
    secs = subprocess.run(["bash", "timer.sh", "--seconds"], cwd=ws, capture_output=True, text=True)
    assert secs.stdout.strip() == "0"
