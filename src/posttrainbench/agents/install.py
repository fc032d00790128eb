"""Agent CLIs from npm at pinned versions, each in its own project-managed prefix.

`ptb agents install [NAME]` runs `npm install --prefix <agents>/<package>@<version>` into a
temporary folder, checks that the installed executable reports the pinned version, and renames
the folder into place, so a half-finished install is never used. `locate` finds it again (the
version re-checked on every run) and fails with a one-line error and the install command. The
prefix is mounted read-only into the sandbox at its own path; its files are world-readable.

The agents folder is `$PTB_AGENTS_DIR`, or `<cache>/agents`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from posttrainbench.agents.base import NpmCli
from posttrainbench.config import Settings
from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.offline import require_network
from posttrainbench.records import CliInfo

VERSION_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 900
NPM_REGISTRY = "https://registry.npmjs.org/"


def agents_dir(settings: Settings) -> Path:
    override = os.environ.get("PTB_AGENTS_DIR")
    return Path(override).expanduser().resolve() if override else settings.cache_dir / "agents"


def prefix(cli: NpmCli, settings: Settings) -> Path:
    safe = cli.package.lstrip("@").replace("/", "+")
    return agents_dir(settings) / f"{safe}@{cli.version}"


def executable(cli: NpmCli, root: Path) -> Path:
    return root / "node_modules" / ".bin" / cli.bin


def reported_version(exe: Path) -> str:
    """What `<cli> --version` prints, first line; raises MissingDependencyError if it fails."""
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL, env=os.environ | {"NO_COLOR": "1", "CI": "1"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(
            f"{exe} does not run: {exc}", "reinstall it with ptb agents install"
        ) from exc
    text = (out.stdout or out.stderr).strip()
    if out.returncode != 0 or not text:
        raise MissingDependencyError(
            f"{exe} --version failed (exit {out.returncode})",
            "reinstall it with ptb agents install",
        )
    return text.splitlines()[0]


def _matches(reported: str, version: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(version)}(?![\d.])", reported) is not None


def locate(agent: str, cli: NpmCli, settings: Settings) -> CliInfo:
    """The installed, version-checked CLI of `agent`, or a one-line error saying how to get it."""
    root = prefix(cli, settings)
    exe = executable(cli, root)
    if not exe.exists():
        raise MissingDependencyError(
            f"agent {agent!r} needs {cli.package}@{cli.version}, which is not installed",
            f"run: ptb agents install {agent}",
        )
    reported = reported_version(exe)
    if not _matches(reported, cli.version):
        raise MissingDependencyError(
            f"{cli.package} in {root} reports {reported!r}, not the pinned {cli.version}",
            f"run: ptb agents install {agent} --force",
        )
    return CliInfo(package=cli.package, version=cli.version, reported=reported, path=str(exe))


def _world_readable(root: Path) -> None:
    """The sandboxed agent runs under another uid: let it read and run what npm installed."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o555)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def _registry(npm: str) -> str:
    """The registry npm will use (its config, .npmrc included)."""
    try:
        done = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return NPM_REGISTRY
    url = done.stdout.strip()
    return url if done.returncode == 0 and "://" in url else NPM_REGISTRY


def install(agent: str, cli: NpmCli, settings: Settings, *, force: bool = False) -> CliInfo:
    """Install the pinned CLI (no-op when a matching install is there) and return it."""
    if not force:
        try:
            return locate(agent, cli, settings)
        except MissingDependencyError:
            pass
    npm = shutil.which("npm")
    if npm is None:
        raise MissingDependencyError(
            "npm is not installed", "apt-get install nodejs npm (Node.js 20 or newer)"
        )
    require_network(f"npm install {cli.package} cannot reach the npm registry", _registry(npm))
    root = prefix(cli, settings)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(root.parent, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund", "--no-save",
             "--loglevel=error", f"{cli.package}@{cli.version}"],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise MissingDependencyError(
                f"npm install {cli.package}@{cli.version} failed: {last}",
                "check that the npm registry is reachable (npm config get registry)",
            )
        reported = reported_version(executable(cli, tmp))
        if not _matches(reported, cli.version):
            raise ConfigError(
                f"npm installed {cli.package} reporting {reported!r}, not {cli.version}",
                "the registry served another version; check npm config get registry",
            )
        _world_readable(tmp)
        os.chmod(tmp, 0o755)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return locate(agent, cli, settings)
