"""Start-up overhead of each runnable sandbox backend: median wall time of launching `true`.

    python benchmarks/sandbox_overhead.py [--repeat 20]

Launches through the backend's real `launch` (mounts of the agent environment, /etc, a model
folder, limits; no bridges), waits for the exit, and prints the median and p90 per backend.
A backend that cannot run here is listed with the reason.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.sandbox import SANDBOXES, get_sandbox, guest
from posttrainbench.sandbox.base import GUEST, LaunchRequest, Limits


def request(root: Path, image: str | None) -> LaunchRequest:
    ws = root / "ws"
    ws.mkdir(exist_ok=True)
    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    sandbox_mounts = [*guest.etc_mounts(), *guest.python_mounts([Path.home() / ".cache"])]
    sandbox_mounts += guest.model_mounts(model, GUEST.model)
    return LaunchRequest(
        argv=["true"], workdir=ws, env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, run_id="overhead", mounts=sandbox_mounts,
        limits=Limits(processes=4096, open_files=65536), image=image,
    )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--image", default=None, help="image for docker/podman")
    args = p.parse_args()
    for name, _cls in SANDBOXES:
        try:
            sandbox = get_sandbox(name)
        except PtbError as exc:
            print(f"{name:10} not runnable here: {exc.message}")
            continue
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            req = request(Path(tmp), args.image)
            try:
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    launched = sandbox.launch(req)
                    launched.proc.wait(timeout=120)
                    times.append(time.perf_counter() - start)
                    if launched.sandbox_id:
                        sandbox.stop(launched.sandbox_id, 5)
            except PtbError as exc:
                print(f"{name:10} not runnable here: {exc.message}")
                continue
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        median = statistics.median(times) * 1000
        print(f"{name:10} median {median:7.1f} ms  p90 {p90 * 1000:7.1f} ms  ({len(times)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
