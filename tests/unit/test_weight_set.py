"""Collect keeps one weight set of final_model, read alike by provenance and the evaluation, and
refuses, with a one-line reason, a folder where readers could load different weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_collect import model, run_collect, skipped


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "workspace"
    path.mkdir(parents=True)
    return path


INDEX = "model.safetensors.index.json"


def sharded(folder: Path, shards: dict[str, str]) -> Path:
    """config.json, the index mapping tensor -> shard, and each shard present in `folder`."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / INDEX).write_text(json.dumps({"weight_map": shards}))
    for shard in set(shards.values()):
        if "/" not in shard:
            (folder / shard).write_bytes(b"w")
    return folder


def test_one_file_is_the_weight_set(ws: Path) -> None:
    model(ws / "final_model")
    out = run_collect(ws)
    assert out.status == "collected" and out.weights == ["model.safetensors"]


def test_an_index_and_exactly_its_shards_are_the_weight_set(ws: Path) -> None:
    sharded(ws / "final_model", {"a": "model-2.safetensors", "b": "model-1.safetensors"})
    out = run_collect(ws)
    assert out.status == "collected", out.reason
    assert out.weights == [INDEX, "model-1.safetensors", "model-2.safetensors"]


def test_weights_in_a_sub_folder_are_left_behind(ws: Path) -> None:
    src = model(ws / "final_model")
    (src / "checkpoint-500").mkdir()
    (src / "checkpoint-500" / "model.safetensors").write_bytes(b"older")
    out = run_collect(ws)
    assert out.status == "collected" and out.weights == ["model.safetensors"]
    assert "weights in a sub-folder" in skipped(out)["checkpoint-500/model.safetensors"]
    assert not (ws.parent / "final_model" / "checkpoint-500").exists()


def _extra_beside_single(src: Path) -> None:
    (src / "zz.safetensors").write_bytes(b"honest weights")


def _extra_beside_index(src: Path) -> None:
    (src / "model.safetensors").unlink()
    (src / INDEX).write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    (src / "model-1.safetensors").write_bytes(b"w")
    (src / "model-2.safetensors").write_bytes(b"w")


def _index_and_single(src: Path) -> None:
    (src / INDEX).write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    (src / "model-1.safetensors").write_bytes(b"w")


def _index_names(shard: str) -> object:
    def make(src: Path) -> None:
        (src / "model.safetensors").rename(src / "model-1.safetensors")
        index = {"weight_map": {"a": "model-1.safetensors", "b": shard}}
        (src / INDEX).write_text(json.dumps(index))

    return make


def _index_without_map(src: Path) -> None:
    (src / INDEX).write_text(json.dumps({"metadata": {}}))


def _index_not_json(src: Path) -> None:
    (src / INDEX).write_text("{not json")


def _transformers_weights(src: Path) -> None:
    (src / "config.json").write_text(json.dumps({"transformers_weights": "zz.safetensors"}))


def _adapter(src: Path) -> None:
    (src / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    (src / "adapter_model.safetensors").write_bytes(b"lora")


def _adapter_config_only(src: Path) -> None:
    (src / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))


def _other_name(src: Path) -> None:
    (src / "model.safetensors").rename(src / "weights.safetensors")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_extra_beside_single, "found *.safetensors: model.safetensors, zz.safetensors"),
        (_extra_beside_index, "beside the weight set model.safetensors.index.json names"),
        (_index_and_single, "model.safetensors; delete them"),
        (_index_names("../outside.safetensors"), "'../outside.safetensors': a shard must be"),
        (_index_names("/tmp/abs.safetensors"), "'/tmp/abs.safetensors': a shard must be"),
        (_index_names("sub/x.safetensors"), "'sub/x.safetensors': a shard must be"),
        (_index_names("model.bin"), "'model.bin': a shard must be"),
        (_index_names("gone.safetensors"), "names shards that are not in final_model"),
        (_index_without_map, "has no weight_map"),
        (_index_not_json, "is not valid JSON"),
        (_transformers_weights, "transformers_weights = 'zz.safetensors'"),
        (_adapter, "PEFT adapter"),
        (_adapter_config_only, "PEFT adapter"),
        (_other_name, "found *.safetensors: weights.safetensors"),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v)[:24],
)
def test_anything_but_one_weight_set_is_refused(ws: Path, make: object, reason: str) -> None:
    src = model(ws / "final_model")
    make(src)  # type: ignore[operator]
    out = run_collect(ws)
    assert out.status == "refused", out
    assert out.reason and reason in out.reason and "\n" not in out.reason, out.reason
    assert out.files == [] and out.weights == []
    assert not (ws.parent / "final_model").exists()  # nothing for anyone to load
