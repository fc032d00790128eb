"""The `vllm` backend against a local OpenAI-compatible server standing in for `vllm serve`:
the harness's requests (model, max_tokens, per-sample seeds, greedy) and a perfect score from a
server that answers right."""

import json
import re
import shutil
from pathlib import Path

from posttrainbench.evaluate.run import evaluate_model
from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply, Seen, chat_json

_SUM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")


def _answer(seen: Seen) -> Reply:
    body = seen.json()
    text = body["messages"][-1]["content"]
    if isinstance(text, list):
        text = " ".join(part.get("text", "") for part in text)
    a, op, b = _SUM.search(text).groups()  # type: ignore[union-attr]
    value = int(a) + int(b) if op == "+" else int(a) - int(b)
    return Reply(
        chunks=[chat_json(str(value), model=body["model"], input_tokens=9, output_tokens=2)]
    )


def test_vllm_backend_against_a_running_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    with FakeUpstream() as server:
        server.handler = _answer
        m = evaluate_model(
            tiny_model_dir, "arith", tmp_path / "eval", limit=6, template_family="ptb-tiny",
            backend="vllm", base_url=f"{server.url}/v1", seed=7,
        )  # fmt: skip
    chats = [s.json() for s in server.seen if s.path.endswith("/chat/completions")]
    assert m.score == 1.0 and m.n_samples == 6 and m.backend == "vllm"
    assert m.params["server"] == f"{server.url}/v1" and m.params["template_applied_by"] == "server"
    assert len(chats) == 6
    assert {c["model"] for c in chats} == {str(tiny_model_dir)}
    assert all(c["max_tokens"] == 6 for c in chats)
    assert all(c["temperature"] == 0 for c in chats)  # greedy said out loud
    seeds = [c["seed"] for c in chats]
    assert len(set(seeds)) == 6  # one seed per sample, never a shared one
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["seed"] == 7


def test_vllm_requests_stop_at_the_familys_end_of_turn_ids(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """vLLM stops only at the tokenizer's EOS by itself: every request names the family's
    end-of-turn tokens the base tokenizer has, alongside the task's own extras."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab()
    hot = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, hot)
    (hot / "generation_config.json").write_text(json.dumps({"temperature": 0.7, "top_k": 20}))
    with FakeUpstream() as server:
        server.handler = _answer
        evaluate_model(
            hot, "arith", tmp_path / "eval", limit=3, template_family="qwen3",
            backend="vllm", base_url=f"{server.url}/v1", tokenizer_dir=tiny_model_dir,
        )  # fmt: skip
    chats = [s.json() for s in server.seen if s.path.endswith("/chat/completions")]
    assert len(chats) == 3
    # qwen3's stop tokens: <|im_end|> (not in the tiny vocabulary) and <|endoftext|>
    assert all(c["stop_token_ids"] == [vocab["<|endoftext|>"]] for c in chats)
    assert all(c["top_k"] == 20 for c in chats)  # the task's extras kept
