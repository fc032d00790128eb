"""The offline data layer: hub-cache snapshots in the standard layout, pinned files in the data
cache, and prefetch from an upstream URL (a local server) with its checksum enforced."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from posttrainbench.catalog.benchmarks import HubSource, UrlSource
from posttrainbench.errors import DataUnavailableError
from posttrainbench.evaluate import data
from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply
from tests.fixtures.hub import hf_home, write_snapshot

ROWS = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"}]


def test_hub_rows_read_parquet_jsonl_and_gzip_from_the_snapshot(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_snapshot(
            tmp_path / "hf",
            "org/set",
            {
                "main/test-00000-of-00001.parquet": ROWS,
                "other/test.jsonl": ROWS[:1],
                "packed/test.jsonl.gz": gzip.compress(json.dumps(ROWS[1]).encode() + b"\n"),
                "main/train-00000-of-00001.parquet": ROWS,
            },
        )
        src = HubSource(repo="org/set")
        assert data.hub_rows(src, ("main/test-*.parquet",)) == ROWS
        assert data.hub_rows(src, ("other/*.jsonl", "packed/*.gz")) == [ROWS[0], ROWS[1]]
        snap = data.hub_snapshot(src)
        assert data.snapshot_revision(snap) == snap.name and len(snap.name) == 40


def test_missing_hub_data_says_how_to_get_it(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"), pytest.raises(DataUnavailableError) as err:
        data.hub_rows(HubSource(repo="openai/gsm8k", gated=True), ("*.parquet",), "gsm8k")
    assert "not in the local Hugging Face cache (gated" in err.value.message
    assert "ptb data prefetch --benchmarks gsm8k" in (err.value.hint or "")


def test_pinned_revision_is_the_one_read(tmp_path: Path) -> None:
    pinned = "1bf8bbc3c0e35d04d00339c223a3fd653aa195ac"
    with hf_home(tmp_path / "hf"):
        write_snapshot(tmp_path / "hf", "org/bfcl", {"a.json": ROWS}, revision=pinned)
        assert data.hub_snapshot(HubSource(repo="org/bfcl", revision=pinned)).name == pinned
        with pytest.raises(DataUnavailableError):
            data.hub_snapshot(HubSource(repo="org/bfcl", revision="0" * 40))


def test_url_files_are_prefetched_and_checked(cache_dir: Path) -> None:
    body = b'{"q": 1}\n'
    good = hashlib.sha256(body).hexdigest()
    with FakeUpstream() as server:
        server.script("/q.jsonl", Reply(chunks=[body]))
        src = UrlSource(name="q.jsonl", url=f"{server.url}/q.jsonl", sha256=good)
        with pytest.raises(DataUnavailableError, match="not in the data cache"):
            data.url_file(src, "bench-x")
        path = data.prefetch(src, "bench-x")
        assert path.read_bytes() == body and data.url_file(src, "bench-x") == path
        bad = src.model_copy(update={"name": "r.jsonl", "sha256": "0" * 64})
        with pytest.raises(DataUnavailableError, match="not the pinned"):
            data.prefetch(bad, "bench-x")
    assert not (path.parent / "r.jsonl").exists()
    assert [p.name for p in path.parent.iterdir()] == ["q.jsonl"]  # no temporary left behind
    path.write_bytes(b"tampered\n")
    with pytest.raises(DataUnavailableError, match="not the pinned"):
        data.url_file(src, "bench-x")
