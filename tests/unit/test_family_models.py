"""Each official family's tiny model from the hub cache through the real evaluation: the family
template applied, Gemma 3's multimodal checkpoint generating from text, the sampling of
generation_config.json applied and seeded (the same seed samples the same outputs)."""

from pathlib import Path

import pytest

from posttrainbench.evaluate.hf_backend import auto_model_class
from posttrainbench.evaluate.run import evaluate_model
from posttrainbench.evaluate.targets import resolve
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import write_gsm8k
from tests.fixtures.models import build_family_model


@pytest.mark.parametrize("family", ["qwen3", "smollm3", "gemma3"])
def test_family_model_evaluates_offline(family: str, tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log

    with hf_home(tmp_path / "hf"):
        repo, _ = build_family_model(tmp_path / "hf", family)
        write_gsm8k(tmp_path / "hf")
        target = resolve(repo)  # the catalog names the family; the path is the cache's
        assert target.family == family and target.key == repo.rsplit("/", 1)[-1]
        runs = []
        for name in ("a", "b"):
            m = evaluate_model(
                target.path, "gsm8k", tmp_path / name, limit=2, template_family=family,
                max_tokens=8,
            )  # fmt: skip
            assert m.n_samples == 2 and m.log_file
            assert m.sampling and m.sampling.temperature == 0.6 and not m.sampling.greedy
            log = read_eval_log(m.log_file.removeprefix("file://"))
            runs.append([s.output.completion for s in log.samples or []])
    assert runs[0] == runs[1]  # seeded sampling (temperature 0.6 from generation_config.json)
    if family == "gemma3":
        assert auto_model_class(target.path) == "AutoModelForImageTextToText"
