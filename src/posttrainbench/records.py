"""Typed records of a run: what was asked (RunSpec), what happened (RunRecord), what it scored.

This module is the data-only leaf of the package: it imports nothing else from posttrainbench.
Every record carries `schema_version`; `run.json` is a serialised `RunRecord` and the one source of
truth about a run. Scores are fractions in [0, 1]; reports multiply by 100.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

SCHEMA_VERSION = 4
MAX_BUDGET_S = 7 * 24 * 3600  # longer budgets need --allow-long

StageName = Literal["prepare", "solve", "collect", "integrity", "evaluate", "score"]
STAGES: tuple[StageName, ...] = ("prepare", "solve", "collect", "integrity", "evaluate", "score")
StageState = Literal["pending", "running", "done", "failed"]
ExitReason = Literal[
    "finished", "timed_out", "crashed", "killed",
    "over_limit",  # stopped by the harness: the workspace outgrew its limit
]  # fmt: skip
NetworkPolicy = Literal[
    "none",  # loopback only (and the API relay, when the agent has a provider)
    "allowlist",  # through the egress proxy, to the default hosts and --allow-host ones
    "open",  # through the egress proxy, anywhere; still logged
]
ApiProvider = Literal["anthropic", "openai", "gemini"]
AgentFailureKind = Literal[
    "cli_missing",  # the agent's CLI is not installed (checked before the budget starts)
    "cli_version",  # installed, but not the pinned version
    "missing_key",  # no API key in the harness environment
    "invalid_key",  # the provider refused the key (401/403 upstream)
    "provider_outage",  # the provider answered 5xx / 529 overloaded, or could not be reached
    "rate_limited",  # 429 without a usage limit
    "usage_limit",  # a quota, credit or spending limit of the account
    "api_budget",  # the run's own --api-budget-usd was spent (the agent's doing, not retryable)
    "cli_crash",  # the CLI exited non-zero for no reason the relay saw
]
CollectStatus = Literal["collected", "missing", "refused"]
ResumePolicy = Literal[
    "remaining",  # a resumed agent gets the budget it had not used yet; harness downtime is free
    "deadline",  # the deadline set at the first launch holds; downtime is lost to the agent
]
FoundBy = Literal["group", "descendant", "subreaper", "token"]
BaselineSource = Literal["published", "measured"]
Decision = Literal["clean", "flagged"]
ScoreSource = Literal[
    "evaluated",  # the harness evaluated final_model
    "fallback_no_model",  # no usable final_model (missing or refused): base model's score
    "fallback_eval_failed",  # evaluation of final_model failed: base model's score
    "fallback_flagged",  # integrity verdict flagged the run: base model's score
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


def now() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> int:
    """'10h', '15m', '20s', '1h30m' or a bare number of seconds → whole seconds (≥ 1)."""
    s = text.strip().lower()
    if s.startswith("-"):
        raise ValueError(f"duration {text!r} must be positive")
    if s.isdigit():
        seconds = float(s)
    else:
        parts = _DURATION.findall(s)
        if not parts or _DURATION.sub("", s).strip():
            raise ValueError(f"malformed duration {text!r}; use e.g. 10h, 15m, 20s or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if round(seconds) < 1:
        raise ValueError(f"duration {text!r} is under one second")
    return round(seconds)


def format_duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def new_run_id(agent: str, base_model: str, benchmark: str) -> str:
    """Unique and stable; readable for humans, but nothing parses it — read run.json."""
    stamp = now().strftime("%Y%m%dT%H%M%S")
    model = base_model.rsplit("/", 1)[-1]
    return f"{stamp}-{agent}-{model}-{benchmark}-{secrets.token_hex(3)}"


# record class name → {version v: function upgrading a v dict to v + 1}. A record whose layout
# changes bumps SCHEMA_VERSION and registers the step here, so old run directories still load.
MIGRATIONS: dict[str, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}


def migration(record: str, from_version: int) -> Callable[..., Any]:
    def register(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        MIGRATIONS.setdefault(record, {})[from_version] = fn
        return fn

    return register


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


STORED = {"stored": True}  # validation context of records read from disk


class Versioned(Record):
    """A record stored on its own: checks `schema_version` and migrates old input.

    Read from disk (validation context `STORED`), a record without `schema_version` is foreign;
    built in code, it takes the current version. Current records validate from JSON entirely in
    pydantic-core (no model-level Python hook, which would force JSON through Python objects);
    an older one fails that pass with `schema_upgrade` and is parsed again, migrated by
    `upgrade` (with every record nested in it), then validated."""

    schema_version: int = Field(default=SCHEMA_VERSION, strict=True)

    @field_validator("schema_version")
    @classmethod
    def _check_version(cls, version: int) -> int:
        if version < 1:
            raise ValueError(f"schema_version {version!r} is not a positive integer")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} is newer than this ptb understands ({SCHEMA_VERSION});"
                " upgrade posttrainbench"
            )
        if version < SCHEMA_VERSION:
            raise PydanticCustomError(
                UPGRADE_ERROR,
                "schema_version {version} needs upgrading: validate with"
                " model_validate/model_validate_json, which migrate it",
                {"version": version},
            )
        return version

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        if isinstance(obj, dict):
            if "schema_version" not in obj and _stored(kwargs):
                raise _foreign(cls, obj)
            obj = upgrade(cls, obj)
        return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """Current records: one pass in pydantic-core. Anything else (an older version, an
        error) is read again through `model_validate`, which migrates it or names the problem
        the way it would for a dict: a stored file without `schema_version` is foreign first."""
        try:
            record = super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            try:
                data = json.loads(json_data)
            except ValueError:
                raise exc from None
            return cls.model_validate(data, *args, **kwargs)
        if "schema_version" not in record.model_fields_set and _stored(kwargs):
            raise _foreign(cls, json_data)
        return record


def _stored(validate_kwargs: dict[str, Any]) -> bool:
    """Whether a validation call reads from disk (context `STORED`)."""
    return bool((validate_kwargs.get("context") or {}).get("stored"))


def _foreign(cls: type[BaseModel], data: Any) -> ValidationError:
    reason = PydanticCustomError("foreign_record", "no schema_version: not a posttrainbench record")
    return ValidationError.from_exception_data(
        cls.__name__, [InitErrorDetails(type=reason, loc=("schema_version",), input=data)]
    )


UPGRADE_ERROR = "schema_upgrade"


def upgrade(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A stored dict of `model` brought to SCHEMA_VERSION, with the records nested in it.

    Steps come from MIGRATIONS; a version without a step only gets its number bumped. The input
    is never mutated. Anything not a dict (or a version that is not an int) is left for the
    validator to reject."""
    if issubclass(model, Versioned):
        version = data.get("schema_version")
        if type(version) is int and 1 <= version < SCHEMA_VERSION:
            steps = MIGRATIONS.get(model.__name__, {})
            data = dict(data)
            while version < SCHEMA_VERSION:
                data = steps[version](data) if version in steps else data
                version += 1
            data["schema_version"] = version
    for name, (shape, sub) in _nested_records(model).items():
        value = data.get(name)
        if shape == "one" and isinstance(value, dict):
            new: Any = upgrade(sub, value)
            changed = new is not value
        elif shape == "list" and isinstance(value, list):
            new = [upgrade(sub, v) if isinstance(v, dict) else v for v in value]
            changed = any(a is not b for a, b in zip(new, value, strict=True))
        elif shape == "dict" and isinstance(value, dict):
            new = {k: upgrade(sub, v) if isinstance(v, dict) else v for k, v in value.items()}
            changed = any(new[k] is not v for k, v in value.items())
        else:
            continue
        if changed:
            data = {**data, name: new}
    return data


