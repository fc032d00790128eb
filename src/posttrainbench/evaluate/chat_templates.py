"""The harness's pristine chat templates, one Jinja file per template family.

The evaluator applies the family's template when a submitted model's tokenizer has none; the
workspace gets a copy under templates/ for the agent to train with.
"""

from __future__ import annotations

from pathlib import Path

from posttrainbench.errors import ConfigError

TEMPLATES_DIR = Path(__file__).parent / "templates"


def families() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def template_path(family: str) -> Path:
    path = TEMPLATES_DIR / f"{family}.jinja"
    if not path.is_file():
        raise ConfigError(
            f"no chat template for family {family!r}",
            f"known families: {', '.join(families())}; fix the model's catalog entry",
        )
    return path


def read_template(family: str) -> str:
    return template_path(family).read_text(encoding="utf-8")
