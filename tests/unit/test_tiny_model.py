import json
from pathlib import Path

from posttrainbench.embedded import tiny_model


def test_build_is_deterministic_and_cached(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = tiny_model.ensure_built(tmp_path)
    first = json.loads((tiny_model_dir / "ptb_build.json").read_text())["files"]
    second = json.loads((again / "ptb_build.json").read_text())["files"]
    assert first == second and "model.safetensors" in first and "tokenizer.json" in first
    mtime = (again / "model.safetensors").stat().st_mtime
    assert tiny_model.ensure_built(tmp_path) == again
    assert (again / "model.safetensors").stat().st_mtime == mtime


def test_an_altered_cached_model_is_rebuilt(tiny_model_dir: Path, tmp_path: Path) -> None:
    built = tiny_model.ensure_built(tmp_path)
    pristine = (built / "model.safetensors").read_bytes()
    with (built / "model.safetensors").open("r+b") as f:  # what an agent on `host` could do
        f.seek(len(pristine) // 2)
        f.write(b"\x00" * 64)
    assert tiny_model.verify(built) is not None
    assert tiny_model.ensure_built(tmp_path) == built
    assert (built / "model.safetensors").read_bytes() == pristine
    assert tiny_model.verify(built) is None


def test_loads_offline_as_qwen3_with_digit_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen3"
    assert [t for t in tok.tokenize("123") if t.strip("Ġ")] == ["1", "2", "3"]
    chat = [{"role": "user", "content": "What is 1 + 2?"}]
    prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert prompt == "Q: What is 1 + 2?\nA:"