@cache
def _nested_records(model: type[BaseModel]) -> dict[str, tuple[str, type[BaseModel]]]:
    """Fields of `model` holding records: name → (one | list | dict, record class)."""
    found = {}
    for name, field in model.model_fields.items():
        shape, sub = _record_shape(field.annotation)
        if sub is not None:
            found[name] = (shape, sub)
    return found


def _record_shape(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return "one", annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        inner = [_record_shape(a) for a in args if a is not type(None)]
        return next(((s, m) for s, m in inner if m is not None and s == "one"), ("", None))
    if origin is list and args:
        shape, sub = _record_shape(args[0])
        return ("list", sub) if shape == "one" else ("", None)
    if origin is dict and len(args) == 2:
        shape, sub = _record_shape(args[1])
        return ("dict", sub) if shape == "one" else ("", None)
    return "", None


class AgentConfig(Record):
    """What makes two runs comparable: one leaderboard row per distinct configuration."""

    agent: str
    agent_model: str | None = None
    agent_cmd: str | None = None
    agent_effort: str | None = None
    continue_prompts: int = 0
    budget_s: int
    sandbox: str
    network: NetworkPolicy | None = None

    def label(self) -> str:
        """Short name; `detail()` tells apart configurations of the same agent."""
        name = f"{self.agent}:{self.agent_model}" if self.agent_model else self.agent
        if self.agent_effort:
            name += f"@{self.agent_effort}"
        return name + (f"+c{self.continue_prompts}" if self.continue_prompts else "")

    def detail(self) -> str:
        parts = [f"budget {format_duration(self.budget_s)}", f"sandbox {self.sandbox}"]
        if self.continue_prompts:
            parts.append(f"re-prompted up to {self.continue_prompts}x")
        if self.network:
            parts.append(f"network {self.network}")
        if self.agent_cmd:
            cmd = self.agent_cmd if len(self.agent_cmd) <= 40 else self.agent_cmd[:37] + "..."
            parts.insert(0, f"cmd {cmd!r}")
        return ", ".join(parts)


class SandboxLimits(Record):
    """Resource limits of the agent, where the sandbox can enforce them (see run.json)."""

    memory_gb: float | None = Field(default=None, gt=0, description="Whole sandbox, resident.")
    processes: int | None = Field(default=4096, gt=0, description="Processes and threads.")
    open_files: int | None = Field(default=65536, gt=0)
    workspace_gb: float | None = Field(
        default=None, gt=0, description="Workspace size; also the largest single file."
    )


class RunSpec(Versioned):
    """Everything that defines a run; fixed at creation, never edited afterwards."""

    run_id: str
    sweep: str = Field("adhoc", description="Group the run belongs to (a sweep name or 'adhoc').")
    agent: str = Field(description="Agent registry name, e.g. 'recipe', 'noop', 'command'.")
    agent_model: str | None = Field(None, description="LLM behind the agent, if any.")
    agent_cmd: str | None = Field(None, description="Shell command for the 'command' agent.")
    agent_effort: str | None = Field(
        None, description="Reasoning effort of the agent's model, in the CLI's own terms."
    )
    continue_prompts: int = Field(
        default=0, ge=0, description="Re-prompt an agent that stops early, up to this many times."
    )
    continue_min_s: int = Field(
        default=600, ge=0, description="Re-prompt only while at least this much time is left."
    )
    base_model: str = Field(description="Base model registry name, e.g. 'Qwen/Qwen3-1.7B-Base'.")
    benchmark: str = Field(description="Benchmark registry id, e.g. 'gsm8k'.")
    suite: str = Field(
        default="ptb-v1.2",
        description="Protocol version the run follows (catalog.suites): benchmarks, seeds.",
    )
    budget_s: int = Field(gt=0, description="Wall-clock budget of the agent in seconds.")
    sandbox: str = Field("host", description="Sandbox backend registry name.")
    seed: int = 0
    resume_policy: ResumePolicy = Field(
        default="remaining",
        description="How much time a relaunched agent gets after a harness crash.",
    )
    eval_timeout_s: int | None = Field(
        default=None, gt=0, description="Evaluation time limit; None takes the benchmark's default."
    )
    eval_backend: str = Field(default="hf", description="Evaluation backend: hf or vllm.")
    judge_model: str | None = Field(
        default=None, description="LLM judge of judged benchmarks (an inspect model name)."
    )
    judge_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint of the judge."
    )
    pass_env: list[str] = Field(
        default_factory=list, description="Extra environment variables passed to the agent."
    )
    network: NetworkPolicy | None = Field(
        default=None, description="Egress policy; None: the sandbox's default, fixed at creation."
    )
    allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts allowed besides the default allowlist."
    )
    api_provider: ApiProvider | None = Field(
        default=None, description="The one LLM provider the relay forwards to (None: no relay)."
    )
    api_budget_usd: float | None = Field(
        default=None, gt=0, description="Dollar budget of the run's LLM calls through the relay."
    )
    allow_provider_tools: bool = Field(
        default=False,
        description="Let the relay forward provider-side tools (web search and fetch, code runs).",
    )
    agent_judge_budget_usd: float = Field(
        default=1.0,
        ge=0,
        description="Dollar budget of the judge calls the scoring service makes for the agent's "
        "own evaluations of a judged benchmark (0: none).",
    )
    gpus: list[int] | None = Field(
        default=None, description="GPU indices the run gets; None: every GPU found at prepare."
    )
    limits: SandboxLimits = Field(default_factory=lambda: SandboxLimits())
    image: str | None = Field(
        default=None, description="Container image (docker/podman) or .sif (apptainer)."
    )
    created_at: datetime = Field(default_factory=now)

    @property
    def agent_config(self) -> AgentConfig:
        return AgentConfig(
            agent=self.agent,
            agent_model=self.agent_model,
            agent_cmd=self.agent_cmd,
            agent_effort=self.agent_effort,
            continue_prompts=self.continue_prompts,
            budget_s=self.budget_s,
            sandbox=self.sandbox,
            network=self.network,
        )


