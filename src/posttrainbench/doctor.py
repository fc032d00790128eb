"""`ptb doctor`: what this machine offers a run, and how to install what it lacks.

`diagnose()` runs the probes of `PROBES` (sandbox backends, tools, GPUs, agent CLIs, Python
packages) concurrently, each command under a timeout of a few seconds, and returns a
`DoctorReport`; `render()` turns it into a rich table. Probes reach the machine only through a
`Machine` (`which`, a command runner, package metadata), so tests can fake one.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from rich.table import Table
from rich.text import Text

from posttrainbench.agents.base import NpmCli
from posttrainbench.errors import PtbError
from posttrainbench.records import Record
from posttrainbench.sandbox.gpu import Completed, Runner, query_gpus, run_command

Kind = Literal["sandbox backend", "tool", "gpu", "agent CLI", "python package", "benchmark data"]
KINDS: tuple[Kind, ...] = (
    "sandbox backend", "tool", "gpu", "agent CLI", "python package", "benchmark data"
)  # fmt: skip
TIMEOUT_S = 5.0
TORCH_TIMEOUT_S = 30.0  # importing torch and initialising CUDA on a GPU machine
SLACK_S = 2.0  # a probe's time beyond its commands' timeouts before it counts as unanswered


def _agent_clis() -> dict[str, tuple[NpmCli, str]]:
    """Each CLI agent's pinned package and where `ptb agents install` puts its executable."""
    from posttrainbench.agents import get_agent, install
    from posttrainbench.catalog import AGENTS
    from posttrainbench.config import load_settings

    settings = load_settings()
    found = {}
    for name, _ in AGENTS:
        cli = get_agent(name).cli
        if cli is not None:
            found[name] = (cli, str(install.executable(cli, install.prefix(cli, settings))))
    return found


CLI_PACKAGES = _agent_clis()


# distribution → optional (its absence only costs speed or a feature)
PYTHON_PACKAGES: dict[str, bool] = {
    "torch": False,
    "transformers": False,
    "trl": False,
    "peft": False,
    "inspect-ai": False,
    "vllm": True,
}


class DoctorItem(Record):
    name: str
    kind: Kind
    found: bool = Field(description="Present and usable on this machine.")
    version: str | None = None
    detail: str | None = Field(default=None, description="One line: what was seen, or why not.")
    hint: str | None = Field(default=None, description="How to get it, when not found.")
    optional: bool = False


class DoctorReport(Record):
    items: list[DoctorItem]
    hostname: str
    python: str
    duration_s: float

    def get(self, name: str) -> DoctorItem:
        return next(item for item in self.items if item.name == name)

    def of_kind(self, kind: Kind) -> list[DoctorItem]:
        return [item for item in self.items if item.kind == kind]

    @property
    def missing(self) -> list[DoctorItem]:
        return [item for item in self.items if not item.found and not item.optional]


@dataclass(frozen=True)
class Machine:
    """Everything a probe may touch."""

    which: Callable[[str], str | None] = shutil.which
    run: Runner = run_command
    version: Callable[[str], str] = importlib.metadata.version
    timeout_s: float = TIMEOUT_S

    def call(self, argv: list[str], timeout_s: float | None = None) -> Completed:
        """Run argv; a timeout or a failure to start becomes a failed Completed (124, 127)."""
        limit = timeout_s or self.timeout_s
        try:
            return self.run(argv, timeout=limit)
        except subprocess.TimeoutExpired:
            return Completed(returncode=124, stderr=f"no answer within {limit:g}s")
        except OSError as exc:
            return Completed(returncode=127, stderr=f"cannot run {argv[0]}: {exc.strerror or exc}")

    def capped(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> Completed:
        """The runner, with this machine's timeout as an upper bound."""
        return self.run(argv, timeout=min(timeout, self.timeout_s), env=env)


@dataclass(frozen=True)
class Probe:
    name: str
    kind: Kind
    check: Callable[[Machine], list[DoctorItem]]
    timeout_s: float = TIMEOUT_S


def _socat_version(done: Completed) -> str:
    m = re.search(r"^socat version (\S+)", done.stdout, re.MULTILINE)
    return f"socat {m[1]}" if m else done.first_line()


def _smi_version(done: Completed) -> str:
    fields = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(":") for line in done.stdout.splitlines())
    )
    if "driver version" in fields:
        return f"driver {fields['driver version']}, CUDA {fields.get('cuda version', '?')}"
    return done.first_line()


