"""Bundle extraction within caps: every member is checked against MANIFEST.json before a byte of
it is written, and a decompression bomb is refused within a few MB of writes."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from posttrainbench.config import load_settings
from posttrainbench.results.bundle import (
    BUNDLE_NAME,
    MANIFEST_NAME,
    BundleCaps,
    BundleFile,
    BundleManifest,
    UnsafeBundle,
    extract,
    verify_bundle,
)

BIG = BundleCaps(max_bytes=2**40, max_member_bytes=2**40, max_files=100, max_ratio=100)
RLE_BLOCK = 128 * 1024  # the largest zstd block: 4 compressed bytes regenerate this many zeros


def _manifest(files: dict[str, int | bytes]) -> bytes:
    """MANIFEST.json declaring files (their data, or a bare size with a dummy digest)."""
    entries = [
        BundleFile(path=name, size=len(v), sha256=hashlib.sha256(v).hexdigest())
        if isinstance(v, bytes)
        else BundleFile(path=name, size=v, sha256="0" * 64)
        for name, v in files.items()
    ]
    manifest = BundleManifest(
        run_id="r", ptb_version="0", benchmark="arith", base_model="ptb-tiny", score=0.5,
        files=entries,
    )  # fmt: skip
    return manifest.model_dump_json().encode()


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _write(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(_tar(members)))
    return path


def _bomb(path: Path, declared_in_manifest: int, size: int, compressed: int = 2**20) -> Path:
    """A `compressed`-byte zstd frame: a tar prefix (MANIFEST.json, then the header of a
    `size`-byte member) in a raw block, then RLE blocks of zeros (~32768x) until the file is
    `compressed` bytes. Built by hand: compressing GBs of zeros to make it would take minutes."""
    manifest = _manifest({"final_model/model.safetensors": declared_in_manifest})
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        bomb = tarfile.TarInfo("final_model/model.safetensors")
        bomb.size = size
        tar.fileobj.write(bomb.tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors))
    prefix = head.getvalue()
    assert len(prefix) < RLE_BLOCK
    frame = bytearray(b"\x28\xb5\x2f\xfd")  # zstd magic
    frame += bytes([0x00, 0x50])  # no content size, no checksum; window 1 MiB
    frame += (len(prefix) << 3).to_bytes(3, "little") + prefix  # a raw block
    n = (compressed - len(frame)) // 4
    rle = ((RLE_BLOCK << 3) | (1 << 1)).to_bytes(3, "little") + b"\x00"
    last = ((RLE_BLOCK << 3) | (1 << 1) | 1).to_bytes(3, "little") + b"\x00"
    path.write_bytes(bytes(frame) + rle * (n - 1) + last)
    return path


def _written(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_plain_bundle_extracts(tmp_path: Path) -> None:
    files = {"run.json": b"{}", "final_model/config.json": b'{"a": 1}'}
    path = _write(tmp_path / BUNDLE_NAME, [(MANIFEST_NAME, _manifest(files)), *files.items()])
    (tmp_path / "out").mkdir()
    manifest = extract(path, tmp_path / "out", BIG)
    assert [f.path for f in manifest.files] == list(files)
    assert (tmp_path / "out" / "final_model" / "config.json").read_bytes() == b'{"a": 1}'


def test_the_bomb_is_a_bomb(tmp_path: Path) -> None:
    """The bomb of the tests below: 1 MiB that decompresses to 32 GiB."""
    path = _bomb(tmp_path / BUNDLE_NAME, 30 * 2**30, 30 * 2**30)
    assert path.stat().st_size <= 2**20
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zr:
        got = 0
        while got < 256 * 2**20 and (chunk := zr.read(2**24)):
            got += len(chunk)
    assert got >= 256 * 2**20  # and it goes on: (2**20 // 4) blocks of 128 KiB = 32 GiB


def test_a_bomb_declared_in_its_manifest_is_refused_within_mbs(tmp_path: Path) -> None:
    """Under the default caps (sized for an 8 GB model, so 30 GiB declared is admitted), the
    ratio cap stops decompression a few MB in."""
    path = _bomb(tmp_path / BUNDLE_NAME, 30 * 2**30, 30 * 2**30)
    caps = BundleCaps.from_settings(load_settings())
    assert caps.max_member_bytes >= 30 * 2**30 and caps.max_bytes >= 30 * 2**30
    (tmp_path / "out").mkdir()
    started = time.monotonic()
    with pytest.raises(UnsafeBundle, match="expands more than 100x"):
        extract(path, tmp_path / "out", caps)
    took = time.monotonic() - started
    written = _written(tmp_path / "out")
    print(f"bomb refused after {took:.2f}s, {written / 2**20:.1f} MiB written")
    assert took < 10 and written < 8 * 2**20


def test_a_member_larger_than_declared_is_refused_before_writing(tmp_path: Path) -> None:
    path = _bomb(tmp_path / BUNDLE_NAME, 1024, 30 * 2**30)
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeBundle, match="the manifest says 1024"):
        extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "final_model" / "model.safetensors").exists()


def test_the_verify_command_refuses_the_bomb(tmp_path: Path) -> None:
    path = _bomb(tmp_path / BUNDLE_NAME, 30 * 2**30, 30 * 2**30)
    report = verify_bundle(path, tmp_path / "work")
    assert report.verdict == "corrupt" and "decompression bomb" in report.problems[0]


@pytest.mark.parametrize(
    ("caps", "setting"),
    [
        (BIG.model_copy(update={"max_bytes": 100}), "PTB_BUNDLE_MAX_GB"),
        (BIG.model_copy(update={"max_member_bytes": 60}), "PTB_BUNDLE_MAX_MEMBER_GB"),
        (BIG.model_copy(update={"max_files": 1}), "PTB_BUNDLE_MAX_FILES"),
    ],
)
def test_small_caps_refuse_before_any_member(
    tmp_path: Path, caps: BundleCaps, setting: str
) -> None:
    files = {"a": b"x" * 64, "b": b"y" * 50}
    path = _write(tmp_path / BUNDLE_NAME, [(MANIFEST_NAME, _manifest(files)), *files.items()])
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeBundle, match=setting):
        extract(path, tmp_path / "out", caps)
    assert not (tmp_path / "out" / "a").exists()


def test_the_size_cap_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_BUNDLE_MAX_GB", str(100 / 2**30))
    files = {"a": b"x" * 64, "b": b"y" * 50}
    path = _write(tmp_path / BUNDLE_NAME, [(MANIFEST_NAME, _manifest(files)), *files.items()])
    report = verify_bundle(path, tmp_path / "work")
    assert report.verdict == "corrupt" and "PTB_BUNDLE_MAX_GB" in report.problems[0]


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_special("final_model", tarfile.SYMTYPE, "/etc"), "not a plain file"),
        (_special("final_model/x", tarfile.LNKTYPE, "run.json"), "not a plain file"),
        (_special("final_model/fifo", tarfile.FIFOTYPE), "not a plain file"),
        (_special("final_model/tty", tarfile.CHRTYPE), "not a plain file"),
        (_special("final_model/dir", tarfile.DIRTYPE), "not a plain file"),
        (_special("final_model/holes", tarfile.GNUTYPE_SPARSE), "not a plain file"),
        (("../evil", b"pwned"), "outside"),
        (("a/../../evil", b"pwned"), "outside"),
        (("./run.json", b"{}"), "outside"),
        (("/tmp/evil-abs", b"pwned"), "absolute"),
        (("run.json", b"{}"), "does not start with"),
    ],
)
def test_hostile_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], message: str
) -> None:
    path = _write(tmp_path / BUNDLE_NAME, [member])
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeBundle, match=message):
        extract(path, tmp_path / "out", BIG)
    assert os.listdir(tmp_path / "out") == [] and not (tmp_path / "evil").exists()


def test_members_the_manifest_does_not_list_are_refused(tmp_path: Path) -> None:
    files = {"run.json": b"{}"}
    head: tuple[str, bytes] = (MANIFEST_NAME, _manifest(files))
    for extra, message in [
        ([("run.json", b"{}"), ("extra", b"!")], "'extra' is not in the manifest"),
        ([("run.json", b"{}"), ("run.json", b"{}")], "not in the manifest \\(or twice\\)"),
        ([("run.json", b"{} ")], "is 3 bytes, the manifest says 2"),
        ([head, ("run.json", b"{}")], "MANIFEST.json' is not in the manifest"),
    ]:
        out = tmp_path / str(len(os.listdir(tmp_path)))
        out.mkdir()
        with pytest.raises(UnsafeBundle, match=message):
            extract(_write(tmp_path / BUNDLE_NAME, [head, *extra]), out, BIG)
