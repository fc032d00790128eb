"""The harness-side scoring service: scores the agent's own evaluations; the targets stay here.

The workspace holds the test items' inputs only (`Benchmark.export`). The agent's evaluate.py
generates on them inside the sandbox with the harness's generation code and posts the outputs
(sample id, epoch, `ModelOutput`) here: an HTTP server on a unix socket in a private temporary
folder, bridged into the sandbox as a loopback port (`PTB_SCORING_URL`, with a per-launch token
in `PTB_SCORING_TOKEN`). Each request is scored by a separate process of the harness's own
install (`python -m posttrainbench.evaluate.scoring_service JOB REPLY`), which loads the real
samples, selects the `--limit` items as the final evaluation does, replays the agent's outputs
through the benchmark's own task (`replay` solver: no model runs) and lets inspect-ai run the
benchmark's real scorer and metrics. The reply holds the score and each item's score value, never
a target. `GET /protocol` answers the run's benchmark and suite (RunSpec.suite), so the agent's
evaluation follows the run's seed policy whatever its command line says. Judged benchmarks call
the judge with the harness's key, refused once the run's `agent_judge_budget_usd` is spent. Every
evaluation is appended to `agent/evaluations.jsonl` as it happens and kept as an
`AgentEvaluation` for run.json. `POST /check-data` answers the agent's `check_data.py`: the
decontamination check's verdict on one of its files (evaluate/data_check.py), item ids and
lines, never an item's text.
"""

from __future__ import annotations

import hmac
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.catalog.suites import DEFAULT_SUITE
from posttrainbench.evaluate.data_check import CHECK_PATH, NAME_HEADER
from posttrainbench.records import AgentEvaluation, now
from posttrainbench.sandbox import unix_service
from posttrainbench.sandbox.env import evaluation_environ

URL_VAR = "PTB_SCORING_URL"
TOKEN_VAR = "PTB_SCORING_TOKEN"
PATH = "/score"
PROTOCOL_PATH = "/protocol"
MAX_REQUEST_BYTES = 256 << 20
JOB_TIMEOUT_S = 4 * 3600
# Never passed to the scoring process: it must read the upstream data, not an agent's export.
_DROPPED_ENV = ("PTB_EVAL_DATA_DIR", "PTB_IN_SANDBOX", "PTB_DATA_DIR")


class Completion(BaseModel):
    """One generated answer as the agent's evaluate.py sends it."""

    model_config = ConfigDict(extra="forbid")

    id: str | int
    epoch: int = 1
    output: dict[str, Any] = Field(description="inspect-ai ModelOutput, as JSON")


class ScoringRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str = "test"
    limit: int | None = Field(default=None, ge=0)
    # the evaluation seed that ordered the choices the agent generated on (GPQA under ptb-v1.2)
    choice_seed: int | None = None
    completions: list[Completion]


class ItemScore(BaseModel):
    id: str | int
    epoch: int = 1
    value: str | int | float | bool | None = None
    answered: bool = True


class ScoringReply(BaseModel):
    benchmark: str
    split: str
    metric: str
    score: float
    n_items: int
    n_answered: int
    n_failed: int = 0
    items: list[ItemScore] = Field(default_factory=list)
    judge_cost_usd: float | None = None


class ScoringProtocol(BaseModel):
    """What the harness fixes for the agent's evaluations: the run's benchmark and suite."""

    benchmark: str
    suite: str


class ScoringJob(BaseModel):
    """What the scoring process gets: the run's settings and the agent's request."""

    benchmark: str
    seed: int = 0
    judge_model: str | None = None
    judge_base_url: str | None = None
    log_dir: str
    request: ScoringRequest


