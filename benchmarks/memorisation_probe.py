"""Calibrate the memorisation probe: tiny models trained on the test items (contaminated) and on
other problems of the same style (clean), on GSM8K- and HumanEval-shaped fixtures, through the
real benchmark code (hub-cache fixtures) and the probe's own items and scorer.

    python benchmarks/memorisation_probe.py [--steps 600] [--n 64]

Prints, per benchmark and model: n, mean gaps (final, base), the score (final − base per item),
the bound (max(BOUNDS[benchmark], Z·se)) and the margin score − bound (positive: beyond the
bound), and the seconds training and probing took on this machine's CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.evaluate.chat_templates import read_template
from posttrainbench.integrity import memorisation

if TYPE_CHECKING:
    from posttrainbench.integrity.memorisation import ProbeItem

GSM8K_REVISION = "cc7b047b6e5bb11b4f1af84efc572db110a51b3c"


def humaneval_texts(items: list[ProbeItem]) -> list[str]:
    return [i.prompt + i.answer for i in items]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--n", type=int, default=memorisation.N_ITEMS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fixtures import memorised
    from tests.fixtures.code_data import write_humaneval
    from tests.fixtures.hub import hf_home, write_snapshot
    from tests.fixtures.models import build_family_model
    from tests.fixtures.wordproblems import TEST_ITEMS, TRAIN_ITEMS

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hf = root / "hf"
        with hf_home(hf):
            _, base = build_family_model(hf, "qwen3")
            write_snapshot(
                hf,
                "openai/gsm8k",
                {
                    "main/test-00000-of-00001.parquet": TEST_ITEMS,
                    "main/train-00000-of-00001.parquet": TRAIN_ITEMS,
                },
                revision=GSM8K_REVISION,
            )
            write_humaneval(hf)
            template = read_template("qwen3")
            gsm = memorisation.probe_items(BENCHMARKS.get("gsm8k").implementation(), args.n)
            he_all = memorisation.probe_items(BENCHMARKS.get("humaneval").implementation(), 164)
            he, he_other = he_all[: args.n], he_all[args.n :]
            cases = {
                "gsm8k": (gsm, memorised.CONTAMINATED_TEXTS, memorised.CLEAN_TEXTS),
                "humaneval": (he, humaneval_texts(he), humaneval_texts(he_other)),
            }
            head = ("benchmark", "model", "n", "gap", "base", "score", "bound", "margin")
            print(*head, "train_s", "probe_s", sep="\t")
            for bench, (items, dirty, clean) in cases.items():
                for label, texts in (("contaminated", dirty), ("clean", clean)):
                    start = time.monotonic()
                    folder = memorised.train(base, texts, root / bench / label, steps=args.steps)
                    trained = time.monotonic() - start
                    start = time.monotonic()
                    floor = memorisation.BOUNDS[bench]
                    fig = memorisation.probe(folder, base, None, items, template, floor)
                    probed = time.monotonic() - start
                    figures = (fig.gap, fig.base_gap, fig.score, fig.bound, fig.score - fig.bound)
                    print(bench, label, fig.n, *(f"{x:+.3f}" for x in figures), sep="\t", end="\t")
                    print(f"{trained:.1f}\t{probed:.1f}", flush=True)


if __name__ == "__main__":
    main()
