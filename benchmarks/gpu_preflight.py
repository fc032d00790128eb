"""GPU preflight: the harness's checks on every visible GPU, then what an agent's prompt and
monitor.csv will say on this machine, plus figures.

    python benchmarks/gpu_preflight.py [--classes any] [--no-probe]

First runs `posttrainbench.sandbox.gpu.preflight` on all GPUs nvidia-smi lists and prints the
record the runner stores in run.json, and the time it took; on a machine without GPUs it says so.
Then prints the hardware line the workspace prompt uses, one monitor sample (GPU utilisation and
memory from nvidia-smi), bf16 matmul TFLOP/s, and ptb-tiny train-step and greedy-decode speed on
the GPU. Needs only torch and transformers beyond posttrainbench's core dependencies. Exits 1 if
the preflight refused a GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.sandbox import gpu


def _timed(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    import torch

    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def run_preflight(classes: str | None, probe: bool) -> bool:
    """Preflight of every visible GPU; False if it refused one or could not run."""
    if shutil.which("nvidia-smi") is None:
        print("GPU preflight: no NVIDIA GPU on this machine (nvidia-smi not found); skipped")
        return True
    start = time.perf_counter()
    try:
        gpus = gpu.parse_gpu_list("all")
        result = gpu.preflight(gpus, accepted=classes, probe=probe)
    except gpu.GpuPreflightError as exc:
        print(exc.result.model_dump_json(indent=2))
        print(f"preflight REFUSED after {time.perf_counter() - start:.2f}s: {exc}")
        return False
    except PtbError as exc:
        print(f"GPU preflight could not run after {time.perf_counter() - start:.2f}s: {exc}")
        return False
    print(result.model_dump_json(indent=2))
    print(f"preflight: {result.summary()}; wall {time.perf_counter() - start:.2f}s")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", help=f"accepted GPU classes (default ${gpu.CLASSES_ENV})")
    parser.add_argument("--no-probe", action="store_true", help="skip the allocation probe")
    args = parser.parse_args()
    ok = run_preflight(args.classes, probe=not args.no_probe)
    figures()
    raise SystemExit(0 if ok else 1)


def figures() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrainbench.embedded import tiny_model
    from posttrainbench.sandbox.monitor import Monitor
    from posttrainbench.workspace.builder import hardware_summary

    print(f"prompt hardware line: {hardware_summary()}")
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        sample = Monitor(os.getpid(), Path(tmp), Path(tmp) / "m.csv", 1.0).sample()
        print(f"monitor sample: {sample}")
        if not torch.cuda.is_available():
            return
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        per = _timed(lambda: a @ a, 20)
        print(f"bf16 matmul 8192^3: {2 * 8192**3 / per / 1e12:.0f} TFLOP/s")

        path = tiny_model.ensure_built(Path(tmp) / "models")
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).cuda()
        batch = tok(["Q: What is 12 + 7?\nA: 19"] * 128, return_tensors="pt").to("cuda")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step() -> None:
            loss = model(**batch, labels=batch["input_ids"]).loss
            loss.backward()
            opt.step()
            opt.zero_grad()

        print(f"ptb-tiny train step, batch 128: {1000 * _timed(step, 50):.1f} ms")
        prompt = tok(["Q: What is 12 + 7?\nA:"] * 256, return_tensors="pt").to("cuda")
        model.eval()
        with torch.no_grad():
            per = _timed(lambda: model.generate(**prompt, max_new_tokens=6, do_sample=False,
                                                pad_token_id=tok.eos_token_id), 5)  # fmt: skip
        print(f"ptb-tiny greedy decode, 256 x 6 tokens: {256 * 6 / per:.0f} tokens/s")
        busy = Monitor(os.getpid(), Path(tmp), Path(tmp) / "m.csv", 1.0).sample()
        print(f"monitor sample after work: {busy}")


if __name__ == "__main__":
    main()
