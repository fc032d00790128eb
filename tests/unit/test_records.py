import copy
import json

import pytest
from pydantic import ValidationError

from posttrainbench.records import (
    SCHEMA_VERSION,
    STORED,
    CheckResult,
    CollectOutcome,
    RunRecord,
    RunSpec,
    Verdict,
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


def _stored_run() -> dict:
    spec = RunSpec(
        run_id="r1", agent="noop", base_model="Qwen/Qwen3-1.7B-Base", benchmark="gsm8k", budget_s=60
    )
    rec = RunRecord(spec=spec, harness=harness_info(), collect=CollectOutcome(status="collected"))
    rec.verdict = Verdict(decision="clean", checks=["tamper"])
    return rec.model_dump(mode="json")


def test_a_v1_run_json_migrates_with_every_record_nested_in_it() -> None:
    old = _stored_run()
    for part in (old, old["spec"], old["verdict"]):
        part["schema_version"] = 1
    old["collect"]["files"] = ["config.json", "model.safetensors"]
    old["collect"]["skipped"] = ["notes.txt"]
    before = copy.deepcopy(old)
    for rec in (
        RunRecord.model_validate_json(json.dumps(old), context=STORED),
        RunRecord.model_validate(old, context=STORED),
    ):
        assert rec.collect is not None and rec.verdict is not None
        assert [f.path for f in rec.collect.files] == ["config.json", "model.safetensors"]
        assert rec.collect.skipped[0].reason == "not a model file"
        assert rec.schema_version == rec.spec.schema_version == SCHEMA_VERSION
        assert rec.verdict.schema_version == SCHEMA_VERSION
    assert old == before  # migration never edits its input


def test_an_older_record_nested_in_a_current_one_is_migrated_too() -> None:
    data = _stored_run()
    data["verdict"]["schema_version"] = 2
    assert RunRecord.model_validate_json(json.dumps(data), context=STORED).verdict is not None
    check = {"schema_version": 2, "name": "tamper", "passed": False, "evidence": {}}
    got = CheckResult.model_validate_json(json.dumps(check), context=STORED)
    assert got.status == "failed" and got.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (None, "no schema_version: not a posttrainbench record"),
        (99, f"schema_version 99 is newer than this ptb understands ({SCHEMA_VERSION})"),
        (0, "schema_version 0 is not a positive integer"),
        ("3", "Input should be a valid integer"),
    ],
)
def test_a_stored_record_must_carry_a_version_this_ptb_reads(version: object, message: str) -> None:
    data = _stored_run()
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    for read in (
        lambda: RunRecord.model_validate_json(json.dumps(data), context=STORED),
        lambda: RunRecord.model_validate(data, context=STORED),
    ):
        with pytest.raises(ValidationError, match="schema_version") as err:
            read()
        assert message in str(err.value)


def test_a_record_built_in_code_takes_the_current_version() -> None:
    data = _stored_run()
    del data["schema_version"]
    assert RunRecord.model_validate(data).schema_version == SCHEMA_VERSION
    assert RunRecord.model_validate_json(json.dumps(data)).schema_version == SCHEMA_VERSION


def test_a_run_stored_before_suites_reads_as_v1_0_and_a_new_one_as_v1_2() -> None:
    data = _stored_run()
    data["schema_version"] = data["spec"]["schema_version"] = 3
    data["spec"].pop("suite", None)
    old = RunRecord.model_validate_json(json.dumps(data), context=STORED)
    assert old.spec.suite == "ptb-v1.0"
    assert RunRecord.model_validate(_stored_run()).spec.suite == "ptb-v1.2"
