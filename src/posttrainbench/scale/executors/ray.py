"""Ray executor: one Ray task per run, on an existing cluster (`options.address`) or on a local Ray
started for the sweep and shut down after it.

Each task asks Ray for the run's GPUs and `cpus_per_run` CPUs (and, with `reserve_memory`, its
memory), runs the job's command with the driver's environment plus `PTB_GPUS` (the GPUs Ray
assigned, "none" for a CPU-only run), writes its output to `sweep_dir/.jobs/ray/<run_id>.out|err`
and enforces `time_limit_s` itself (SIGTERM, then SIGKILL after `stop_grace_s`): Ray has no time
limit of its own. Ray never retries a task (`max_retries=0`): the sweep driver decides. A task Ray
lost (worker or node died, cancelled, unschedulable) ends with returncode None and the reason; a
run no node of the cluster can hold ends at once the same way instead of waiting forever.

The nodes must see the results folder and run the driver's Python at the same path (the job's
command is `<driver python> -P -m posttrainbench run --resume RUN_DIR`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.sandbox import gpu
from posttrainbench.sandbox.gpu import GPUS_VAR
from posttrainbench.scale.executors.base import Executor, ExecutorConfig, Finished, Job

RAY_VERSION = "2.60.0"
INSTALL_HINT = f'pip install "ray[default]=={RAY_VERSION}"'
log = logging.getLogger(__name__)


class RayOptions(BaseModel):
    """`[executor] options` of a sweep run on Ray."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description='An existing cluster ("auto", "ray://head:10001", "10.0.0.1:6379"); none: '
        "start a local Ray for the sweep.",
    )
    num_cpus: int | None = Field(None, ge=1, description="Local Ray: CPUs (default: all).")
    num_gpus: int | None = Field(None, ge=0, description="Local Ray: GPUs (default: detected).")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env of the sweep.")
    reserve_memory: bool = Field(
        False, description="Also ask Ray for mem_gb_per_run of its `memory` resource per run."
    )
    autoscaling: bool = Field(
        False, description="The cluster adds nodes on demand: do not end runs no node fits yet."
    )
    stop_grace_s: float = Field(
        60, ge=0, description="SIGTERM to SIGKILL, at the time limit or on cancellation."
    )


def parse_options(raw: Mapping[str, Any]) -> RayOptions:
    try:
        return RayOptions.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(
            f"[executor] options for ray: {where}: {err['msg']}",
            f"known options: {', '.join(RayOptions.model_fields)}",
        ) from None


def task_options(job: Job, config: ExecutorConfig, options: RayOptions) -> dict[str, Any]:
    """What `remote.options(...)` gets for one run."""
    opts: dict[str, Any] = {
        "num_cpus": config.cpus_per_run,
        "num_gpus": job.gpus,
        "max_retries": 0,
        "name": f"ptb-{job.run_id}",
    }
    if options.reserve_memory:
        opts["memory"] = int(config.mem_gb_per_run * 1024**3)
    return opts


def _needs(opts: Mapping[str, Any]) -> dict[str, float]:
    names = {"num_gpus": "GPU", "num_cpus": "CPU", "memory": "memory"}
    return {name: float(opts[k]) for k, name in names.items() if opts.get(k)}


def _amounts(resources: Mapping[str, float]) -> str:
    return (
        ", ".join(
            f"{v / 1024**3:g} GiB memory" if k == "memory" else f"{v:g} {k}"
            for k, v in resources.items()
        )
        or "nothing"
    )


