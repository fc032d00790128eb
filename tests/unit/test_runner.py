"""The stage machine in-process: resume semantics after a crash between stages."""

from datetime import UTC, datetime, timedelta

from posttrainbench import runner, solve
from posttrainbench.config import Settings
from posttrainbench.records import AgentAttempt, AgentOutcome, RunSpec, new_run_id
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


def _outcome(policy: str) -> AgentOutcome:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = AgentOutcome(
        started_at=t0, deadline=t0 + timedelta(hours=1), budget_s=3600, resume_policy=policy
    )  # type: ignore[arg-type]
    # Ran 20 minutes, then the harness died; the agent was gone when the harness came back.
    out.attempts.append(
        AgentAttempt(started_at=t0, ended_at=t0 + timedelta(minutes=20), exit_reason="killed",
                     harness_interrupted=True)
    )  # fmt: skip
    return out


def test_resume_policy_remaining_gives_back_the_unused_budget() -> None:
    out = _outcome("remaining")
    resumed_at = out.started_at + timedelta(minutes=50)  # 30 minutes of harness downtime
    assert solve.next_deadline(out, resumed_at) == resumed_at + timedelta(minutes=40)


def test_resume_policy_deadline_keeps_the_first_deadline() -> None:
    out = _outcome("deadline")
    resumed_at = out.started_at + timedelta(minutes=50)
    assert solve.next_deadline(out, resumed_at) == out.started_at + timedelta(hours=1)


def test_accounting_separates_time_used_from_downtime() -> None:
    out = _outcome("remaining")
    t = out.started_at
    out.attempts.append(
        AgentAttempt(started_at=t + timedelta(minutes=50), ended_at=t + timedelta(minutes=90))
    )
    solve._account(out)
    assert (out.wall_s, out.downtime_s) == (60 * 60.0, 30 * 60.0)


def test_the_agent_in_an_isolating_sandbox_is_the_guest_user(settings: Settings) -> None:
    # DistributedDataParallel imports torch._dynamo, whose getpass.getuser() needs a name.
    cmd = (
        'echo "$USER $LOGNAME [$CUDA_VISIBLE_DEVICES]" > who.txt; '
        "python3 -c 'import getpass; print(getpass.getuser())' >> who.txt"
    )
    spec = _spec(cmd).model_copy(update={"sandbox": "bwrap"})
    run_dir = runner.create_run(spec, settings)
    record = runner.execute(run_dir, settings, until="solve")
    assert record.agent and record.agent.exit_reason == "finished"
    who = (RunPaths(run_dir).workspace / "who.txt").read_text().split()
    assert who == ["agent", "agent", "[]", "agent"]