class ErrorInfo(Record):
    """An exception turned into data."""

    type: str
    message: str
    hint: str | None = None
    traceback: str | None = None
    retryable: bool = Field(
        default=False, description="An infrastructure failure: rerunning it may succeed."
    )


class StageStatus(Record):
    state: StageState = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None


class ProcessInfo(Record):
    """A process of the agent that the harness had to kill after the agent's main process."""

    pid: int
    name: str = ""
    cmdline: str = ""
    found_by: FoundBy


class LogStats(Record):
    """One capped log of the agent: bytes kept in the file and bytes dropped past the cap."""

    kept_bytes: int = 0
    dropped_bytes: int = 0


class AgentFailure(Record):
    """A classified early stop of an agent's CLI; infrastructure ones are retryable and never
    scored."""

    kind: AgentFailureKind
    retryable: bool
    message: str


class AgentAttempt(Record):
    """One launch of the agent process. A resumed run may have several.

    The attempt is saved *before* the launch with its `token` (exported to the agent's
    environment), so an agent started by a harness that died before recording its pid is still
    found on resume."""

    token: str = Field(default_factory=lambda: secrets.token_hex(8))
    pid: int | None = None
    proc_create_time: float | None = Field(
        default=None, description="Creation time of pid, to recognise the process after a crash."
    )
    started_at: datetime
    deadline: datetime | None = Field(
        default=None, description="When this attempt was to be stopped."
    )
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    exit_reason: ExitReason | None = None
    harness_interrupted: bool = Field(
        default=False, description="The harness died or was stopped while this attempt ran."
    )
    stragglers: list[ProcessInfo] = Field(
        default_factory=list, description="Processes still alive after the agent, then killed."
    )
    stdout: LogStats | None = None
    stderr: LogStats | None = None
    sandbox_id: str | None = Field(
        default=None, description="What the sandbox backend needs to find and stop this launch."
    )
    limits_enforced: list[str] = Field(default_factory=list)
    limits_not_enforced: list[str] = Field(default_factory=list)
    continuation: int = Field(default=0, description="0: the task prompt; k: the k-th re-prompt.")
    failure: AgentFailure | None = Field(
        default=None, description="Why the agent's CLI stopped early, where the harness can tell."
    )
    note: str | None = None

    @property
    def ran_s(self) -> float:
        end = self.ended_at or now()
        return max(0.0, (end - self.started_at).total_seconds())


