"""The harness's pristine chat templates, one Jinja file per template family.

The evaluator always applies the family's template named by the base model's catalog entry,
whatever template the submitted tokenizer carries: gains must come from training, not from
prompt engineering (the paper's rule). A family may ship a tool-calling variant
(`<family>-tools.jinja`) used by benchmarks whose items carry tools (BFCL, ptb-v1.0 only). Each
family names the tokens that end an assistant turn; the backends stop generation on them. The
workspace gets a copy of templates/ for the agent to train with.

The official families' files are the reference harness's own templates, byte for byte
(tests/fixtures/reference_templates/SOURCE.md), rendered with no `enable_thinking`, as the
reference leaves it: Qwen3 and SmolLM3 think (Qwen3's prompt ends at `<|im_start|>assistant\n`,
SmolLM3's system block says `/think`, carries the day of the evaluation and, without tools, is
never closed). The model's `<think>…</think>` stays in the answer the scorers read, as in the
reference (no reasoning parser); the stop tokens are unchanged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from posttrainbench.errors import ConfigError

TEMPLATES_DIR = Path(__file__).parent / "templates"


class TemplateFamily(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    stop: tuple[str, ...]  # tokens (strings) that end an assistant turn
    description: str = ""


FAMILIES: dict[str, TemplateFamily] = {
    f.name: f
    for f in (
        TemplateFamily(
            name="qwen3",
            stop=("<|im_end|>", "<|endoftext|>"),
            description="ChatML, thinking on (prompt ends at the assistant header), Hermes tools",
        ),
        TemplateFamily(
            name="smollm3",
            stop=("<|im_end|>", "<|end_of_text|>"),
            description="SmolLM3's ChatML, metadata system block (dated), /think, Hermes tools",
        ),
        TemplateFamily(
            name="gemma3",
            stop=("<end_of_turn>", "<eos>"),
            description=(
                "<bos><start_of_turn>user/model, system folded into the first user turn;"
                " -tools: the reference's tool-calling variant"
            ),
        ),
        TemplateFamily(name="ptb-tiny", stop=(), description="Q:/A: lines (embedded toy model)"),
    )
}


def families() -> list[str]:
    return sorted(FAMILIES)


def family(name: str) -> TemplateFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"no chat template for family {name!r}",
            f"known families: {', '.join(families())}; fix the model's catalog entry",
        ) from None


def template_path(name: str, *, tools: bool = False) -> Path:
    """The family's template file; its tool-calling variant when `tools` and one exists."""
    family(name)
    if tools:
        variant = TEMPLATES_DIR / f"{name}-tools.jinja"
        if variant.is_file():
            return variant
    path = TEMPLATES_DIR / f"{name}.jinja"
    if not path.is_file():
        raise ConfigError(f"the template file of family {name!r} is missing: {path}")
    return path


def read_template(name: str, *, tools: bool = False) -> str:
    return template_path(name, tools=tools).read_text(encoding="utf-8")