def replay(outputs: dict[tuple[str, int], dict[str, Any]]) -> Any:
    """A solver that gives each sample the agent's output for it (an empty one if none): the
    sample's own input messages, then the output's message."""
    from inspect_ai.model import ModelOutput
    from inspect_ai.solver import Generate, TaskState, solver

    @solver(name="ptb_replay")
    def _replay() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            sent = outputs.get((str(state.sample_id), state.epoch))
            if sent is None:
                state.output = ModelOutput.from_content("agent", "")
                state.metadata["ptb_unanswered"] = True
            else:
                state.output = ModelOutput.model_validate(sent)
            state.messages.append(state.output.message)
            state.completed = True
            return state

        return solve

    return _replay()


def score_job(job: ScoringJob) -> ScoringReply:
    """Score the agent's outputs with the benchmark's real scorer (in the scoring process)."""
    from inspect_ai import eval as inspect_eval

    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.errors import EvaluationError
    from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
    from posttrainbench.evaluate.run import judge_usage, read_metric

    info = BENCHMARKS.get(job.benchmark)
    req = job.request
    opts = TaskOptions(
        split=req.split,
        limit=req.limit or None,
        seed=job.seed,
        choice_seed=req.choice_seed,
        judge_model=job.judge_model,
        judge_base_url=job.judge_base_url,
    )
    task = make_task(info.implementation(), opts)
    task.solver = replay({(str(c.id), c.epoch): c.output for c in req.completions})
    log = inspect_eval(
        task,
        model="mockllm/model",
        log_dir=job.log_dir,
        display="none",
        log_realtime=False,
        fail_on_error=True,
        log_samples=True,
        score_display=False,
    )[0]
    if log.status != "success" or not log.results or not log.results.scores:
        detail = log.error.message.splitlines()[0] if log.error else f"status {log.status}"
        raise EvaluationError(f"scoring {job.benchmark}/{req.split} failed: {detail}")
    samples = log.samples or []
    items = []
    for s in samples:
        first = next(iter((s.scores or {}).values()), None)
        value = first.value if first is not None else None
        items.append(
            ItemScore(
                id=s.id,
                epoch=s.epoch,
                value=value if isinstance(value, str | int | float | bool) else None,
                answered=not (s.metadata or {}).get("ptb_unanswered", False),
            )
        )
    judge = judge_usage(samples, job.judge_model)
    return ScoringReply(
        benchmark=job.benchmark,
        split=req.split,
        metric=info.metric,
        score=read_metric(log.results.scores[0].metrics, info.metric, job.benchmark),
        n_items=len({s.id for s in samples}),
        n_answered=len({i.id for i in items if i.answered}),
        n_failed=sum(1 for s in samples if s.error) + (judge.failed if judge else 0),
        items=items,
        judge_cost_usd=judge.cost_usd if judge else None,
    )