# Dollars stay exact: Decimal, written to JSON as a plain string.
Usd = Annotated[Decimal, PlainSerializer(lambda d: format(d.normalize(), "f"), when_used="json")]


class Usage(Record):
    """Tokens of one call, the same way for every provider."""

    input_tokens: int = Field(
        default=0, description="Every prompt token, cached and cache-write included."
    )
    output_tokens: int = Field(default=0, description="Generated tokens, reasoning included.")
    cached_tokens: int = Field(default=0, description="Part of input_tokens read from a cache.")
    cache_write_tokens: int = Field(
        default=0, description="Part of input_tokens written to a cache."
    )
    cache_write_1h_tokens: int = Field(
        default=0, description="Part of cache_write_tokens kept for one hour (Anthropic)."
    )


class ApiUsage(Usage):
    """Totals of a run's relay so far."""

    provider: str
    calls: int = Field(default=0, description="Requests forwarded upstream.")
    failed_calls: int = Field(default=0, description="Forwarded calls that got no 2xx answer.")
    refused_calls: int = Field(default=0, description="Requests the relay answered itself.")
    unpriced_calls: int = Field(default=0, description="Metered calls to a model without a price.")
    priced_at_max_calls: int = Field(
        default=0, description="Calls cut before their final usage, charged their maximum cost."
    )
    provider_tool_calls: int = Field(
        default=0, description="Calls that asked for provider-side tools (web search, fetch...)."
    )
    cost_usd: Usd = Decimal(0)
    budget_usd: Usd | None = None
    prices_as_of: str | None = None


MAX_SUMMARY_HOSTS = 100


class EgressSummary(Record):
    """Counts over a run's egress log, for run.json."""

    requests: int = 0
    allowed: int = 0
    denied: int = 0
    failed: int = Field(
        default=0, description="Allowed requests that failed upstream (DNS, connect)."
    )
    bytes_up: int = 0
    bytes_down: int = 0
    distinct_hosts: int = 0
    hosts: list[str] = Field(
        default_factory=list, description=f"Hosts requested, sorted; at most {MAX_SUMMARY_HOSTS}."
    )
    denied_hosts: list[str] = Field(
        default_factory=list, description=f"Hosts denied, sorted; at most {MAX_SUMMARY_HOSTS}."
    )
    overloaded: int = Field(default=0, description="Connections refused at the concurrency limit.")


