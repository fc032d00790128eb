"""`ptb-tiny`: a small Qwen3-architecture base model built offline and deterministically.

The tokenizer is a byte-level BPE trained on local text (the Debian licence files, which every
Debian machine has) with digits split one per token, as Qwen's tokenizer does. The weights are
randomly initialised from a fixed seed: the model is a "base" model that knows nothing, so any
gain on `arith` is the agent's doing. Built once into the cache; the build is atomic (a temporary
folder renamed into place) and its content hash is recorded in `ptb_build.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAME = "ptb-tiny"
BUILD_VERSION = 3  # v2 records a digest of every file; v3 decodes greedily (temperature 0)
BUILD_INFO = "ptb_build.json"
EOS = "<|endoftext|>"
CORPUS_DIR = Path("/usr/share/common-licenses")
# Always part of the corpus so every character the toy benchmark needs is in the vocabulary.
SEED_TEXT = "Q: What is 12 + 34?\nA: 46\nQ: What is 70 - 9?\nA: 61\n0123456789 +-*/=?.,:\n"
VOCAB_SIZE = 1024
ARCH: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def model_dir(models_root: Path) -> Path:
    return models_root / f"{NAME}-v{BUILD_VERSION}"


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != BUILD_INFO
    }


def verify(folder: Path) -> str | None:
    """None when every file matches the digests recorded at build time, else what differs."""
    try:
        recorded = json.loads((folder / BUILD_INFO).read_text())["files"]
        actual = _digests(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable build record: {exc}"
    changed = sorted(n for n in recorded.keys() | actual.keys() if recorded.get(n) != actual.get(n))
    return f"files differ from the build record: {', '.join(changed)}" if changed else None


def _readable(folder: Path) -> None:
    """A base model is read by sandboxed agents under another uid: world-readable, like the
    Hugging Face cache (safetensors writes its files 0600)."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mode & 0o644 != 0o644:
            path.chmod(0o644)


def ensure_built(models_root: Path) -> Path:
    """Return the built model folder, (re)building it if the cache lacks it or it was altered."""
    dest = model_dir(models_root)
    if (dest / BUILD_INFO).is_file():
        problem = verify(dest)
        if problem is None:
            _readable(dest)
            return dest
        log.warning("rebuilding %s: %s", dest, problem)
        aside = dest.with_name(f".{dest.name}.altered-{os.getpid()}")
        dest.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    models_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=models_root))
    try:
        build(tmp)
        _readable(tmp)
        if dest.exists():  # a concurrent build won the race; keep theirs
            shutil.rmtree(tmp)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _corpus() -> list[str]:
    files = sorted(p for p in CORPUS_DIR.glob("*") if p.is_file()) if CORPUS_DIR.is_dir() else []
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    return [SEED_TEXT * 50, *texts]


def build_tokenizer(  # type: ignore[no-untyped-def]
    corpus: list[str] | None = None, vocab_size: int = VOCAB_SIZE
):
    """The tiny model's byte-level BPE (digits one by one), trained on `corpus` (default: the
    shipped one) up to `vocab_size` tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from posttrainbench.evaluate.chat_templates import read_template

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() if corpus is None else corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        bos_token=None,
        padding_side="left",
        model_max_length=ARCH["max_position_embeddings"],
        chat_template=read_template(NAME),
    )


def build(dest: Path) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        **ARCH,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = eos_id
    model.save_pretrained(dest, safe_serialization=True)
    gen = dest / "generation_config.json"  # greedy by its own config (evaluated once); written
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "temperature": 0.0}, indent=2))
    tokenizer.save_pretrained(dest)
    files = _digests(dest)
    info = {"name": NAME, "build_version": BUILD_VERSION, "files": files, "arch": ARCH}
    (dest / BUILD_INFO).write_text(json.dumps(info, indent=2))