class ScoringService:
    """One launch's scoring service. `start()` binds the socket and serves in a thread."""

    def __init__(
        self,
        *,
        benchmark: str,
        socket_path: Path,
        token: str,
        work_dir: Path,
        log_path: Path,
        seed: int = 0,
        suite: str = DEFAULT_SUITE,
        judge_model: str | None = None,
        judge_base_url: str | None = None,
        judge_budget_usd: float = 0.0,
        judge_spent_usd: float = 0.0,
        timeout_s: float = JOB_TIMEOUT_S,
        base_model: str | None = None,
    ) -> None:
        self.benchmark = benchmark
        self.base_model = base_model  # its tokenizer decodes token ids in a data check
        self.socket_path = socket_path
        self.token = token
        self.work_dir = work_dir
        self.log_path = log_path
        self.seed = seed
        self.suite = suite
        self.judge_model = judge_model
        self.judge_base_url = judge_base_url
        self.judge_budget_usd = judge_budget_usd
        self.judge_spent_usd = judge_spent_usd
        self.timeout_s = timeout_s
        self.evaluations: list[AgentEvaluation] = []
        self._data_checks = 0
        self._lock = threading.Lock()  # one scoring at a time
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._job: subprocess.Popen[bytes] | None = None

    def start(self) -> ScoringService:
        self._server, self._thread = unix_service.serve(
            self.socket_path, lambda path: _Server(path, self), "scoring"
        )
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        job = self._job
        if job is not None and job.poll() is None:
            job.kill()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> ScoringService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def judged(self) -> bool:
        from posttrainbench.catalog import BENCHMARKS

        return BENCHMARKS.get(self.benchmark).judged

    def _authorized(self, authorization: str | None) -> bool:
        return hmac.compare_digest(authorization or "", f"Bearer {self.token}")

    def protocol(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON reply) for `GET /protocol`: the run's benchmark and suite."""
        if not self._authorized(authorization):
            return 401, {"error": "missing or wrong scoring token (PTB_SCORING_TOKEN)"}
        return 200, ScoringProtocol(benchmark=self.benchmark, suite=self.suite).model_dump()

    def handle(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON reply) for one request."""
        if not self._authorized(authorization):
            return 401, {"error": "missing or wrong scoring token (PTB_SCORING_TOKEN)"}
        try:
            req = ScoringRequest.model_validate_json(body)
        except ValidationError as exc:
            return 400, {"error": f"bad scoring request: {exc.errors()[0]['msg']}"}
        with self._lock:
            return self._score(req)

    def check_data(
        self, authorization: str | None, name: str | None, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON reply) for `POST /check-data`: the decontamination check's verdict
        on one file of the agent's (evaluate/data_check.py), in a separate process."""
        from posttrainbench.evaluate.data_check import DataCheckJob, safe_name

        if not self._authorized(authorization):
            return 401, {"error": "missing or wrong scoring token (PTB_SCORING_TOKEN)"}
        with self._lock:
            out = self.work_dir / "data-checks" / f"{self._data_checks:03d}"
            self._data_checks += 1
            out.mkdir(parents=True, exist_ok=True)
            stored = out / safe_name(name or "data")
            stored.write_bytes(body)
            job = DataCheckJob(
                benchmark=self.benchmark,
                base_model=self.base_model,
                file=str(stored),
                name=stored.name,
            )
            (out / "job.json").write_text(job.model_dump_json())
            status, reply = self._data_check(out, stored, body)
            stored.unlink(missing_ok=True)  # its sha256 is in the log; the bytes stay the agent's
            return status, reply

    def _data_check(self, out: Path, stored: Path, body: bytes) -> tuple[int, dict[str, Any]]:
        import hashlib

        from posttrainbench.evaluate.data_check import DataCheckReply

        rc, error = self._subprocess(out, "posttrainbench.evaluate.data_check", "check.log")
        entry: dict[str, Any] = {
            "at": now().isoformat(),
            "name": stored.name,
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        reply_file = out / "reply.json"
        if rc != 0 or not reply_file.is_file():
            entry["error"] = error or f"exited {rc}"
            self._log_data_check(entry)
            return 500, {"error": "the harness could not check this file (logged)"}
        reply = DataCheckReply.model_validate_json(reply_file.read_text())
        entry |= {"verdict": reply.verdict, "items_matched": reply.items_matched}
        self._log_data_check(entry)
        return 200, reply.model_dump(mode="json")

    def _subprocess(self, out: Path, module: str, log_name: str) -> tuple[int, str | None]:
        """Run `python -m module out/job.json out/reply.json` with the scoring environment: its
        exit status and the last line of its log (None when the log is empty)."""
        env = evaluation_environ(
            os.environ,
            judged=BENCHMARKS.get(self.benchmark).judged,
            judge_model=self.judge_model,
            judge_base_url=self.judge_base_url,
        )
        env = {k: v for k, v in env.items() if k not in _DROPPED_ENV}
        argv = [sys.executable, "-P", "-m", module, str(out / "job.json"), str(out / "reply.json")]
        with (out / log_name).open("wb") as log:
            self._job = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                rc = self._job.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                self._job.kill()
                rc = self._job.wait()
            finally:
                self._job = None
        lines = (out / log_name).read_text(errors="replace").strip().splitlines()
        return rc, lines[-1][:500] if lines else None

    def _log_data_check(self, entry: dict[str, Any]) -> None:
        with (self.log_path.parent / "data_checks.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _score(self, req: ScoringRequest) -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        entry = AgentEvaluation(
            at=now(), split=req.split, n_items=0, n_answered=len(req.completions)
        )
        if self.judged() and self.judge_spent_usd >= self.judge_budget_usd:
            entry.error = (
                f"judge budget spent (${self.judge_spent_usd:.4f} of "
                f"${self.judge_budget_usd:.4f}, agent_judge_budget_usd)"
            )
            self._log(entry)
            return 403, {"error": entry.error}
        n = len(self.evaluations)
        out = self.work_dir / f"{n:03d}"
        out.mkdir(parents=True, exist_ok=True)
        job = ScoringJob(
            benchmark=self.benchmark,
            seed=self.seed,
            judge_model=self.judge_model,
            judge_base_url=self.judge_base_url,
            log_dir=str(out / "logs"),
            request=req,
        )
        (out / "job.json").write_text(job.model_dump_json())
        status, reply = self._run(out, entry)
        entry.duration_s = round(time.monotonic() - started, 2)
        self._log(entry)
        return status, reply

    def _run(self, out: Path, entry: AgentEvaluation) -> tuple[int, dict[str, Any]]:
        rc, last = self._subprocess(out, __name__, "scoring.log")
        reply_file = out / "reply.json"
        if rc != 0 or not reply_file.is_file():
            entry.error = (last or f"scoring process exited {rc}")[:500]
            # The detail stays harness-side: a scorer's exception may quote a target.
            return 500, {"error": "the harness could not score this evaluation (logged)"}
        reply = ScoringReply.model_validate_json(reply_file.read_text())
        entry.n_items, entry.n_answered = reply.n_items, reply.n_answered
        entry.metric, entry.score = reply.metric, reply.score
        entry.judge_cost_usd = reply.judge_cost_usd
        self.judge_spent_usd += reply.judge_cost_usd or 0.0
        return 200, reply.model_dump(mode="json")

    def _log(self, entry: AgentEvaluation) -> None:
        self.evaluations.append(entry)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(entry.model_dump_json() + "\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, service: ScoringService) -> None:
        self.service = service
        super().__init__(path, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ptb-scoring"

    def do_POST(self) -> None:
        if self.path not in (PATH, CHECK_PATH):
            return self._reply(404, {"error": f"only POST {PATH} and {CHECK_PATH}"})
        try:
            length = int(self.headers.get("content-length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_REQUEST_BYTES:
            return self._reply(413, {"error": f"body must be 1 to {MAX_REQUEST_BYTES} bytes"})
        body = self.rfile.read(length)
        service = cast(_Server, self.server).service
        if self.path == CHECK_PATH:
            name = self.headers.get(NAME_HEADER)
            return self._reply(*service.check_data(self.headers.get("authorization"), name, body))
        status, reply = service.handle(self.headers.get("authorization"), body)
        self._reply(status, reply)

    def do_GET(self) -> None:
        if self.path != PROTOCOL_PATH:
            return self._reply(405, {"error": f"only POST {PATH} and GET {PROTOCOL_PATH}"})
        service = cast(_Server, self.server).service
        self._reply(*service.protocol(self.headers.get("authorization")))

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every evaluation is logged as an AgentEvaluation

    def address_string(self) -> str:
        return "scoring-client"


def main(argv: list[str] | None = None) -> int:
    """The scoring process: JOB (a ScoringJob) in, REPLY (a ScoringReply) out."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    args = sys.argv[1:] if argv is None else argv
    job = ScoringJob.model_validate_json(Path(args[0]).read_text())
    reply = score_job(job)
    fd, tmp = tempfile.mkstemp(dir=Path(args[1]).parent, prefix=".reply.")
    with os.fdopen(fd, "w") as f:
        f.write(reply.model_dump_json())
    os.replace(tmp, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