class CliInfo(Record):
    """The agent CLI a run used, as installed and verified at prepare."""

    package: str
    version: str
    reported: str = Field(description="What `--version` printed.")
    path: str


class CliUsage(Usage):
    """Totals the agent's CLI reported about its own LLM calls."""

    calls: int = 0
    cost_usd: Usd | None = None


class AgentEvaluation(Record):
    """One evaluation the agent's evaluate.py had the harness-side scoring service score."""

    at: datetime
    split: str
    n_items: int = Field(description="Items scored (the --limit selection).")
    n_answered: int = Field(default=0, description="Items the agent sent a completion for.")
    metric: str | None = None
    score: float | None = None
    judge_cost_usd: float | None = None
    duration_s: float = 0.0
    error: str | None = Field(default=None, description="Why it was not scored, if it was not.")


class AgentOutcome(Record):
    """The solve stage as data: budget and how it was spent, every launch, why the agent stopped.

    `used_s` is the time the agent ran (summed over attempts); `downtime_s` the time between
    attempts while no harness ran it. Under resume policy `remaining`, downtime is not charged.
    """

    started_at: datetime
    deadline: datetime = Field(description="The deadline of the latest attempt.")
    budget_s: int | None = None
    resume_policy: ResumePolicy = "deadline"
    attempts: list[AgentAttempt] = Field(default_factory=list)
    exit_reason: ExitReason | None = None
    wall_s: float | None = Field(default=None, description="Time the agent ran, over all attempts.")
    downtime_s: float = Field(default=0.0, description="Gaps between attempts (harness down).")
    api_usage: ApiUsage | None = Field(default=None, description="LLM calls through the relay.")
    egress: EgressSummary | None = Field(default=None, description="Requests through the proxy.")
    evaluations: list[AgentEvaluation] = Field(
        default_factory=list, description="The agent's own evaluations, scored harness-side."
    )
    reprompts: int = Field(default=0, description="Re-prompts given after the agent stopped.")
    cli_usage: CliUsage | None = Field(
        default=None, description="What the agent's CLI itself reported (from its trajectory)."
    )
    usage_check: str | None = Field(
        default=None, description="The CLI's report against the relay's meter: agree, or how not."
    )


class CollectedFile(Record):
    path: str
    bytes: int = 0
    sha256: str | None = None


class SkippedFile(Record):
    path: str
    reason: str


class CollectOutcome(Record):
    status: CollectStatus
    files: list[CollectedFile] = Field(
        default_factory=list, description="Files copied to final_model/, with size and digest."
    )
    weights: list[str] = Field(
        default_factory=list,
        description="The one weight set of `files` that provenance and the evaluation read: "
        "model.safetensors, or the index and the shards it names (empty: collected by an older "
        "ptb).",
    )
    skipped: list[SkippedFile] = Field(
        default_factory=list, description="Files left behind, and why (never loaded)."
    )
    total_bytes: int = 0
    reason: str | None = None

    @property
    def file_names(self) -> list[str]:
        return [f.path for f in self.files]


class BaselineRef(Record):
    """The base model's score on the run's benchmark, fixed before the agent starts."""

    score: float = Field(ge=0, le=1)
    source: BaselineSource
    detail: str | None = None


CheckStatus = Literal["passed", "failed", "error", "skipped"]
EvidenceKind = Literal["file", "line", "test_item", "tensor", "request", "step", "score", "note"]


class Evidence(Record):
    """One observation behind a check's result, precise enough to be looked up."""

    kind: EvidenceKind
    summary: str = Field(description="One line for humans.")
    decisive: bool = Field(default=True, description="False: context only; did not fail it.")
    path: str | None = Field(default=None, description="File, relative to the frozen workspace.")
    line: int | None = Field(default=None, description="1-based line or record in `path`.")
    item: str | None = Field(default=None, description="Benchmark test item id.")
    tensor: str | None = None
    step: int | None = Field(default=None, description="Trajectory step id.")
    score: float | None = None
    excerpt: str | None = Field(default=None, description="A short, redacted excerpt.")


