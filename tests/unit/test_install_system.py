"""scripts/install-system.sh, the first step of `make test` and `make demo`: it installs only what
is missing (nothing when all is there), and without root it stops at once with the exact
command. Runs the real script with a PATH of this machine's commands minus the ones a case
removes, a fake `apt-get` that records its calls and `id` telling the uid the case plays."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-system.sh"
# "Installs" into a folder of its own (never through the PATH's links to the real commands).
FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
[ "$1" = install ] || exit 0
for arg in "$@"; do
  case "$arg" in
    install|-*) continue ;;
    bubblewrap) cmd=bwrap ;; slurm-client) cmd=sbatch ;; nodejs) cmd=node ;; *) cmd="$arg" ;;
  esac
  printf '#!/bin/sh\\necho v20.0.0\\n' > "{installed}/$cmd"; chmod +x "{installed}/$cmd"
done
"""


def _path_without(tmp_path: Path, missing: set[str], uid: int) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has every command of this machine but `missing`."""
    bin_dir, installed, log = tmp_path / "bin", tmp_path / "installed", tmp_path / "apt.log"
    bin_dir.mkdir()
    installed.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bin_dir / entry.name
            if entry.name not in missing and not target.exists():
                target.symlink_to(entry.path)
    for name, text in (
        ("apt-get", FAKE_APT.format(log=log, installed=installed)),
        ("id", f"#!/bin/sh\necho {uid}\n"),
    ):
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{installed}", "HOME": str(tmp_path)}, log


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _all_installed_here(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cases below remove commands from a machine that has them all (make test's first
    step installed them). Checked as a non-root caller, so this never installs anything."""
    fake = tmp_path_factory.mktemp("id")
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "id").chmod(0o755)
    env = os.environ | {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("uid", [0, 1000])
def test_nothing_missing_means_no_apt_and_no_output(tmp_path: Path, uid: int) -> None:
    env, log = _path_without(tmp_path, set(), uid)
    done = _run(env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not log.exists()


def test_without_root_it_stops_with_the_exact_install_command(tmp_path: Path) -> None:
    env, log = _path_without(tmp_path, {"bwrap", "sbatch"}, 1000)
    done = _run(env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "missing system packages: bubblewrap slurm-client; install them with: "
        "sudo apt-get install -y bubblewrap && "
        "sudo apt-get install -y --no-install-recommends slurm-client\n"
    )
    assert not log.exists()


def test_as_root_it_installs_only_what_is_missing(tmp_path: Path) -> None:
    env, log = _path_without(tmp_path, {"bwrap", "socat", "sbatch"}, 0)
    done = _run(env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "installing system packages: bubblewrap socat slurm-client\n"
    assert log.read_text().splitlines() == [
        "update -qq",
        "install -y -qq bubblewrap socat",
        "install -y -qq --no-install-recommends slurm-client",
    ]
    assert _run(env).stderr == ""  # a second time: all there, nothing done


def test_the_demo_needs_only_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    env, _ = _path_without(tmp_path / "a", {"sbatch", "chromium", "podman", "node"}, 1000)
    assert _run(env, "demo").returncode == 0
    (tmp_path / "b").mkdir()
    env, _ = _path_without(tmp_path / "b", {"bwrap"}, 1000)
    done = _run(env, "demo")
    assert (done.returncode, done.stderr) == (
        1,
        "missing system packages: bubblewrap; install them with: "
        "sudo apt-get install -y bubblewrap\n",
    )


def test_node_older_than_20_stops_with_where_to_get_it(tmp_path: Path) -> None:
    env, _ = _path_without(tmp_path, {"node"}, 1000)
    node = Path(env["PATH"].split(os.pathsep)[0]) / "node"
    node.write_text('#!/bin/sh\n[ "$1" = --version ] && echo v18.19.0 || echo 18\n')
    node.chmod(0o755)
    done = _run(env)
    assert done.returncode == 1
    assert done.stderr.startswith("Node.js 20 or newer is needed (this machine has v18.19.0;")
    assert "rerun as root" in done.stderr and "nodesource" in done.stderr
    assert done.stderr.count("\n") == 1


def test_as_root_node_comes_from_pypi_where_apt_offers_an_old_one(tmp_path: Path) -> None:
    """Debian 12's apt offers Node 18: nodejs and npm are left out of the apt install and the
    pinned Node 20 wheel from PyPI is unpacked instead (here under a prefix of the test's)."""
    env, log = _path_without(tmp_path, {"node", "npm"}, 0)
    apt_cache = Path(env["PATH"].split(os.pathsep)[0]) / "apt-cache"
    apt_cache.unlink(missing_ok=True)
    apt_cache.write_text("#!/bin/sh\necho 'nodejs:'\necho '  Candidate: 18.20.4+dfsg-1~deb12u3'\n")
    apt_cache.chmod(0o755)
    prefix = tmp_path / "prefix"
    env["PTB_NODE_PREFIX"] = str(prefix)
    env |= {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "node" not in log.read_text()  # apt was never asked for nodejs or npm
    version = subprocess.run(
        [prefix / "bin" / "node", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "v20.18.0"
    npm = subprocess.run(
        [prefix / "bin" / "npm", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{prefix / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert npm.stdout.strip().split(".")[0].isdigit()


def _fake_ldconfig(env: dict[str, str], listing: str) -> None:
    ldconfig = Path(env["PATH"].split(os.pathsep)[0]) / "ldconfig"
    ldconfig.unlink(missing_ok=True)
    ldconfig.write_text(f"#!/bin/sh\n{listing}\n")
    ldconfig.chmod(0o755)


def test_a_library_listed_early_in_a_long_cache_is_found(tmp_path: Path) -> None:
    """The cache lists the library first and goes on for megabytes: a search that stops reading
    at the first match kills the listing with SIGPIPE, and pipefail called the library missing
    (CI failed on it once)."""
    env, log = _path_without(tmp_path, set(), 1000)
    _fake_ldconfig(
        env,
        "echo '\tlibatomic.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libatomic.so.1'\n"
        "yes '\tlibother.so.1 (libc6,x86-64) => /lib/libother.so.1' | head -n 200000",
    )
    done = _run(env)
    assert (done.returncode, done.stderr) == (0, "")
    assert not log.exists()


def test_a_missing_library_is_named_with_its_package(tmp_path: Path) -> None:
    env, _ = _path_without(tmp_path, set(), 1000)
    _fake_ldconfig(env, "echo '\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6'")
    done = _run(env)
    assert (done.returncode, done.stderr) == (
        1,
        "missing system packages: libatomic1; install them with: "
        "sudo apt-get install -y libatomic1\n",
    )
