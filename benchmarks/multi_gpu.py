"""GPU placement on this machine's GPUs, through the real `ptb sweep run` (local executor, bwrap).

    python benchmarks/multi_gpu.py [--results DIR] [--sandbox bwrap] [--cooldown 30]

Three sweeps of a `command` agent on ptb-tiny × arith, each stopped after collect. The agent
prints what its sandbox shows (CUDA devices and their UUIDs, /dev/nvidia*, `nvidia-smi -L`, the
prompt's hardware line), runs a DistributedDataParallel step over NCCL on every GPU it sees, then
keeps its GPUs busy for a few seconds.

1. placement: one run per GPU (at least two runs), `gpus_per_run = 1`, as many slots as GPUs.
   Each run must see exactly one device, the one its preflight checked; no two runs may hold a
   GPU at the same time; each run's monitor.csv must show the load on its own GPU.
2. multi (2+ GPUs): one run with `gpus_per_run = 2`: both devices, "2 × …" in its prompt, NCCL
   across both.
3. busy: another process holds the first GPU; the preflight must refuse it, and the retry must
   land on another GPU (with one GPU: on the same one, after the pool's cooldown, once freed).

Prints what each run saw and exits 1 if any check fails. Needs torch with CUDA and what
`ptb sweep run` needs; the base score of ptb-tiny on arith is measured first if not cached.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrainbench.records import RunRecord
from posttrainbench.sandbox import gpu

PROBE = r"""
import json, os, socket, subprocess, time
import torch, torch.distributed as dist, torch.multiprocessing as mp

