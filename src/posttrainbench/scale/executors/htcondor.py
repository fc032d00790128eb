"""The `htcondor` executor: a sweep's jobs as one cluster of an HTCondor schedd.

The jobs become one submit description, `sweep_dir/.jobs/htcondor/sweep.sub`, written before
anything else so that it can be submitted by hand (`condor_submit sweep.sub`) where ptb cannot
reach a schedd. What differs between jobs (run id, GPUs, time limit, arguments) is item data of
one `queue … from (…)` statement; the arguments come last on each item line, where HTCondor
keeps the rest of the line whole, so run directories may hold spaces and commas. Jobs see the
submitter's environment through a `getenv` match list (PATH, HOME, PTB_*, HF_* … plus the names
in `options.getenv`: provider keys travel only when named there, as they end up in the job ad).
A CPU-only job gets `PTB_GPUS=none`; a GPU job gets `PTB_GPUS=all`, i.e. the GPUs nvidia-smi
lists on the node, which are the slot's own only where the pool hides unassigned GPUs from
jobs (STARTER_HIDE_GPU_DEVICES). Each job is ended by `periodic_remove` past `time_limit_s`
of running (also given as `+MaxRuntime` for pools whose policies read that).

`run()` submits through the Python bindings (`htcondor2`, or the legacy `htcondor` module) and
polls the queue, then the history for jobs that left it: completed → their exit code (128 + the
signal when killed by one); removed → returncode None with the reason; held → removed by ptb,
returncode None with the HoldReason. Closing the generator early removes the jobs still queued.

Options: requirements, universe (vanilla), accounting_group, accounting_group_user, getenv
(names or `true`), schedd and pool (a named schedd, located through the pool's collector),
poll_s, submit (extra submit commands, as given, after ptb's own: the last one counts, e.g.
should_transfer_files, NO by default as nodes must share the results folder), and `+Name` custom
job attributes (strings become ClassAd strings; booleans and numbers stay literals).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import shlex
import time
from collections.abc import Iterator, Sequence
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.sandbox.gpu import GPUS_VAR
from posttrainbench.sandbox.supervise import shielded
from posttrainbench.scale.executors.base import Executor, ExecutorConfig, Finished, Job

SUBMIT_FILE = "sweep.sub"
DEFAULT_POLL_S = 5.0
LOST_AFTER_POLLS = 3  # polls a job may be in neither the queue nor the history before it is lost
DEFAULT_GETENV = (
    "PATH", "HOME", "USER", "LANG", "LC_*", "VIRTUAL_ENV", "PTB_*", "HF_*", "TRANSFORMERS_*",
    "XDG_CACHE_HOME",
)  # fmt: skip
ITEM_VARS = ("ptb_run_id", "ptb_gpus", "ptb_gpus_env", "ptb_time_limit_s", "ptb_args")
OPTIONS = frozenset(
    {"requirements", "universe", "accounting_group", "accounting_group_user", "getenv", "schedd",
     "pool", "poll_s", "submit"}
)  # fmt: skip
PROJECTION = [
    "ClusterId", "ProcId", "JobStatus", "ExitCode", "ExitBySignal", "ExitSignal", "HoldReason",
    "HoldReasonCode", "RemoveReason", "RemoteHost", "LastRemoteHost", "RemoteWallClockTime",
]  # fmt: skip
INSTALL_HINT = "pip install htcondor (the Python bindings) on a machine that runs a schedd"
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class JobStatus(IntEnum):
    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


def _one_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text or "\x1f" in text:
        raise ConfigError(f"{what} {text!r} spans lines", "HTCondor submit files cannot hold it")
    return text


def submit_value(text: str, what: str = "value") -> str:
    """A literal for a submit-language value: `$(` would start a macro, `$(DOLLAR)(` is `$(`
    escaped; `$$(` is expanded on the execute node and has no escape that survives both."""
    text = _one_line(text, what)
    if "$$(" in text:
        raise ConfigError(f"{what} {text!r} holds `$$(`", "HTCondor expands it on the node")
    return text.replace("$(", "$(DOLLAR)(")


def quote_arguments(argv: Sequence[str]) -> str:
    """An `arguments` value in HTCondor's new syntax: the whole in double quotes, each argument
    with white space or a single quote in single quotes (a quote inside doubled), `"` doubled."""
    parts = []
    for arg in argv:
        arg = submit_value(arg, "argument").replace('"', '""')
        if not arg or any(c in arg for c in " \t'"):
            arg = "'" + arg.replace("'", "''") + "'"
        parts.append(arg)
    return '"' + " ".join(parts) + '"'


def classad_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = _one_line(str(value), "attribute value")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bindings() -> ModuleType | None:
    """The HTCondor Python bindings: `htcondor2` (htcondor ≥ 24), else the legacy `htcondor`."""
    for name in ("htcondor2", "htcondor"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _host(slot: Any) -> str | None:
    """`slot1_1@node.example.org` → `node.example.org`."""
    if not slot:
        return None
    return str(slot).rpartition("@")[2] or None


class HTCondorExecutor(Executor):
    name: ClassVar[str] = "htcondor"

    def __init__(self, config: ExecutorConfig, sweep_dir: Path) -> None:
        super().__init__(config, sweep_dir)
        opts = dict(config.options)
        unknown = sorted(k for k in opts if k not in OPTIONS and not k.startswith("+"))
        if unknown:
            raise ConfigError(
                f"unknown htcondor executor option(s): {', '.join(unknown)}",
                f"known: {', '.join(sorted(OPTIONS))}, and +Name for custom job attributes",
            )
        for key in opts:
            if key.startswith("+") and not _ATTR_NAME.fullmatch(key[1:]):
                raise ConfigError(f"{key!r} is not a ClassAd attribute name", "use e.g. +Project")
        if not isinstance(opts.get("submit", {}), dict):
            raise ConfigError(
                "htcondor option submit must be a table", 'e.g. {request_disk="20GB"}'
            )
        self.options = opts
        self.poll_s = float(opts.get("poll_s", DEFAULT_POLL_S))
        self.job_dir = sweep_dir / ".jobs" / self.name
        self.submit_path = self.job_dir / SUBMIT_FILE
        self._written: Path | None = None

    # The submit description

    def _getenv(self) -> str:
        extra = self.options.get("getenv", [])
        if extra is True:
            return "true"
        if isinstance(extra, str):
            extra = [n for n in re.split(r"[\s,]+", extra) if n]
        if not isinstance(extra, list) or not all(
            isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9_*?]+", n) for n in extra
        ):
            raise ConfigError(
                f"htcondor option getenv must name variables, not {extra!r}",
                'e.g. getenv = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"], or true for all',
            )
        return ", ".join(dict.fromkeys([*DEFAULT_GETENV, *extra]))

    def submit_body(self, jobs: Sequence[Job]) -> str:
        """Every submit command, the same for all jobs; the per-job values are item data."""
        executables = {job.argv[0] for job in jobs}
        if len(executables) != 1:
            raise ConfigError(
                f"htcondor: the jobs run {len(executables)} different executables",
                "one submit holds one executable: run such jobs in separate sweeps",
            )
        logs = self.job_dir.resolve()
        c = self.config
        o = self.options
        lines = [
            f"# ptb sweep {self.sweep_dir.name}: {len(jobs)} job(s); submit with condor_submit",
            f"universe = {o.get('universe', 'vanilla')}",
            f"executable = {submit_value(executables.pop(), 'executable')}",
            "transfer_executable = false",
            "should_transfer_files = NO",  # the nodes must see the results folder
            "arguments = $(ptb_args)",
            f"batch_name = {submit_value('ptb-' + self.sweep_dir.name)}",
            f"output = {submit_value(str(logs))}/$(ptb_run_id).$(Cluster).out",
            f"error = {submit_value(str(logs))}/$(ptb_run_id).$(Cluster).err",
            f"log = {submit_value(str(logs / 'condor.log'))}",
            f"getenv = {self._getenv()}",
            f'environment = "{GPUS_VAR}=$(ptb_gpus_env)"',
            "request_gpus = $(ptb_gpus)",
            f"request_cpus = {c.cpus_per_run}",
            f"request_memory = {max(1, round(c.mem_gb_per_run * 1024))}",
            '+PtbRunId = "$(ptb_run_id)"',
            "+MaxRuntime = $(ptb_time_limit_s)",
            "periodic_remove = (JobStatus == 2) && "
            "(time() - JobCurrentStartDate > $(ptb_time_limit_s))",
        ]
        for key in ("requirements", "accounting_group", "accounting_group_user"):
            if key in o:
                lines.append(f"{key} = {_one_line(str(o[key]), key)}")
        for key, value in o.get("submit", {}).items():
            lines.append(f"{_one_line(str(key), 'submit command')} = {_one_line(str(value), key)}")
        for key, value in o.items():
            if key.startswith("+"):
                lines.append(f"{key} = {classad_literal(value)}")
        return "\n".join(lines) + "\n"

    def itemdata(self, jobs: Sequence[Job]) -> list[dict[str, str]]:
        """One item per job, in order (proc N of the cluster is jobs[N])."""
        return [
            {
                "ptb_run_id": _SAFE_ID.sub("_", job.run_id) or "run",
                "ptb_gpus": str(job.gpus),
                "ptb_gpus_env": "all" if job.gpus else "none",
                "ptb_time_limit_s": str(int(job.time_limit_s)),
                "ptb_args": quote_arguments(job.argv[1:]),
            }
            for job in jobs
        ]

    def submit_description(self, jobs: Sequence[Job]) -> str:
        """The whole submit file: the body, then one queue statement with a line per job."""
        if not jobs:
            raise ConfigError("htcondor: no jobs to submit")
        items = (" ".join(item[v] for v in ITEM_VARS) for item in self.itemdata(jobs))
        return (
            self.submit_body(jobs)
            + f"queue {','.join(ITEM_VARS)} from (\n"
            + "".join(f"  {line}\n" for line in items)
            + ")\n"
        )

    def write_submit_file(self, jobs: Sequence[Job]) -> Path:
        text = self.submit_description(jobs)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.submit_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.submit_path)
        self._written = self.submit_path
        return self.submit_path

    # The schedd

    def _by_hand(self) -> str:
        command = f"`condor_submit {shlex.quote(str(self.submit_path))}`"
        if self._written is not None:
            return f"the jobs' submit file is {self._written}: submit it by hand with {command}"
        return (
            f"ptb writes the jobs' submit file to {self.submit_path} before submitting; "
            f"submit it by hand with {command}"
        )

    def _bindings(self) -> ModuleType:
        htcondor = bindings()
        if htcondor is None:
            raise MissingDependencyError(
                f"the HTCondor Python bindings are not installed; {self._by_hand()}",
                INSTALL_HINT,
            )
        return htcondor

    def _schedd(self) -> Any:
        htcondor = self._bindings()
        name, pool = self.options.get("schedd"), self.options.get("pool")
        try:
            if name is None and pool is None:
                return htcondor.Schedd()
            collector = htcondor.Collector(pool) if pool else htcondor.Collector()
            ad = collector.locate(htcondor.DaemonTypes.Schedd, name) if name else None
            return htcondor.Schedd(ad) if ad is not None else htcondor.Schedd()
        except Exception as exc:  # the bindings raise HTCondorException, RuntimeError, IOError
            where = f"schedd {name!r}" if name else "a schedd"
            where += f" in pool {pool!r}" if pool else " on this machine"
            raise MissingDependencyError(
                f"cannot locate {where} ({str(exc).strip() or type(exc).__name__}); "
                f"{self._by_hand()}",
                "run ptb on an HTCondor access point (where condor_q works), or set "
                "executor.options.schedd / pool",
            ) from None

    def prepare(self, jobs: Sequence[Job]) -> None:
        self.write_submit_file(jobs)

    def check(self) -> None:
        self._schedd()

    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        if not jobs:
            return
        self.write_submit_file(jobs)
        schedd = self._schedd()
        submit = self._bindings().Submit(self.submit_body(jobs))
        result = schedd.submit(submit, itemdata=iter(self.itemdata(jobs)))
        cluster, first = int(result.cluster()), int(result.first_proc())
        yield from self.watch(schedd, cluster, {first + i: job for i, job in enumerate(jobs)})

    def watch(self, schedd: Any, cluster: int, jobs: dict[int, Job]) -> Iterator[Finished]:
        """Poll the queue (then the history, for jobs that left it) until every proc has ended."""
        pending = dict(jobs)
        missing: dict[int, int] = {}
        try:
            while pending:
                queued = schedd.query(constraint=f"ClusterId == {cluster}", projection=PROJECTION)
                seen: set[int] = set()
                for ad in queued:
                    proc = int(ad["ProcId"])
                    if proc not in pending:
                        continue
                    seen.add(proc)
                    finished = self._from_queue(schedd, cluster, pending[proc], ad)
                    if finished is not None:
                        del pending[proc]
                        yield finished
                gone = sorted(p for p in pending if p not in seen)
                if gone:
                    procs = " || ".join(f"ProcId == {p}" for p in gone)
                    ads = schedd.history(
                        constraint=f"ClusterId == {cluster} && ({procs})",
                        projection=PROJECTION,
                        match=len(gone),
                    )
                    for ad in ads:
                        proc = int(ad["ProcId"])
                        if proc in pending:
                            missing.pop(proc, None)
                            yield self._ended(cluster, pending.pop(proc), ad)
                    for proc in [p for p in gone if p in pending]:
                        missing[proc] = missing.get(proc, 0) + 1
                        if missing[proc] >= LOST_AFTER_POLLS:
                            yield Finished(
                                pending.pop(proc), None, engine_id=f"{cluster}.{proc}",
                                note="left the queue without a history record",
                            )  # fmt: skip
                if pending:
                    time.sleep(self.poll_s)
        finally:
            if pending:
                with shielded(), contextlib.suppress(Exception):
                    self._remove(schedd, cluster, list(pending), "ptb sweep driver stopped")

    def _from_queue(self, schedd: Any, cluster: int, job: Job, ad: Any) -> Finished | None:
        status = int(ad.get("JobStatus", 0))
        if status == JobStatus.HELD:
            proc = int(ad["ProcId"])
            reason = str(ad.get("HoldReason", "no reason given"))
            self._remove(schedd, cluster, [proc], f"ptb: held ({reason})")
            return Finished(
                job, None, engine_id=f"{cluster}.{proc}",
                node=_host(ad.get("LastRemoteHost") or ad.get("RemoteHost")),
                note=f"held: {reason}; removed",
                extra={"hold_reason_code": ad.get("HoldReasonCode")},
            )  # fmt: skip
        if status == JobStatus.COMPLETED:
            return self._ended(cluster, job, ad)
        return None  # idle, running, suspended, or removed but still leaving the node

    def _ended(self, cluster: int, job: Job, ad: Any) -> Finished:
        proc = int(ad["ProcId"])
        status = int(ad.get("JobStatus", 0))
        node = _host(ad.get("LastRemoteHost") or ad.get("RemoteHost"))
        extra: dict[str, Any] = {"cluster": cluster, "proc": proc}
        if ad.get("RemoteWallClockTime") is not None:
            extra["wall_s"] = float(ad["RemoteWallClockTime"])
        engine_id = f"{cluster}.{proc}"
        if status == JobStatus.COMPLETED:
            if ad.get("ExitBySignal") and ad.get("ExitSignal") is not None:
                sig = int(ad["ExitSignal"])
                return Finished(job, 128 + sig, engine_id, node, f"killed by signal {sig}", extra)
            code = ad.get("ExitCode")
            return Finished(
                job, int(code) if code is not None else None, engine_id, node, None, extra
            )
        reason = str(ad.get("RemoveReason") or ad.get("HoldReason") or f"JobStatus {status}")
        note = f"removed: {reason}"
        if "PeriodicRemove" in reason or "periodic_remove" in reason.lower():
            note = f"time limit of {job.time_limit_s} s exceeded; {note}"
            extra["timed_out"] = True
        return Finished(job, None, engine_id, node, note, extra)

    def _remove(self, schedd: Any, cluster: int, procs: list[int], reason: str) -> None:
        remove = self._bindings().JobAction.Remove
        schedd.act(remove, [f"{cluster}.{p}" for p in procs], reason=reason)