def _command(
    name: str,
    kind: Kind,
    hint: str,
    *,
    binaries: tuple[str, ...] = (),
    args: tuple[str, ...] = ("--version",),
    parse: Callable[[Completed], str] = Completed.first_line,
    detail: str | None = None,
) -> Probe:
    """A program that is usable when `<binary> --version` succeeds."""

    def check(m: Machine) -> list[DoctorItem]:
        item = DoctorItem(name=name, kind=kind, found=False, detail=detail, hint=hint)
        path = next((p for b in binaries or (name,) if (p := m.which(b))), None)
        if path is None:
            return [item]
        done = m.call([path, *args])
        if done.returncode != 0:
            item.detail = f"{path} is installed but failed: {done.last_error_line()}"
            return [item]
        return [item.model_copy(update={"found": True, "version": parse(done), "hint": None})]

    return Probe(name, kind, check)


def _host(m: Machine) -> list[DoctorItem]:
    return [
        DoctorItem(
            name="host",
            kind="sandbox backend",
            found=True,
            detail="no isolation; development only",
        )
    ]


_BWRAP_HINT = "apt-get install bubblewrap"
_USERNS_HINT = (
    "allow unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 (Debian), "
    "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04); in a container, run it "
    "with user namespaces allowed"
)


def _bwrap(m: Machine) -> list[DoctorItem]:
    item = _command("bwrap", "sandbox backend", _BWRAP_HINT).check(m)[0]
    if not item.found:
        return [item]
    done = m.call(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"])
    if done.returncode == 0:
        return [item.model_copy(update={"detail": "user namespaces work"})]
    reason = done.last_error_line()
    return [
        item.model_copy(
            update={
                "found": False,
                "detail": f"installed but cannot create namespaces: {reason}",
                "hint": _USERNS_HINT,
            }
        )
    ]


def _docker(m: Machine) -> list[DoctorItem]:
    item = DoctorItem(
        name="docker",
        kind="sandbox backend",
        found=False,
        hint="install Docker Engine (https://docs.docker.com/engine/install/)",
    )
    if not m.which("docker"):
        return [item]
    done = m.call(["docker", "version", "--format", "{{.Client.Version}}|{{.Server.Version}}"])
    client, _, server = done.stdout.strip().partition("|")
    if done.returncode == 0 and server:
        return [
            item.model_copy(
                update={"found": True, "version": f"client {client}, engine {server}", "hint": None}
            )
        ]
    return [
        item.model_copy(
            update={
                "version": f"client {client}" if client else None,
                "detail": f"client only, no engine: {done.last_error_line()}",
                "hint": "start the engine (sudo systemctl start docker) or set DOCKER_HOST; "
                "your user needs access to its socket (the docker group)",
            }
        )
    ]


def _gpus(m: Machine) -> list[DoctorItem]:
    none = DoctorItem(
        name="gpu",
        kind="gpu",
        found=False,
        detail="no NVIDIA GPU found",
        hint="runs with --gpus need a machine with NVIDIA GPUs and their driver (nvidia-smi)",
    )
    smi = m.which("nvidia-smi")
    if smi is None:
        return [none]
    try:
        gpus = query_gpus(smi, run=m.capped)
    except PtbError as exc:
        return [none.model_copy(update={"detail": exc.message, "hint": exc.hint})]
    if not gpus:
        return [none]

    def mib(value: int | None) -> str:
        return "?" if value is None else f"{value} MiB"

    return [
        DoctorItem(
            name=f"GPU {g.index}",
            kind="gpu",
            found=True,
            version=g.name,
            detail=f"{mib(g.memory_total_mib)}, {mib(g.memory_used_mib)} used, "
            f"{'?' if g.utilization_pct is None else g.utilization_pct}% busy, {g.uuid}",
        )
        for g in gpus
    ]


def _requirement(dist: str) -> str:
    """The pip argument posttrainbench itself asks for, quoted, e.g. "'trl<2,>=1.0'"."""
    try:
        requires = importlib.metadata.requires("posttrainbench") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    key = re.sub(r"[-_.]+", "-", dist).lower()
    for req in requires:
        name = re.match(r"[A-Za-z0-9._-]+", req)
        if name and ";" not in req and re.sub(r"[-_.]+", "-", name[0]).lower() == key:
            return shlex.quote(req)
    return dist


def _python(dist: str, optional: bool) -> Probe:
    def check(m: Machine) -> list[DoctorItem]:
        item = DoctorItem(name=dist, kind="python package", found=False, optional=optional)
        try:
            return [item.model_copy(update={"found": True, "version": m.version(dist)})]
        except importlib.metadata.PackageNotFoundError:
            extra = " (optional)" if optional else ""
            return [item.model_copy(update={"hint": f"pip install {_requirement(dist)}{extra}"})]

    return Probe(dist, "python package", check)


_CUDA_SCRIPT = (
    "import json, torch; print(json.dumps({'available': torch.cuda.is_available(), "
    "'cuda': torch.version.cuda, 'count': torch.cuda.device_count()}))"
)
_CUDA_WHEEL = "pip install torch --index-url https://download.pytorch.org/whl/cu128"


def _torch_cuda(m: Machine) -> list[DoctorItem]:
    item = DoctorItem(name="torch CUDA", kind="python package", found=False)
    try:
        version = m.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return [item.model_copy(update={"detail": "torch is not installed"})]
    if "+cpu" in version:
        return [
            item.model_copy(
                update={"detail": f"torch {version} is a CPU-only build", "hint": _CUDA_WHEEL}
            )
        ]
    if not m.which("nvidia-smi"):
        return [item.model_copy(update={"detail": "no NVIDIA driver (no nvidia-smi)"})]
    done = m.call([sys.executable, "-c", _CUDA_SCRIPT], TORCH_TIMEOUT_S)
    try:
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [item.model_copy(update={"detail": f"probe failed: {done.last_error_line()}"})]
    if not seen["available"]:
        return [
            item.model_copy(
                update={
                    "detail": f"torch {version} (CUDA {seen['cuda']}) cannot use the GPUs",
                    "hint": f"match torch's CUDA to the driver (nvidia-smi), e.g. {_CUDA_WHEEL}",
                }
            )
        ]
    return [
        item.model_copy(
            update={"found": True, "version": f"CUDA {seen['cuda']}, {seen['count']} device(s)"}
        )
    ]


def _benchmark_data(m: Machine) -> list[DoctorItem]:
    """Whether each official benchmark's data is in the local caches (evaluation never
    downloads); optional: only the benchmarks you run need theirs."""
    from posttrainbench.catalog.benchmarks import OFFICIAL
    from posttrainbench.evaluate import data

    items = []
    for info in OFFICIAL:
        missing = []
        for src in info.sources:
            try:
                data.check_cached((src,), info.id)
            except PtbError:
                missing.append(src.label)
        items.append(
            DoctorItem(
                name=info.id,
                kind="benchmark data",
                found=not missing,
                detail=f"missing {', '.join(missing)}" if missing else "cached",
                hint=None if not missing else f"ptb data prefetch --benchmarks {info.id}",
                optional=True,
            )
        )
    return items


PROBES: tuple[Probe, ...] = (
    Probe("host", "sandbox backend", _host),
    Probe("bwrap", "sandbox backend", _bwrap, 2 * TIMEOUT_S),
    Probe("docker", "sandbox backend", _docker),
    _command("podman", "sandbox backend", "apt-get install podman"),
    _command(
        "apptainer",
        "sandbox backend",
        "install apptainer (https://apptainer.org/docs/admin/main/installation.html)",
        binaries=("apptainer", "singularity"),
    ),
    _command(
        "socat",
        "tool",
        "apt-get install socat",
        args=("-V",),
        parse=_socat_version,
        detail="needed to bridge the network into the sandbox",
    ),
    _command(
        "nvidia-smi",
        "tool",
        "install the NVIDIA driver (it ships nvidia-smi)",
        parse=_smi_version,
    ),
    _command("git", "tool", "apt-get install git"),
    _command("node", "tool", "apt-get install nodejs npm", detail="needed by the agent CLIs"),
    _command("npm", "tool", "apt-get install nodejs npm", detail="installs the agent CLIs"),
    Probe("gpu", "gpu", _gpus),
    *(
        _command(
            name,
            "agent CLI",
            f"ptb agents install {name}",
            binaries=(exe, cli.bin),
            detail=f"pinned {cli.package}@{cli.version}",
        )
        for name, (cli, exe) in CLI_PACKAGES.items()
    ),
    *(_python(dist, optional) for dist, optional in PYTHON_PACKAGES.items()),
    Probe("torch CUDA", "python package", _torch_cuda, TORCH_TIMEOUT_S),
    Probe("benchmark data", "benchmark data", _benchmark_data),
)


def _unanswered(probe: Probe, reason: str) -> list[DoctorItem]:
    return [DoctorItem(name=probe.name, kind=probe.kind, found=False, detail=reason)]


def _safe(probe: Probe, machine: Machine) -> list[DoctorItem]:
    try:
        return probe.check(machine)
    except Exception as exc:  # one broken probe must not hide the others
        return _unanswered(probe, f"probe failed: {type(exc).__name__}: {exc}")


def diagnose(machine: Machine | None = None, probes: tuple[Probe, ...] = PROBES) -> DoctorReport:
    """Run every probe concurrently; one that does not answer in time is reported missing."""
    machine = machine or Machine()
    start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, len(probes)), thread_name_prefix="ptb-doctor")
    futures = [pool.submit(_safe, probe, machine) for probe in probes]
    items: list[DoctorItem] = []
    for probe, future in zip(probes, futures, strict=True):
        left = start + probe.timeout_s + SLACK_S - time.monotonic()
        try:
            items.extend(future.result(timeout=max(0.0, left)))
        except FutureTimeout:
            items.extend(_unanswered(probe, f"no answer within {probe.timeout_s:g}s"))
    pool.shutdown(wait=False, cancel_futures=True)
    return DoctorReport(
        items=items,
        hostname=platform.node(),
        python=platform.python_version(),
        duration_s=round(time.monotonic() - start, 2),
    )


def _mark(item: DoctorItem) -> Text:
    if item.found:
        return Text("✓", "green")
    return Text("–", "dim") if item.optional else Text("✗", "yellow")


def render(report: DoctorReport) -> Table:
    """A table grouped by kind: found items checked in green, missing ones in yellow with a hint."""
    table = Table(
        title=f"ptb doctor: {report.hostname}, Python {report.python}",
        caption=f"{len(report.missing)} missing; checked in {report.duration_s:.1f}s",
    )
    for column in ("", "kind", "name", "version / detail", "hint"):
        table.add_column(column)
    for kind in KINDS:
        rows = report.of_kind(kind)
        for n, item in enumerate(rows):
            style = "" if item.found else "dim" if item.optional else "yellow"
            seen = " — ".join(s for s in (item.version, item.detail) if s)
            table.add_row(
                _mark(item),
                Text(kind if n == 0 else "", "bold"),
                Text(item.name, style),
                Text(seen),
                Text(item.hint or "", style),
                end_section=n == len(rows) - 1,
            )
    return table
