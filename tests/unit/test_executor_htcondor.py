"""The htcondor executor without a pool: its submit description parsed by the real HTCondor
bindings (`htcondor2.Submit` parses and expands a description without any daemon), its check()
on this machine (no schedd anywhere here), and its polling logic.

The polling tests use `FakeSchedd`, the one fake here: no HTCondor daemon can run on this
machine (only the Python bindings are on PyPI), so a small object stands in for the schedd's
submit/query/history/act. It still matches constraints with the real ClassAd library and takes
the real `htcondor2.Submit` the executor builds.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import classad2 as classad
import htcondor2 as htcondor
import pytest

from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.scale.executors import get_executor
from posttrainbench.scale.executors import htcondor as ht
from posttrainbench.scale.executors.base import ExecutorConfig, Finished, Job


def decode_arguments(value: str) -> list[str]:
    """HTCondor's new argument syntax, as its manual states it: the whole in double quotes, `""`
    a literal double quote, white space between arguments, single quotes around an argument
    with white space, `''` a literal single quote inside them."""
    assert value[0] == value[-1] == '"', value
    text = value[1:-1].replace('""', '"')
    args: list[str] = []
    cur: str | None = None
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "'" and text[i + 1 : i + 2] == "'":
                cur = (cur or "") + "'"
                i += 1
            elif ch == "'":
                quoted = False
            else:
                cur = (cur or "") + ch
        elif ch in " \t":
            if cur is not None:
                args.append(cur)
            cur = None
        elif ch == "'":
            quoted, cur = True, cur or ""
        else:
            cur = (cur or "") + ch
        i += 1
    if cur is not None:
        args.append(cur)
    return args


def make(tmp_path: Path, **config: Any) -> ht.HTCondorExecutor:
    sweep_dir = tmp_path / "my sweep"
    executor = get_executor(ExecutorConfig(kind="htcondor", **config), sweep_dir)
    assert isinstance(executor, ht.HTCondorExecutor)
    return executor


def expanded(executor: ht.HTCondorExecutor, text: str, item: dict[str, str]) -> Any:
    """The description as condor_submit sees it for one item: its variables set, macros expanded."""
    sub = htcondor.Submit(text)
    for key, value in item.items():
        sub[key] = value
    return sub


@pytest.fixture
def jobs(tmp_path: Path) -> list[Job]:
    sweep = tmp_path / "my sweep"
    return [
        Job("claude-qwen-gsm8k-1", sweep / "claude-qwen-gsm8k-1", gpus=1, time_limit_s=12600),
        Job("codex-cpu", sweep / 'odd, (dir) it\'s $HOME "x"', gpus=0, time_limit_s=5400),
        Job("two-gpus", sweep / "two-gpus", gpus=2, time_limit_s=99),
    ]


def test_description_parses_and_expands_per_job(tmp_path: Path, jobs: list[Job]) -> None:
    executor = make(tmp_path, gpus_per_run=1, cpus_per_run=8, mem_gb_per_run=1.5)
    text = executor.submit_description(jobs)
    sub = htcondor.Submit(text)

    assert sub["universe"] == "vanilla"
    assert sub["executable"] == jobs[0].argv[0]
    assert sub["transfer_executable"] == "false"
    assert sub["request_cpus"] == "8"
    assert sub["request_memory"] == "1536"
    getenv = [n.strip() for n in sub["getenv"].split(",")]
    assert {"PATH", "HOME", "PTB_*", "HF_*"} <= set(getenv)
    assert not any("API_KEY" in n for n in getenv)  # keys travel only when the user names them
    assert "max_retries" not in sub
    assert sub.getQArgs().startswith("ptb_run_id,ptb_gpus,ptb_gpus_env,ptb_time_limit_s,ptb_args")

    items = list(sub.itemdata())
    assert items == executor.itemdata(jobs)
    assert len(items) == len(jobs)
    log_dir = (tmp_path / "my sweep" / ".jobs" / "htcondor").resolve()
    for job, item in zip(jobs, items, strict=True):
        one = expanded(executor, text, item)
        assert decode_arguments(one.expand("arguments")) == job.argv[1:]
        assert job.argv[1:] == ["-P", "-m", "posttrainbench", "run", "--resume", str(job.run_dir)]
        assert one.expand("request_gpus") == str(job.gpus)
        assert one.expand("environment") == f'"PTB_GPUS={"all" if job.gpus else "none"}"'
        assert one.expand("MY.MaxRuntime") == str(job.time_limit_s)
        assert one.expand("periodic_remove") == (
            f"(JobStatus == 2) && (time() - JobCurrentStartDate > {job.time_limit_s})"
        )
        assert one.expand("MY.PtbRunId") == f'"{job.run_id}"'
        assert one.expand("output") == f"{log_dir}/{job.run_id}.$(Cluster).out".replace(
            "$(Cluster)", one.expand("Cluster")
        )
        assert one.expand("error").endswith(".err")
        assert one.expand("log") == f"{log_dir}/condor.log"
    # The classad expressions the schedd will evaluate are well formed.
    classad.ExprTree(expanded(executor, text, items[0]).expand("periodic_remove"))


@pytest.mark.parametrize(
    "argv",
    [
        ["plain", "-m", "x"],
        ["with space", "tab\there", ""],
        ["it's", "''", "'quoted words'"],
        ['say "hi"', '"', '""'],
        ["$HOME", "$(Cluster)", "a$$b", "$$$", "$", "a,b", "(x)", "#not a comment", "100%"],
        ["/a dir/with 'both' \"kinds\" $(x)"],
    ],
)
def test_arguments_round_trip_through_condor_macro_expansion(argv: list[str]) -> None:
    sub = htcondor.Submit(f"executable = /bin/true\narguments = {ht.quote_arguments(argv)}\n")
    assert decode_arguments(sub.expand("arguments")) == argv


def test_paths_with_spaces_and_dollars_stay_literal(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "a $weird dir"
    executor = ht.HTCondorExecutor(ExecutorConfig(kind="htcondor"), sweep_dir)
    job = Job("r1", sweep_dir / "r1", gpus=0, time_limit_s=60, command=("/opt/my env/bin/py", "x"))
    text = executor.submit_description([job])
    one = expanded(executor, text, executor.itemdata([job])[0])
    assert one.expand("executable") == "/opt/my env/bin/py"
    assert one.expand("log") == str(sweep_dir.resolve() / ".jobs" / "htcondor" / "condor.log")
    assert decode_arguments(one.expand("arguments")) == ["x"]


def test_options(tmp_path: Path, jobs: list[Job]) -> None:
    executor = make(
        tmp_path,
        options={
            "requirements": '(OpSysAndVer == "AlmaLinux9") && (GPUs_Capability >= 8.0)',
            "universe": "container",
            "accounting_group": "group_ml.alice",
            "getenv": ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"],
            "submit": {
                "request_disk": "20GB",
                "container_image": "/images/ptb.sif",
                "should_transfer_files": "IF_NEEDED",  # overrides ptb's NO: the last one counts
            },
            "+ProjectName": 'ptb "13"',
            "+WantGPULab": True,
            "+GPUJobLength": 3,
        },
    )
    sub = htcondor.Submit(executor.submit_description(jobs))
    assert sub["requirements"] == '(OpSysAndVer == "AlmaLinux9") && (GPUs_Capability >= 8.0)'
    assert sub["universe"] == "container"
    assert sub["accounting_group"] == "group_ml.alice"
    assert sub["getenv"].endswith("ANTHROPIC_API_KEY, OPENAI_API_KEY")
    assert sub["request_disk"] == "20GB"
    assert sub["container_image"] == "/images/ptb.sif"
    assert sub["should_transfer_files"] == "IF_NEEDED"
    assert sub["MY.ProjectName"] == '"ptb \\"13\\""'
    assert classad.ExprTree(sub["MY.ProjectName"]).eval() == 'ptb "13"'
    assert sub["MY.WantGPULab"] == "true"
    assert sub["MY.GPUJobLength"] == "3"

    everything = make(tmp_path, options={"getenv": True})
    assert htcondor.Submit(everything.submit_description(jobs))["getenv"] == "true"


def test_bad_options_and_jobs(tmp_path: Path, jobs: list[Job]) -> None:
    with pytest.raises(ConfigError, match="unknown htcondor executor option"):
        make(tmp_path, options={"partition": "gpu"})
    with pytest.raises(ConfigError, match="not a ClassAd attribute"):
        make(tmp_path, options={"+bad name": 1})
    with pytest.raises(ConfigError, match="getenv"):
        make(tmp_path, options={"getenv": ["A=B"]}).submit_description(jobs)
    executor = make(tmp_path)
    with pytest.raises(ConfigError, match="holds `\\$\\$\\(`"):
        executor.submit_description([Job("x", tmp_path / "$$(Memory)", 0, 60)])
    with pytest.raises(ConfigError, match="spans lines"):
        executor.submit_description([Job("x", tmp_path / "a\nb", 0, 60)])
    mixed = [jobs[0], Job("y", tmp_path / "y", 0, 60, command=("/bin/true",))]
    with pytest.raises(ConfigError, match="different executables"):
        executor.submit_description(mixed)


def test_check_without_a_schedd_says_how_to_submit_by_hand(tmp_path: Path, jobs: list[Job]) -> None:
    try:
        htcondor.Schedd()
    except Exception:
        pass
    else:  # a schedd is reachable from here: the check passes
        make(tmp_path).check()
        return
    executor = make(tmp_path)
    with pytest.raises(MissingDependencyError) as err:
        executor.check()
    assert "cannot locate a schedd" in err.value.message
    assert "condor_submit" in err.value.message
    assert err.value.hint and "access point" in err.value.hint

    # run() writes the submit file before it finds no schedd, and says where it is.
    with pytest.raises(MissingDependencyError) as err:
        list(executor.run(jobs))
    path = executor.submit_path
    assert path.is_file()
    assert f"the jobs' submit file is {path}" in err.value.message
    assert f"condor_submit '{path}'" in err.value.message  # quoted: the path holds a space
    assert list(htcondor.Submit(path.read_text()).itemdata()) == executor.itemdata(jobs)
    assert executor.write_submit_file(jobs[:1]) == path
    assert len(list(htcondor.Submit(path.read_text()).itemdata())) == 1


def test_check_without_bindings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ht, "bindings", lambda: None)
    with pytest.raises(MissingDependencyError, match="bindings are not installed") as err:
        make(tmp_path).check()
    assert err.value.hint == ht.INSTALL_HINT


# Polling, against the fake schedd


Step = tuple[str, dict[str, Any] | None]


class FakeSchedd:
    """A schedd as ptb uses it. `script[proc]` lists what each poll sees of that proc:
    ("queue", attrs), ("history", attrs) or ("gone", None); the last entry repeats."""

    def __init__(self, script: dict[int, list[Step]]) -> None:
        self.script = script
        self.polls = 0
        self.submitted: list[tuple[Any, list[dict[str, str]]]] = []
        self.removed: list[tuple[list[str], str | None]] = []
        self.cluster = 42

    def submit(self, description: Any, itemdata: Iterator[dict[str, str]]) -> Any:
        items = list(itemdata)
        self.submitted.append((description, items))
        cluster = self.cluster

        class Result:
            def cluster(self) -> int:
                return cluster

            def first_proc(self) -> int:
                return 0

            def num_procs(self) -> int:
                return len(items)

        return Result()

    def _ads(self, where: str, constraint: str) -> list[Any]:
        ads = []
        for proc, steps in self.script.items():
            kind, attrs = steps[min(self.polls - 1, len(steps) - 1)]
            if kind != where:
                continue
            ad = classad.ClassAd({"ClusterId": self.cluster, "ProcId": proc, **(attrs or {})})
            if classad.ExprTree(constraint).eval(ad) is True:
                ads.append(ad)
        return ads

    def query(self, constraint: str, projection: list[str]) -> list[Any]:
        self.polls += 1
        return self._ads("queue", constraint)  # this poll's step: script[proc][polls - 1]

    def history(self, constraint: str, projection: list[str], match: int) -> list[Any]:
        return self._ads("history", constraint)[:match]

    def act(self, action: Any, job_spec: list[str], reason: str | None = None) -> None:
        assert action == htcondor.JobAction.Remove
        self.removed.append((job_spec, reason))
        for spec in job_spec:
            proc = int(spec.split(".")[1])
            self.script[proc] = [("history", {"JobStatus": 3, "RemoveReason": reason})]


def sim_jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(f"run{i}", tmp_path / f"run{i}", gpus=i % 2, time_limit_s=600) for i in range(n)]


def polling_executor(
    tmp_path: Path, schedd: FakeSchedd, monkeypatch: pytest.MonkeyPatch
) -> ht.HTCondorExecutor:
    executor = make(tmp_path, options={"poll_s": 0})
    monkeypatch.setattr(executor, "_schedd", lambda: schedd)
    return executor


def test_run_submits_one_cluster_and_reports_each_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = ("queue", {"JobStatus": 1})
    running = ("queue", {"JobStatus": 2, "RemoteHost": "slot1_1@gpu07.example.org"})
    schedd = FakeSchedd(
        {
            0: [idle, running, running, ("history", {
                "JobStatus": 4, "ExitCode": 0, "ExitBySignal": False,
                "LastRemoteHost": "slot1_1@gpu07.example.org", "RemoteWallClockTime": 31.0,
            })],
            1: [running, ("queue", {
                "JobStatus": 5, "HoldReason": "Error from slot1: cannot open /nfs/run1",
                "HoldReasonCode": 13, "LastRemoteHost": "slot1@gpu02",
            })],
            2: [idle, ("queue", {"JobStatus": 4, "ExitCode": 1, "ExitBySignal": False})],
            3: [running, ("queue", {"JobStatus": 3}), ("history", {
                "JobStatus": 3,
                "RemoveReason": "The job attribute PeriodicRemove expression '(JobStatus == 2) "
                "&& (time() - JobCurrentStartDate > 600)' evaluated to TRUE",
            })],
            4: [running, ("history", {"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9})],
            5: [idle, ("history", {"JobStatus": 3, "RemoveReason": "via condor_rm (by user al)"})],
            6: [running, ("gone", None)],
        }
    )  # fmt: skip
    executor = polling_executor(tmp_path, schedd, monkeypatch)
    jobs = sim_jobs(tmp_path, 7)
    results = list(executor.run(jobs))

    (description, items), = schedd.submitted  # fmt: skip
    assert isinstance(description, htcondor.Submit)
    assert items == executor.itemdata(jobs)
    assert description.getQArgs() == ""  # the item data goes through the bindings
    assert executor.submit_path.is_file()

    by_run: dict[str, Finished] = {f.job.run_id: f for f in results}
    assert sorted(by_run) == [j.run_id for j in jobs]
    assert all(f.engine_id == f"42.{f.job.run_id[3:]}" for f in results)
    assert (by_run["run0"].returncode, by_run["run0"].node) == (0, "gpu07.example.org")
    assert by_run["run0"].extra["wall_s"] == 31.0
    assert by_run["run1"].returncode is None
    assert "held: Error from slot1: cannot open /nfs/run1" in (by_run["run1"].note or "")
    assert schedd.removed[0][0] == ["42.1"]
    assert by_run["run2"].returncode == 1
    assert by_run["run3"].returncode is None and by_run["run3"].extra["timed_out"] is True
    assert "time limit of 600 s exceeded" in (by_run["run3"].note or "")
    assert by_run["run4"].returncode == 128 + 9
    assert by_run["run5"].returncode is None and "condor_rm" in (by_run["run5"].note or "")
    assert by_run["run6"].returncode is None and "without a history" in (by_run["run6"].note or "")
    # Reported as they ended: the held job and the quick ones before the long one.
    order = [f.job.run_id for f in results]
    assert order.index("run1") < order.index("run0")
    assert order[-1] == "run6"  # lost only after several polls without a trace
    assert len(schedd.removed) == 1  # nothing left to clean up at the end


def test_closing_early_removes_the_jobs_still_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = ("history", {"JobStatus": 4, "ExitCode": 0})
    schedd = FakeSchedd(
        {0: [done], 1: [("queue", {"JobStatus": 2})], 2: [("queue", {"JobStatus": 1})]}
    )
    executor = polling_executor(tmp_path, schedd, monkeypatch)
    gen = executor.run(sim_jobs(tmp_path, 3))
    assert isinstance(gen, Generator)
    first = next(gen)
    assert (first.job.run_id, first.returncode) == ("run0", 0)
    gen.close()
    assert schedd.removed == [(["42.1", "42.2"], "ptb sweep driver stopped")]


def test_many_jobs_poll_with_one_query_per_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 200
    steps = itertools.cycle([1, 2, 3])
    running: Step = ("queue", {"JobStatus": 2})
    done: Step = ("history", {"JobStatus": 4, "ExitCode": 0})
    schedd = FakeSchedd({p: [running] * next(steps) + [done] for p in range(n)})
    executor = polling_executor(tmp_path, schedd, monkeypatch)
    results = list(executor.run(sim_jobs(tmp_path, n)))
    assert sorted(f.job.run_id for f in results) == sorted(f"run{i}" for i in range(n))
    assert all(f.returncode == 0 for f in results)
    assert schedd.polls == 4