def unfit_reason(opts: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why no alive node of the cluster (`ray.nodes()`) can ever hold a task, or None."""
    needs = _needs(opts)
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(all(res.get(k, 0) >= v for k, v in needs.items()) for res in alive):
        return None
    if not alive:
        return f"needs {_amounts(needs)}, and the Ray cluster has no alive node"
    most = {k: max(r.get(k, 0) for r in alive) for k in needs}
    short = {k: v for k, v in needs.items() if most[k] < v} or needs
    return (
        f"needs {_amounts(needs)} on one node; no node of the Ray cluster has that "
        f"(at most {_amounts({k: most[k] for k in short})})"
    )


def lost_note(exc: BaseException) -> str:
    """The reason a task ended without an exit status, from Ray's exception."""
    from ray import exceptions as rex

    detail = (str(exc).strip().splitlines() or [""])[-1][:300]
    if isinstance(exc, rex.TaskCancelledError):
        return "cancelled: the Ray task was cancelled"
    if isinstance(exc, rex.NodeDiedError):
        return f"lost with its node: {detail}"
    if isinstance(exc, rex.OutOfMemoryError):
        return "killed by Ray's memory monitor: its node ran out of memory"
    if isinstance(exc, rex.WorkerCrashedError | rex.LocalRayletDiedError):
        return "the Ray worker died while running the job (killed, out of memory, or crashed)"
    if isinstance(exc, rex.TaskUnschedulableError):
        return f"Ray cannot schedule the task: {detail}"
    if isinstance(exc, rex.RuntimeEnvSetupError):
        return f"Ray could not set up the runtime_env: {detail}"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        return f"the Ray task failed before the job ended: {type(cause).__name__}: {cause}"[:400]
    return f"lost by Ray: {type(exc).__name__}: {detail}"


def gpu_list(ids: Sequence[int | str]) -> str:
    """Ray's GPU ids as PTB_GPUS (nvidia-smi indices); UUIDs, when Ray was given them, mapped."""
    if not ids:
        return "none"
    names = [str(i).strip() for i in ids]
    if not all(n.isdigit() for n in names):
        index = {g.uuid: str(g.index) for g in gpu.query_gpus()}
        names = [index.get(n, n) for n in names]
    return ",".join(names)


@dataclass(frozen=True)
class TaskOutcome:
    returncode: int
    node: str
    note: str | None
    started_at: float  # wall clock, on the node: just before the command started
    ended_at: float  # just after it ended


def run_task(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    out_path: str,
    err_path: str,
    time_limit_s: float,
    stop_grace_s: float,
) -> TaskOutcome:
    """The Ray task: run one job's command with the GPUs Ray assigned to this task."""
    import ray

    env = env | {GPUS_VAR: gpu_list(ray.get_gpu_ids())}
    return run_command(argv, env, cwd, out_path, err_path, time_limit_s, stop_grace_s)


def run_command(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    out_path: str,
    err_path: str,
    time_limit_s: float,
    stop_grace_s: float,
) -> TaskOutcome:
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    note = None
    with open(out_path, "ab") as out, open(err_path, "ab") as err:
        started_at = time.time()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd if os.path.isdir(cwd) else None,
        )
        try:
            # With a timeout, wait() polls in Python: Ray's cancellation (a KeyboardInterrupt in
            # this thread) gets through, which a blocking waitpid would hold up until the end.
            returncode = proc.wait(timeout=time_limit_s)
        except subprocess.TimeoutExpired:
            note = f"time limit of {time_limit_s:g}s reached: stopped"
            returncode = stop(proc, stop_grace_s)
        except BaseException:
            stop(proc, stop_grace_s)
            raise
    return TaskOutcome(returncode, socket.gethostname(), note, started_at, time.time())


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM (the harness records where it stopped, exit 143), SIGKILL after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "the ray executor needs the `ray` package", INSTALL_HINT
        ) from None
    return ray


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, config: ExecutorConfig, sweep_dir: Path) -> None:
        super().__init__(config, sweep_dir)
        self.options = parse_options(config.options)

    @property
    def log_dir(self) -> Path:
        return self.sweep_dir / ".jobs" / "ray"

    def check(self) -> None:
        _import_ray()

    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        ray = _import_ray()
        if not jobs:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started_here = self._connect(ray)
        pending: dict[Any, Job] = {}
        try:
            remote = ray.remote(run_task)
            nodes = ray.nodes()
            env, cwd = dict(os.environ), os.getcwd()
            unfit = []
            for job in jobs:
                opts = task_options(job, self.config, self.options)
                reason = None if self.options.autoscaling else unfit_reason(opts, nodes)
                if reason is not None:
                    unfit.append(Finished(job, None, note=reason))
                    continue
                out, err = (str(self.log_dir / f"{job.run_id}.{s}") for s in ("out", "err"))
                args = (job.argv, env, cwd, out, err, job.time_limit_s, self.options.stop_grace_s)
                pending[remote.options(**opts).remote(*args)] = job
            yield from unfit
            while pending:
                ready, rest = ray.wait(list(pending), num_returns=1)
                if rest:  # everything else that has ended too, in one round trip
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in ready:
                    yield self._finished(ray, ref, pending.pop(ref))
        finally:
            try:
                if pending:
                    self._cancel(ray, list(pending))
            finally:
                if started_here:
                    ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster, or start a local one; True when this call did (and so must
        shut it down). A Ray the caller already initialised is used as it is."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.options.runtime_env is not None:
            common["runtime_env"] = self.options.runtime_env
        address = self.options.address
        try:
            if address:
                ray.init(address=address, **common)
            else:
                ray.init(
                    address="local",
                    include_dashboard=False,
                    num_cpus=self.options.num_cpus or os.cpu_count() or 1,
                    num_gpus=self.options.num_gpus,
                    **common,
                )
        except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
            raise MissingDependencyError(
                f"cannot connect to the Ray cluster at {address}: {exc}",
                "check [executor] options.address and that the cluster is up (`ray status`); "
                "a cluster with token authentication (the default of `ray start`) also needs "
                "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)",
            ) from None
        return True

    def _finished(self, ray: Any, ref: Any, job: Job) -> Finished:
        engine_id = ref.task_id().hex()
        try:
            outcome: TaskOutcome = ray.get(ref)
        except ray.exceptions.RayError as exc:
            return Finished(job, None, engine_id, note=lost_note(exc))
        times = {"started_at": outcome.started_at, "ended_at": outcome.ended_at}
        return Finished(job, outcome.returncode, engine_id, outcome.node, outcome.note, times)

    def _cancel(self, ray: Any, refs: list[Any]) -> None:
        """Cancel runs still queued or running (the sweep was interrupted): a running task's
        harness gets SIGTERM and `stop_grace_s` to record where it stopped."""
        try:
            for ref in refs:
                ray.cancel(ref)
            ray.wait(refs, num_returns=len(refs), timeout=self.options.stop_grace_s + 10)
        except Exception as exc:  # the cluster is gone: nothing left to cancel there
            log.warning("could not cancel %d Ray task(s): %s", len(refs), exc)