class CheckResult(Versioned):
    """One integrity check; written to integrity/<name>.json.

    An `error` is not a pass: the policy fails it closed. `skipped` says why it could not apply
    (e.g. no judge configured) and decides nothing."""

    name: str
    status: CheckStatus
    reasons: list[str] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    figures: dict[str, float] = Field(
        default_factory=dict, description="What the check measured (bytes scanned, cosines …)."
    )
    duration_s: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@migration("CheckResult", 2)
def _check_result_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 had `passed` and evidence as lists of file names by category."""
    passed = data.pop("passed", True)
    data.setdefault("status", "passed" if passed else "failed")
    old = data.get("evidence") or {}
    if isinstance(old, dict):
        data["evidence"] = [
            {"kind": "file", "path": path, "summary": f"{what}: {path}"}
            for what, paths in old.items()
            for path in paths
        ]
    return data


class Review(Versioned):
    """integrity/review.json: a person's decision over the verdict, signed; never edits it."""

    decision: Decision
    why: str
    who: str
    at: datetime
    verdict_sha256: str = Field(description="The verdict.json this review read.")
    run_id: str | None = Field(
        default=None, description="The run reviewed; None in reviews signed before it was bound."
    )
    spec_sha256: str | None = Field(
        default=None, description="sha256 of the run's RunSpec (canonical JSON) when signed."
    )
    signature: str = Field(description="HMAC-SHA256 of the fields above, by the reviewer's key.")


class Verdict(Versioned):
    """integrity/verdict.json: the decision over all checks."""

    decision: Decision
    reasons: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list, description="Checks that found a fault.")
    errored: list[str] = Field(
        default_factory=list, description="Checks that could not decide: failed closed."
    )
    skipped: list[str] = Field(default_factory=list)


EvalAttemptOutcome = Literal["ok", "pathology", "infrastructure", "fatal", "timeout"]


class EvalAttempt(Record):
    """One try of an evaluation on the max-token ladder."""

    step: int = Field(ge=1, description="Ladder step (1 = the benchmark's longest max_tokens).")
    max_tokens: int
    outcome: EvalAttemptOutcome
    message: str | None = None
    duration_s: float | None = None


class JudgeUsage(Record):
    """What an LLM judge cost an evaluation; failed judgments stay in the denominator."""

    model: str
    calls: int = 0
    cached: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class SamplingDefaults(Record):
    """The sampling an evaluation used: the model's own generation config, allow-listed fields
    only, over vLLM's neutral defaults (evaluate/generation.py)."""

    source: str = Field(description="generation_config.json, config.json or none.")
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = Field(default=0, description="0: no top-k.")
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    greedy: bool = False
    used: list[str] = Field(default_factory=list, description="Allow-listed fields read.")
    ignored: list[str] = Field(default_factory=list, description="Fields read and not used.")
    note: str | None = None


class SeedScore(Record):
    """One evaluation seed's result; a failed seed has an error and no score."""

    seed: int
    score: float | None = Field(default=None, ge=0, le=1)
    n_samples: int = 0
    n_failed: int = 0
    log_file: str | None = None
    error: str | None = None


class EvalMetrics(Versioned):
    """eval/metrics.json: one evaluation of one model on one benchmark split."""

    benchmark: str
    benchmark_version: str | None = None
    split: str
    metric: str = Field("accuracy", description="The scorer metric the score is read from.")
    score: float = Field(ge=0, le=1, description="Mean over the seeds that succeeded.")
    n_samples: int = Field(description="Samples scored per seed (the denominator of one seed).")
    n_failed: int = Field(
        default=0, description="Samples that errored or whose judgment failed, over scored seeds."
    )
    model_path: str
    log_file: str | None = None
    params: dict[str, str | int | float | None] = Field(default_factory=dict)
    backend: str = "hf"
    template_family: str | None = None
    decoding: dict[str, float | int | None] = Field(default_factory=dict)
    max_tokens: int | None = None
    ladder_step: int | None = Field(
        default=None, description="The ladder step that produced the score."
    )
    attempts: list[EvalAttempt] = Field(default_factory=list)
    seed: int = 0
    suite: str | None = Field(default=None, description="The suite whose seed policy applied.")
    sampling: SamplingDefaults | None = None
    seeds: list[SeedScore] = Field(
        default_factory=list, description="Each evaluation seed; `score`: the mean of the scored."
    )
    datasets: list[str] = Field(default_factory=list, description="Data sources and revisions.")
    judge: JudgeUsage | None = None
    duration_s: float | None = None


class Outcome(Record):
    """The run's final score and where it came from."""

    score: float = Field(ge=0, le=1)
    source: ScoreSource
    base_score: float | None = None
    reason: str | None = None
    reviewed: str | None = Field(
        default=None, description="Who overrode the integrity verdict, to what, and why."
    )


