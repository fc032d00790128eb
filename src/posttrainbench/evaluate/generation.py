"""Sampling as the reference's vLLM takes it from the submitted model's own generation config.

The reference's final evaluation sets no temperature, so vLLM (`--generation-config auto`, its
default) falls back to the model's `generation_config.json` (else `config.json`), keeps the values
that differ from transformers' defaults (`GenerationConfig.to_diff_dict`) among `temperature`,
`top_p`, `top_k`, `min_p`, `repetition_penalty` (and `max_new_tokens`, which every request
overrides with its own `max_tokens`), and fills the rest with its own neutral defaults: temperature
1.0, so a model whose file does not set one samples. `do_sample` is not read (vLLM ignores it).
A model decodes greedily when its temperature is below vLLM's epsilon (`is_greedy`), which is what
the reference checks to evaluate such a model once (src/utils/default_temperature.py).

The file is agent-controlled: it is parsed as JSON with a size cap and never executed; only the
allow-listed fields are taken. An unreadable or malformed file (not JSON, not an object) is
treated as absent, as transformers' loader turns it into the OSError that vLLM treats as "no
generation config"; an allow-listed field of the wrong type or range is ignored and named.
Everything used and ignored is recorded in metrics.json (`SamplingDefaults`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from posttrainbench.records import SamplingDefaults

GENERATION_CONFIG = "generation_config.json"
MODEL_CONFIG = "config.json"
MAX_BYTES = 1 << 20
SAMPLING_EPS = 1e-5  # vLLM's _SAMPLING_EPS: a lower temperature decodes greedily
ALLOWED = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
# transformers' GenerationConfig defaults (4.x, the reference's container): to_diff_dict drops a
# field equal to these, so vLLM's own default applies instead (top_k 50 → no top-k at all)
HF_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "repetition_penalty": 1.0,
}
# Fields that are not sampling but that transformers writes into every file: not worth a note
_BOOKKEEPING = frozenset(
    {"_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id"}
)


def is_greedy(temperature: float) -> bool:
    """The one greedy test: vLLM decodes greedily below its sampling epsilon."""
    return temperature < SAMPLING_EPS


def _valid(name: str, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    if name == "top_k":
        return isinstance(value, int) and value >= -1
    if name == "temperature":
        return value >= 0
    if name in ("top_p",):
        return 0 < value <= 1
    if name == "min_p":
        return 0 <= value <= 1
    return value > 0  # repetition_penalty


def _read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The file's JSON object, or (None, why it is treated as absent)."""
    try:
        if path.is_symlink() or not path.is_file():
            return None, None
        if path.stat().st_size > MAX_BYTES:
            return None, f"{path.name} is over {MAX_BYTES} bytes"
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path.name}: {type(exc).__name__}"
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        return None, f"{path.name} is not valid JSON ({str(exc).splitlines()[0][:80]})"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def model_sampling(model_dir: Path) -> SamplingDefaults:
    """The sampling the reference's vLLM would use for the model in `model_dir`."""
    notes: list[str] = []
    data, why = _read_object(model_dir / GENERATION_CONFIG)
    source = GENERATION_CONFIG
    if why:
        notes.append(f"{why}; treated as absent")
    if data is None:
        data, why = _read_object(model_dir / MODEL_CONFIG)
        source = MODEL_CONFIG
        if why:
            notes.append(why)
        picked = {k: v for k, v in (data or {}).items() if k in ALLOWED}
        ignored: list[str] = []  # config.json's other keys describe the model, not sampling
        if not picked:
            source = "none"
    else:
        picked = {k: v for k, v in data.items() if k in ALLOWED}
        ignored = sorted(k for k in data if k not in ALLOWED and k not in _BOOKKEEPING)
    values: dict[str, Any] = {}
    used: list[str] = []
    for name in ALLOWED:
        if name not in picked:
            continue
        value = picked[name]
        if not _valid(name, value):
            ignored.append(name)
            notes.append(f"{name}={json.dumps(value)[:40]} is not a valid value; ignored")
        elif HF_DEFAULTS.get(name) == value:
            used.append(name)  # read, and equal to the default vLLM drops it for
            if name == "top_k":
                notes.append("top_k=50 is transformers' default: vLLM applies no top-k")
        else:
            used.append(name)
            values[name] = float(value) if name != "top_k" else int(value)
    defaults = SamplingDefaults(
        source=source, used=used, ignored=ignored, note="; ".join(notes) or None
    )
    sampling = defaults.model_copy(update=values)
    sampling.greedy = is_greedy(sampling.temperature)
    return sampling


def request_extras(s: SamplingDefaults) -> dict[str, float | int]:
    """What an OpenAI-compatible vLLM request carries beyond temperature and top_p (vLLM's
    extra sampling parameters), only where they differ from vLLM's neutral defaults."""
    extra: dict[str, float | int] = {}
    if s.top_k > 0:
        extra["top_k"] = s.top_k
    if s.min_p > 0:
        extra["min_p"] = s.min_p
    if s.repetition_penalty != 1.0:
        extra["repetition_penalty"] = s.repetition_penalty
    return extra