def rank_main(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    layer = torch.nn.Linear(1024, 1024).cuda()
    net = torch.nn.parallel.DistributedDataParallel(layer, device_ids=[rank])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        loss = net(torch.randn(64, 1024, device="cuda")).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    t = torch.tensor([rank + 1.0], device="cuda"); dist.all_reduce(t)
    w = net.module.weight.detach().clone(); dist.broadcast(w, 0)
    print("NCCL " + json.dumps({"rank": rank, "world": world, "sum": t.item(),
          "in_sync": torch.equal(w, net.module.weight.detach())}), flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    n = torch.cuda.device_count()
    seen = {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "uid": os.getuid(),
            "uuids": ["GPU-" + str(torch.cuda.get_device_properties(i).uuid) for i in range(n)],
            "dev": sorted(p for p in os.listdir("/dev") if p.startswith("nvidia")),
            "smi": subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout,
            "hardware": [l.strip() for l in open(os.environ["PTB_PROMPT_FILE"]) if "Hardware" in l]}
    print("PROBE " + json.dumps(seen), flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    mp.spawn(rank_main, args=(n, port), nprocs=n)
    xs = [torch.randn(8192, 8192, device=f"cuda:{i}", dtype=torch.bfloat16) for i in range(n)]
    end = time.time() + 12
    while time.time() < end:
        for x in xs:
            x @ x
        torch.cuda.synchronize()
"""


def sweep_file(path: Path, name: str, runs: int, per_run: int, pool: list[int], extra: str) -> Path:
    code = base64.b64encode(PROBE.encode()).decode()
    cmd = f"echo {code} | base64 -d > probe.py && python3 probe.py"
    cmd += " && cp -r $PTB_BASE_MODEL_PATH final_model"
    path.write_text(
        f'name = "{name}"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\n'
        f'seeds = {list(range(runs))}\nbudget = "5m"\nsandbox = "{ARGS.sandbox}"\n\n'
        f'[[agents]]\nagent = "command"\nagent_cmd = "{cmd}"\n\n'
        f'[executor]\nkind = "local"\nslots = {max(1, len(pool) // per_run)}\ngpus = {pool}\n'
        f"gpus_per_run = {per_run}\nretries = 2\n{extra}\n"
    )
    return path


def run_sweep(path: Path) -> float:
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "posttrainbench", "sweep", "run", str(path), "--until", "collect",
         "--retry-delay", "0", "--results", str(ARGS.results)],
        check=False, stdout=subprocess.DEVNULL, env=os.environ | {"PTB_MONITOR_S": "2"},
    )  # fmt: skip
    return time.monotonic() - start


class Seen:
    """What one run's agent printed, and what the harness recorded of it."""

    def __init__(self, run_dir: Path) -> None:
        self.record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
        out = (run_dir / "agent" / "stdout.log").read_text(errors="replace").splitlines()
        probes = [json.loads(line[6:]) for line in out if line.startswith("PROBE ")]
        self.probe = probes[-1] if probes else {}
        self.nccl = [json.loads(line[5:]) for line in out if line.startswith("NCCL ")]
        pre = self.record.gpu_preflight
        self.given = pre.requested if pre else []
        self.uuids = [c.uuid for c in pre.checks] if pre else []
        solve = self.record.stages["solve"]
        self.span = (solve.started_at, solve.ended_at)
        self.peak = self._peak(run_dir / "monitor.csv")

    @staticmethod
    def _peak(csv: Path) -> list[int]:
        """Highest utilisation per GPU of the run (monitor.csv joins them with ';')."""
        peak: list[int] = []
        for line in csv.read_text().splitlines()[1:]:
            cells = line.split(",")[4].split(";") if "," in line else []
            values = [int(c) for c in cells if c.strip().isdigit()]
            peak = [max(a, b) for a, b in zip(peak, values, strict=False)] or values
        return peak

    def line(self) -> str:
        world = self.nccl[0]["world"] if self.nccl else 0
        sums = sorted({n["sum"] for n in self.nccl})
        return (
            f"given GPU(s) {self.given} → sees {len(self.probe.get('uuids', []))} device(s) "
            f"{self.probe.get('dev')} CUDA_VISIBLE_DEVICES={self.probe.get('cuda_visible')}; "
            f"prompt {self.probe.get('hardware')}; NCCL world {world} sums {sums} "
            f"in sync {all(n['in_sync'] for n in self.nccl) if self.nccl else None}; "
            f"peak util {self.peak} %"
        )


def check(ok: bool, what: str) -> None:
    print(("  ok   " if ok else "  FAIL ") + what)
    FAILURES.extend([] if ok else [what])


def verify(seen: Seen, per_run: int) -> None:
    uuids = seen.probe.get("uuids", [])
    check(sorted(uuids) == sorted(seen.uuids) and len(uuids) == per_run,
          f"{seen.record.spec.run_id}: sees exactly its own {per_run} GPU(s)")  # fmt: skip
    world = [n for n in seen.nccl if n["in_sync"] and n["sum"] == per_run * (per_run + 1) / 2]
    check(len(world) == per_run, f"{seen.record.spec.run_id}: NCCL step on {per_run} GPU(s)")
    check(any(f"{per_run} ×" in h for h in seen.probe.get("hardware", [])), "prompt says so")
    check(len(seen.peak) == per_run and min(seen.peak, default=0) >= 50,
          f"monitor shows its own GPU(s) busy: {seen.peak}")  # fmt: skip


def runs_of(name: str) -> list[Seen]:
    return [Seen(p.parent) for p in sorted((ARGS.results / name).glob("*/run.json"))]


def main() -> int:
    gpus = [g.index for g in gpu.query_gpus()]
    print(f"GPUs: {gpus}")
    work = Path(tempfile.mkdtemp(prefix="ptb-multi-gpu-"))

    wall = run_sweep(sweep_file(work / "p.toml", "placement", max(2, len(gpus)), 1, gpus, ""))
    seen = runs_of("placement")
    print(f"1. placement: {len(seen)} runs on {len(gpus)} GPU(s) in {wall:.0f} s")
    for s in seen:
        print(f"  {s.record.spec.run_id}: {s.line()}")
        verify(s, 1)
    for i, a in enumerate(seen):
        for b in seen[i + 1 :]:
            overlap = a.span[0] < b.span[1] and b.span[0] < a.span[1]  # type: ignore[operator]
            if overlap and set(a.given) & set(b.given):
                check(False, f"{a.record.spec.run_id} and {b.record.spec.run_id} shared a GPU")
    concurrent = (
        len(gpus) > 1
        and any(
            a.span[0] < b.span[1] and b.span[0] < a.span[1]  # type: ignore[operator]
            for i, a in enumerate(seen)
            for b in seen[i + 1 :]
        )
    )
    print(f"  runs held GPUs at the same time: {concurrent}")

    if len(gpus) >= 2:
        wall = run_sweep(sweep_file(work / "m.toml", "multi", 1, 2, gpus[:2], ""))
        print(f"2. multi: one run with 2 GPUs in {wall:.0f} s")
        for s in runs_of("multi"):
            print(f"  {s.record.spec.run_id}: {s.line()}")
            verify(s, 2)
    else:
        print("2. multi: skipped (one GPU)")

    cooldown = f"options = {{ refused_cooldown_s = {ARGS.cooldown} }}"
    hold_s = ARGS.cooldown - 5 if len(gpus) == 1 else 120
    hold = (
        "import time, torch; x = torch.empty(8 << 30, dtype=torch.uint8, device='cuda');"
        f" print('held', flush=True); time.sleep({hold_s})"
    )
    only_first = {"CUDA_VISIBLE_DEVICES": str(gpus[0]), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True,
        env=os.environ | only_first,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        wall = run_sweep(sweep_file(work / "b.toml", "busy", 1, 1, gpus, cooldown))
    finally:
        holder.kill()
    tries = [
        json.loads(line)
        for line in (ARGS.results / "busy" / ".jobs" / "tries.jsonl").read_text().splitlines()
    ]
    (s,) = runs_of("busy")
    print(f"3. busy: GPU {gpus[0]} held by pid {holder.pid}; {wall:.0f} s")
    for t in tries:
        print(f"  try {t['attempt']}: {t['state']} — {t['note'] or ''}")
    check(tries[0]["state"] == "retryable" and "busy" in (tries[0]["note"] or ""),
          "the preflight refused the held GPU")  # fmt: skip
    check(s.record.complete or s.record.stages["collect"].state == "done", "the retry ran")
    want = "another GPU" if len(gpus) > 1 else "the same GPU after the cooldown"
    placed = s.given != [gpus[0]] if len(gpus) > 1 else s.given == [gpus[0]]
    check(placed, f"the retry was placed on {want}: {s.given}")
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--sandbox", default="bwrap")
    parser.add_argument("--cooldown", type=int, default=30)
    ARGS = parser.parse_args()
    ARGS.results = ARGS.results or Path(tempfile.mkdtemp(prefix="ptb-multi-gpu-results-"))
    FAILURES: list[str] = []
    sys.exit(main())
