import pytest

from posttrainbench.records import (
    SCHEMA_VERSION,
    RunRecord,
    RunSpec,
    format_duration,
    new_run_id,
    parse_duration,
)
from posttrainbench.runner import harness_info


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10h", 36000), ("15m", 900), ("20s", 20), ("1h30m", 5400), ("90", 90), ("0.5m", 30)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "10 hours", "0s", "-5m", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(0) == "0s"


def test_run_record_round_trips_and_starts_pending() -> None:
    spec = RunSpec(
        run_id=new_run_id("noop", "Qwen/Qwen3-1.7B-Base", "gsm8k"),
        agent="noop",
        base_model="Qwen/Qwen3-1.7B-Base",
        benchmark="gsm8k",
        budget_s=60,
    )
    rec = RunRecord(spec=spec, harness=harness_info())
    again = RunRecord.model_validate_json(rec.model_dump_json())
    assert again == rec
    assert again.schema_version == SCHEMA_VERSION
    assert {s.state for s in again.stages.values()} == {"pending"}
    assert not again.complete
    assert "Qwen3-1.7B-Base" in spec.run_id and "/" not in spec.run_id


def test_run_ids_are_unique() -> None:
    assert len({new_run_id("a", "m", "b") for _ in range(50)}) == 50
