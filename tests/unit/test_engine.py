"""The continuous-batching engine against `generate` on a tiny random Qwen3 (fp32, CPU)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from posttrainbench.evaluate.engine import Engine, Request, supports  # noqa: E402

VOCAB = 128


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        initializer_range=0.2,  # peaked logits: no near-ties for argmax
        tie_word_embeddings=False,
    )
    m = transformers.Qwen3ForCausalLM(config).eval()
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    return m


def prompts(n: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 17, 9, 30, 1, 12, 25, 6][:n]
    return [torch.randint(1, VOCAB, (k,), generator=g).tolist() for k in lengths]


def reference(model, prompt: list[int], new: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False
        )
    return out[0, len(prompt) :].tolist()


def test_supports(model) -> None:
    assert supports(model) is None
    assert "model type" in (supports(object()) or "")


def test_greedy_matches_generate_and_is_batch_invariant(model) -> None:
    ps = prompts(8)
    news = [12, 5, 20, 8, 15, 3, 10, 7]  # different lengths: slots leave and refill
    want = [reference(model, p, n) for p, n in zip(ps, news, strict=True)]
    reqs = [Request(p, n) for p, n in zip(ps, news, strict=True)]
    for slots in (1, 3, 8):
        got = Engine(model, slots=slots, max_len=64).generate(reqs)
        assert got == want, f"slots={slots}"
    # the same request alone, and among others in another order
    alone = Engine(model, slots=4, max_len=64).generate([reqs[2]])
    assert alone == [want[2]]
    mixed = Engine(model, slots=2, max_len=64).generate(reqs[::-1])
    assert mixed == want[::-1]


def test_stop_token(model) -> None:
    p = prompts(1)[0]
    free = reference(model, p, 10)
    stop = free[4]
    first = free.index(stop)
    (got,) = Engine(model, slots=2, max_len=64).generate([Request(p, 10, stop_token_ids=(stop,))])
    assert got == free[: first + 1]
    assert len(Engine(model, slots=2, max_len=64).generate([Request(p, 1)])[0]) == 1


def test_seeded_sampling_reproducible(model) -> None:
    ps = prompts(4)

    def run(seed: int, slots: int) -> list[list[int]]:
        reqs = [
            Request(p, 12, temperature=0.9, top_p=0.9, top_k=50, seed=seed + i)
            for i, p in enumerate(ps)
        ]
        return Engine(model, slots=slots, max_len=64).generate(reqs)

    a = run(7, 2)
    assert a == run(7, 2)
    assert a == run(7, 4)  # per-request generators: independent of the batch
    assert a != run(8, 2)


def test_rejects_too_long(model) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        Engine(model, slots=1, max_len=8).generate([Request([1, 2, 3], 6)])


def test_top_k_one_is_greedy(model) -> None:
    ps = prompts(3)
    greedy = Engine(model, slots=2, max_len=64).generate([Request(p, 8) for p in ps])
    sampled = Engine(model, slots=2, max_len=64).generate(
        [Request(p, 8, temperature=1.3, top_k=1, seed=3) for p in ps]
    )
    assert sampled == greedy