class HarnessInfo(Record):
    version: str
    python: str
    packages: dict[str, str] = Field(default_factory=dict)
    hostname: str


class GpuProcess(Record):
    """One row of `nvidia-smi --query-compute-apps`."""

    gpu_uuid: str
    pid: int
    used_memory_mib: int | None


class GpuCheck(Record):
    """The preflight of one requested GPU."""

    index: int
    present: bool
    uuid: str | None = None
    name: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_pct: int | None = None
    processes: list[GpuProcess] = Field(default_factory=list)
    probe_s: float | None = Field(default=None, description="Seconds the allocation probe took.")
    probe_device: str | None = Field(
        default=None, description="Device name torch saw in the probe."
    )
    passed: bool = Field(description="Passed every check that ran on it.")
    reason: str | None = Field(default=None, description="Why it failed, if it did.")


class GpuPreflight(Record):
    """What the harness checked of the run's GPUs before the agent started."""

    requested: list[int] = Field(description="GPU indices as nvidia-smi numbers them.")
    accepted_classes: list[str] = Field(description="Name parts accepted, or ['any'].")
    max_used_mib: int
    max_util_pct: int
    probed: bool = Field(description="Whether the allocation probe was asked for.")
    passed: bool
    note: str | None = None
    checks: list[GpuCheck] = Field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        if not self.requested:
            return self.note or "no GPU requested"
        names = sorted({c.name or "?" for c in self.checks})
        state = "ok" if self.passed else "FAILED"
        return f"{len(self.requested)} × {', '.join(names)}: {state} in {self.duration_s:.1f}s"


class RunRecord(Versioned):
    """run.json: the spec plus everything that happened. Written atomically after each change."""

    spec: RunSpec
    harness: HarnessInfo
    stages: dict[StageName, StageStatus] = Field(
        default_factory=lambda: {s: StageStatus() for s in STAGES}
    )
    baseline: BaselineRef | None = Field(default=None, description="Resolved at prepare.")
    gpu_preflight: GpuPreflight | None = Field(default=None, description="Checked at prepare.")
    agent_cli: CliInfo | None = Field(
        default=None, description="Installed and verified at prepare."
    )
    agent: AgentOutcome | None = None
    collect: CollectOutcome | None = None
    verdict: Verdict | None = None
    review: Review | None = Field(default=None, description="A signed human override.")
    metrics: EvalMetrics | None = None
    eval_error: ErrorInfo | None = None
    outcome: Outcome | None = None

    @property
    def complete(self) -> bool:
        return all(self.stages[s].state == "done" for s in STAGES)

    @property
    def failed_stage(self) -> StageName | None:
        return next((s for s in STAGES if self.stages[s].state == "failed"), None)


@migration("RunSpec", 3)
def _run_spec_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 runs predate suites; they followed v1.0's protocol (one seed, seven benchmarks)."""
    data.setdefault("suite", "ptb-v1.0")
    return data


@migration("RunRecord", 1)
def _run_record_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 kept collected and skipped files as bare names."""
    collect = data.get("collect")
    if isinstance(collect, dict):
        collect = dict(collect)
        collect["files"] = [{"path": f} if isinstance(f, str) else f for f in collect["files"]]
        collect["skipped"] = [
            {"path": f, "reason": "not a model file"} if isinstance(f, str) else f
            for f in collect.get("skipped", [])
        ]
        data["collect"] = collect
    return data


Weighting = Literal[
    "paper",  # inverse published instruct − base gap, normalised over the section's benchmarks
    "uniform",  # benchmarks without a published gap (the embedded ones): equal weights
]
FallbackSource = Literal["fallback_no_model", "fallback_eval_failed", "fallback_flagged"]
FALLBACK_SOURCES: tuple[FallbackSource, ...] = (
    "fallback_no_model",
    "fallback_eval_failed",
    "fallback_flagged",
)


class CellKey(Record):
    """One position of a leaderboard section's grid: a seed × benchmark × base model."""

    seed: int = Field(description="Seed of the run(s) that fill this position.")
    benchmark: str = Field(description="Benchmark registry id.")
    base_model: str = Field(description="Base model registry name.")


class LeaderboardCell(CellKey):
    """One scored run of a leaderboard row: its score and where that score came from."""

    run_id: str = Field(description="The run that produced this cell.")
    score: float = Field(description="Percent; a fallback cell holds the base model's score.")
    source: ScoreSource = Field(description="`Outcome.source`: evaluated, or why it fell back.")
    reason: str | None = Field(None, description="`Outcome.reason`: why it fell back, if known.")
    reviewed: str | None = Field(None, description="`Outcome.reviewed`: a human override.")
    llm: ApiUsage | None = Field(None, description="The run's LLM calls through the relay.")


