"""HOME, /tmp and /var/tmp: kept by the sandbox in the run directory, frozen with the workspace
(data copied, weights and large binaries listed), scanned by decontamination with evidence
naming home/… and tmp/…, and the hub repos the agent downloaded listed from their folders."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.integrity import frozen
from posttrainbench.integrity.base import CheckContext
from posttrainbench.integrity.decontamination import DecontaminationCheck
from posttrainbench.integrity.downloads import DownloadedRepo, downloaded_repos
from posttrainbench.records import RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info
from posttrainbench.sandbox import guest
from posttrainbench.sandbox.base import GUEST, LaunchRequest
from posttrainbench.sandbox.bwrap import BwrapSandbox
from posttrainbench.workspace import builder
from tests.fixtures.hub import hf_home, write_snapshot
from tests.fixtures.wordproblems import TEST_ITEMS, TRAIN_ITEMS

GSM8K_REVISION = "cc7b047b6e5bb11b4f1af84efc572db110a51b3c"


def test_tmp_and_var_tmp_are_run_directory_folders_under_bwrap(tmp_path: Path) -> None:
    ws, tmp, var_tmp, home = (tmp_path / n for n in ("ws", "tmp", "var_tmp", "home"))
    for folder in (ws, tmp, var_tmp, home):
        folder.mkdir()
    for folder in (tmp, var_tmp):
        folder.chmod(0o1777)
    request = LaunchRequest(
        argv=["bash", "-c", "echo a > /tmp/kept.txt && echo b > /var/tmp/also.txt && echo ok"],
        workdir=ws,
        env={"PATH": "/usr/bin:/bin", "HOME": str(GUEST.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        run_id="unit-run",
        mounts=guest.etc_mounts(),
        home=home,
        tmp=tmp,
        var_tmp=var_tmp,
    )
    line = " ".join(BwrapSandbox().command(request))
    assert f"--bind {tmp} /tmp" in line and f"--bind {var_tmp} /var/tmp" in line
    assert "--tmpfs /tmp" not in line
    launched = BwrapSandbox().launch(request)
    out, err = launched.proc.communicate(timeout=60)
    assert (launched.proc.returncode, out.strip()) == (0, b"ok"), err
    assert (tmp / "kept.txt").read_text() == "a\n"
    assert (var_tmp / "also.txt").read_text() == "b\n"


def test_podman_and_docker_bind_the_same_folders(tmp_path: Path) -> None:
    from posttrainbench.sandbox.container import DockerSandbox, PodmanSandbox

    tmp, var_tmp = tmp_path / "tmp", tmp_path / "var_tmp"
    request = LaunchRequest(
        argv=["true"], workdir=tmp_path, env={}, stdout=1, stderr=2, image="img",
        tmp=tmp, var_tmp=var_tmp,
    )  # fmt: skip
    for sandbox in (
        PodmanSandbox(executable="podman", root=False, runtime=""),
        DockerSandbox(executable="docker", root=False),
    ):
        args = sandbox.command(request)
        pairs = {args[i + 1] for i, a in enumerate(args) if a == "-v"}
        assert {f"{tmp}:/tmp", f"{var_tmp}:/var/tmp"} <= pairs
        tmpfs = [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
        assert not any(t.startswith(("/tmp:", "/var/tmp:")) for t in tmpfs), tmpfs


def _safetensors(size: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [size // 4], "data_offsets": [0, size]}})
    return struct.pack("<Q", len(header)) + header.encode() + bytes(size)


def test_home_is_frozen_with_data_copied_and_weights_listed(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    hub = paths.agent_home / ".cache" / "huggingface" / "hub"
    blob = hub / "models--someone--tuned" / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(_safetensors(1024))  # a hub blob: no suffix, weights by its header
    snap = hub / "models--someone--tuned" / "snapshots" / "c0ffee"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to("../../blobs/0123abcd")
    pip = paths.agent_home / ".cache" / "pip" / "http-v2" / "a" / "entry"
    pip.parent.mkdir(parents=True)
    pip.write_bytes(b"PK\x03\x04" + os.urandom(frozen.LARGE_BINARY))  # a cached wheel
    odd = paths.agent_home / "stash.bin.x"
    odd.write_bytes(b"\x01\x00" + os.urandom(frozen.LARGE_BINARY))  # unknown binary: copied
    data = paths.agent_home / ".cache" / "huggingface" / "datasets" / "org___math" / "train.arrow"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"\xff\xff\xff\xff" + bytes(frozen.LARGE_BINARY))  # arrow stream: data
    (paths.agent_home / "notes.txt").write_text("kept\n")
    ids = paths.agent_tmp / "ids.npy"
    ids.parent.mkdir(parents=True)
    ids.write_bytes(b"\x93NUMPY" + bytes(100))  # token ids: copied for decoding
    paths.workspace.mkdir(parents=True)

    manifests = frozen.freeze_run(paths)

    home = {f.path: f for f in manifests["home"].files}
    assert home["notes.txt"].kind == "copied"
    assert home["stash.bin.x"].kind == "copied"  # not a tool's cache: decontamination reads it
    assert home[".cache/huggingface/hub/models--someone--tuned/blobs/0123abcd"].kind == "listed"
    assert home[".cache/huggingface/hub/models--someone--tuned/snapshots/c0ffee/model.safetensors"]
    assert home[".cache/pip/http-v2/a/entry"].reason == "tool cache"
    assert home[".cache/huggingface/datasets/org___math/train.arrow"].kind == "copied"
    assert {f.path: f.kind for f in manifests["tmp"].files} == {"ids.npy": "copied"}
    assert manifests["var_tmp"].files == []
    assert frozen.load_manifest(paths.frozen_tree("home")).files == manifests["home"].files
    assert (paths.frozen_tree("home") / "notes.txt").read_text() == "kept\n"
    assert not (paths.frozen_tree("home") / ".cache/pip/http-v2/a/entry").exists()
    assert frozen.load_manifest(paths.frozen_workspace).files == []  # frozen.json, as before

    assert downloaded_repos(paths.root / "frozen") == [
        DownloadedRepo("org/math", "dataset", "home/.cache/huggingface/datasets/org___math"),
        DownloadedRepo(
            "someone/tuned", "model", "home/.cache/huggingface/hub/models--someone--tuned"
        ),
    ]


@pytest.fixture
def gsm8k_context(tmp_path: Path, cache_dir: Path, settings: Settings) -> CheckContext:
    with hf_home(cache_dir / "hf"):
        write_snapshot(
            cache_dir / "hf",
            "openai/gsm8k",
            {
                "main/test-00000-of-00001.parquet": TEST_ITEMS,
                "main/train-00000-of-00001.parquet": TRAIN_ITEMS,
            },
            revision=GSM8K_REVISION,
        )
    paths = RunPaths(tmp_path / "run")
    model, bench = MODELS.get("ptb-tiny"), BENCHMARKS.get("gsm8k")
    builder.write_evaluator(paths.workspace, model, bench)
    (paths.workspace / "train.py").write_text("print('training on the train split')\n")
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="gsm8k", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    return CheckContext(paths=paths, record=record, model=model, bench=bench, settings=settings)


def test_test_items_kept_only_in_home_or_tmp_are_found_there(gsm8k_context: CheckContext) -> None:
    paths = gsm8k_context.paths
    cached = paths.agent_home / ".cache" / "huggingface" / "datasets" / "x___y" / "train.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps(TEST_ITEMS[1]) + "\n")
    scratch = paths.agent_tmp / "sft" / "data.jsonl"
    scratch.parent.mkdir(parents=True)
    scratch.write_text(json.dumps(TRAIN_ITEMS[0]) + "\n" + json.dumps(TEST_ITEMS[4]) + "\n")
    frozen.freeze_run(paths)
    with hf_home(gsm8k_context.settings.cache_dir / "hf"):
        decon = DecontaminationCheck().run(gsm8k_context)
    assert decon.status == "failed"
    found = {(e.path, e.line, e.item) for e in decon.evidence if e.decisive}
    assert found == {
        ("home/.cache/huggingface/datasets/x___y/train.jsonl", 1, "gsm8k-test-1"),
        ("tmp/sft/data.jsonl", 2, "gsm8k-test-4"),
    }


def test_a_clean_home_and_tmp_pass(gsm8k_context: CheckContext) -> None:
    paths = gsm8k_context.paths
    (paths.agent_home / ".cache").mkdir(parents=True)
    (paths.agent_home / ".cache" / "train.jsonl").write_text(json.dumps(TRAIN_ITEMS[2]) + "\n")
    paths.agent_tmp.mkdir(parents=True)
    (paths.agent_tmp / "log.txt").write_text("step 10 loss 0.4\n")
    frozen.freeze_run(paths)
    with hf_home(gsm8k_context.settings.cache_dir / "hf"):
        decon = DecontaminationCheck().run(gsm8k_context)
    assert decon.status == "passed", decon.reasons
    assert decon.figures["bytes_scanned"] > 0


def test_a_run_frozen_by_an_older_ptb_gets_its_missing_trees_only(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    paths.workspace.mkdir(parents=True)
    (paths.workspace / "a.txt").write_text("a\n")
    frozen.freeze(paths.workspace, paths.frozen_workspace)  # what collect did before trees
    (paths.workspace / "late.txt").write_text("written after collect\n")
    paths.agent_home.mkdir(parents=True)
    (paths.agent_home / "kept.jsonl").write_text("{}\n")
    done = frozen.freeze_run(paths, missing_only=True)
    assert sorted(done) == ["home", "tmp", "var_tmp"]
    assert [f.path for f in frozen.load_manifest(paths.frozen_workspace).files] == ["a.txt"]
    assert [f.path for f in done["home"].files] == ["kept.jsonl"]
