"""The stage machine in-process: resume semantics after a crash between stages."""

from posttrainbench import runner
from posttrainbench.config import Settings
from posttrainbench.records import RunSpec, new_run_id
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run, save_run


def _spec(cmd: str) -> RunSpec:
    return RunSpec(
        run_id=new_run_id("command", "ptb-tiny", "arith"),
        agent="command",
        agent_cmd=cmd,
        base_model="ptb-tiny",
        benchmark="arith",
        budget_s=120,
    )


def test_resume_never_relaunches_an_agent_that_ended(settings: Settings) -> None:
    run_dir = runner.create_run(_spec("echo run >> launches.txt"), settings)
    first = runner.execute(run_dir, settings)
    assert first.complete and first.agent and first.agent.exit_reason == "finished"
    # Simulate a harness crash right after the agent ended, before solve was marked done.
    crashed = load_run(run_dir)
    crashed.stages["solve"].state = "running"
    for later in ("collect", "integrity", "evaluate", "score"):
        crashed.stages[later] = type(crashed.stages[later])()
    save_run(run_dir, crashed)
    stages: list[tuple[str, str]] = []
    again = runner.execute(run_dir, settings, on_stage=lambda s, e: stages.append((s, e)))
    assert again.complete and again.agent and len(again.agent.attempts) == 1
    assert (RunPaths(run_dir).workspace / "launches.txt").read_text() == "run\n"
    assert ("prepare", "start") not in stages and ("score", "done") in stages
    assert again.outcome and again.outcome.source == "fallback_no_model"