class LlmTotals(Record):
    """A row's LLM use, summed over its runs that went through the relay."""

    runs: int = Field(description="Runs with metered LLM calls.")
    calls: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Usd = Decimal(0)

    @property
    def cost_per_run(self) -> Decimal:
        return self.cost_usd / self.runs if self.runs else Decimal(0)


class BenchmarkScore(Record):
    """A row's score on one benchmark of its section."""

    score: float = Field(
        description="Percent: mean over seeds of the mean over base models of the cells present."
    )
    n_cells: int = Field(description="Runs behind the score (repeats of a cell included).")
    fallbacks: int = Field(0, description="Of those, runs that took the base model's score.")


class LeaderboardRow(Record):
    """One agent configuration within one section of the leaderboard."""

    label: str = Field(
        description="`config.label()`, plus `[config.detail()]` where the label alone is shared"
        " by several configurations of the board."
    )
    config: AgentConfig = Field(description="The configuration this row stands for.")
    average: float | None = Field(
        description="Weighted average in percent, mean over complete seeds; None if no seed has"
        " every cell of the section's grid."
    )
    std: float | None = Field(None, description="Sample std of the average over complete seeds.")
    seeds: list[int] = Field(description="Seeds with at least one run in this section.")
    complete_seeds: list[int] = Field(description="Seeds with every cell of the grid.")
    n_runs: int = Field(description="Runs counted in this row.")
    benchmarks: dict[str, BenchmarkScore] = Field(description="Benchmark id → its score.")
    fallbacks: dict[FallbackSource, int] = Field(
        description="Runs that took the base model's score, per cause."
    )
    cells: list[LeaderboardCell] = Field(description="Every run of the row, with its source.")
    missing: list[CellKey] = Field(
        default_factory=list, description="Grid cells without a run, for seeds of the row."
    )
    llm: LlmTotals | None = Field(None, description="LLM calls, tokens and dollars of the row.")

    @property
    def n_fallbacks(self) -> int:
        return sum(self.fallbacks.values())

    @property
    def fallback_cells(self) -> list[LeaderboardCell]:
        return [c for c in self.cells if c.source != "evaluated"]


class LeaderboardSection(Record):
    """The rows over one set of benchmarks that share a weighting (DESIGN §6)."""

    weighting: Weighting = Field(description="How the section's weights were derived.")
    weights: dict[str, float] = Field(description="Benchmark id → weight; they sum to 1.")
    base_models: list[str] = Field(description="Base models of the grid (seen in the section).")
    rows: list[LeaderboardRow] = Field(description="Best average first; no average last.")

    @property
    def benchmarks(self) -> list[str]:
        return sorted(self.weights)


class UnreadableRun(Record):
    """A run directory whose run.json could not be loaded."""

    path: str = Field(description="The run directory, relative to the scanned results dir.")
    reason: str = Field(description="One line naming the file and the problem.")


class LeftOutRun(Record):
    """A readable run without an outcome: failed, or still in progress (or interrupted)."""

    run_id: str
    label: str = Field(description="`AgentConfig.label()` of the run.")
    benchmark: str
    base_model: str
    seed: int
    stage: StageName | None = Field(
        None, description="The failed stage, or the first stage not done."
    )
    reason: str = Field(description="The stage's error message, or what the run waits for.")
    suite: str | None = Field(default=None, description="The suite the run follows.")


class Leaderboard(Versioned):
    """The report over a results dir: one section per weighting, and every run left out."""

    suite: str | None = Field(
        default=None, description="The suite (catalog.suites) the board is built for."
    )
    sections: list[LeaderboardSection] = Field(
        description="Published-gap (`paper`) section first, then the `uniform` one, if any."
    )
    unreadable: list[UnreadableRun] = Field(
        default_factory=list, description="Runs whose run.json cannot be read."
    )
    failed: list[LeftOutRun] = Field(
        default_factory=list, description="Runs with a failed stage and no outcome."
    )
    in_progress: list[LeftOutRun] = Field(
        default_factory=list, description="Runs without an outcome yet: running or interrupted."
    )
    other_suite: list[LeftOutRun] = Field(
        default_factory=list,
        description="Runs of another suite, or of an official benchmark the suite leaves out.",
    )
    baselines: str | None = Field(
        default=None, description="Where the base and instruct scores (weights) came from."
    )
