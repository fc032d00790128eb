"""GPU passthrough into the bwrap sandbox, on a machine with NVIDIA GPUs.

    python benchmarks/sandbox_gpu.py [--gpu 0]

1. the harness's preflight of that GPU (present, accepted class, idle, allocation + write);
2. a bwrap sandbox given only that GPU runs torch (allocate 1 GiB, write, read back) and
   nvidia-smi inside, as the unprivileged agent uid when run as root;
3. the monitor's GPU sample of the GPUs the agent was given, while the sandbox works.
Prints what each step saw and how long it took.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrainbench.sandbox import gpu, guest
from posttrainbench.sandbox.base import GUEST, LaunchRequest, Limits
from posttrainbench.sandbox.bwrap import BwrapSandbox
from posttrainbench.sandbox.monitor import gpu_sample

INSIDE = """
import os, time, torch
t = time.perf_counter()
x = torch.full((256, 1024, 1024), 3.0, device="cuda")
ok = bool((x.sum() == 3.0 * x.numel()).item())
print("inside: CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"),
      "| devices", torch.cuda.device_count(), "|", torch.cuda.get_device_name(0),
      "| 1 GiB write/read ok:", ok, f"| {time.perf_counter() - t:.2f}s", flush=True)
time.sleep(3)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gpu", type=int, default=0)
    args = p.parse_args()
    t = time.perf_counter()
    result = gpu.preflight([args.gpu])
    print(f"preflight: {result.summary()} ({time.perf_counter() - t:.1f}s)")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        (ws / "probe.py").write_text(INSIDE)
        shell = f"id -u; {sys.executable} probe.py; nvidia-smi -L"
        request = LaunchRequest(
            argv=["/bin/sh", "-c", shell], workdir=ws,
            env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(GUEST.home),
                 "CUDA_VISIBLE_DEVICES": str(args.gpu), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, run_id="gpu-check",
            mounts=[*guest.etc_mounts(), *guest.python_mounts([])], gpus=[args.gpu],
            limits=Limits(processes=4096, open_files=65536),
        )  # fmt: skip
        t = time.perf_counter()
        launched = BwrapSandbox().launch(request)
        time.sleep(2.5)
        util, mem = gpu_sample([args.gpu])
        out, _ = launched.proc.communicate(timeout=300)
        print(out.decode().rstrip())
        print(f"sandbox exit {launched.proc.returncode} after {time.perf_counter() - t:.1f}s")
        print(f"monitor sample of GPU {args.gpu} during the sandbox: util {util}% mem {mem} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
