import json
from pathlib import Path

from posttrainbench.embedded import tiny_model


def test_build_is_deterministic_and_cached(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = tiny_model.ensure_built(tmp_path)
    first = json.loads((tiny_model_dir / "ptb_build.json").read_text())["sha256"]
    second = json.loads((again / "ptb_build.json").read_text())["sha256"]
    assert first == second
    mtime = (again / "model.safetensors").stat().st_mtime
    assert tiny_model.ensure_built(tmp_path) == again
    assert (again / "model.safetensors").stat().st_mtime == mtime


def test_loads_offline_as_qwen3_with_digit_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen3"
    assert [t for t in tok.tokenize("123") if t.strip("Ġ")] == ["1", "2", "3"]
    chat = [{"role": "user", "content": "What is 1 + 2?"}]
    prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert prompt == "Q: What is 1 + 2?\nA:"
