"""Environments the harness gives its children: allow-lists of its variables, never deny-lists.

One `AllowList` type, two lists. The *agent* gets only what it needs to run Python and use the
GPU (PATH, locale, terminal, CUDA/NVIDIA and Hugging Face settings, thread counts); everything
else — `GITHUB_PAT`, `DATABASE_URL`, cloud credentials, provider keys, the harness's own `PTB_*`
settings and cache paths — stays behind. `--pass-env NAME` passes a variable knowingly; that is
recorded in the spec. The *evaluation* subprocess (harness side) also gets HOME, the `PTB_*`
settings and the inspect/vLLM settings, and a judge's key only where the benchmark is judged.
Under an allowed prefix, a name that looks like a credential (`HF_TOKEN`, `PTB_JUDGE_API_KEY`)
never passes; only the exact names of a list do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]  # passed as named (curated: none is a credential)
    prefixes: tuple[str, ...]  # passed unless the name looks like a credential

    def allows(self, name: str) -> bool:
        if name in self.names:
            return True
        return name.startswith(self.prefixes) and not looks_secret(name)

    def environ(self, host: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
        """The variables of `host` this list allows, plus the `extra` names present in it."""
        env = {k: v for k, v in host.items() if self.allows(k)}
        return env | {k: host[k] for k in extra if k in host}


AGENT = AllowList(
    names=frozenset(
        {"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR", "SHELL", "USER",
         "LOGNAME", "TMPDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM",
         "PYTHONIOENCODING", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
         "REQUESTS_CA_BUNDLE"}
    ),
    prefixes=("LC_", "CUDA_", "NVIDIA_", "NCCL_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_",
              "TORCH_", "PYTORCH_"),
)  # fmt: skip
EVALUATION = AllowList(
    names=AGENT.names | {"HOME", "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONUNBUFFERED"},
    prefixes=(*AGENT.prefixes, "PTB_", "VLLM_", "INSPECT_"),
)
# The variables an inspect provider reads its key (and endpoint) from; the judge's model name
# starts with its provider ("openai/gpt-5-mini"). Unknown providers: <PROVIDER>_API_KEY.
PROVIDER_KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_BASE_URL"),
}
JUDGE_KEY_VAR = "PTB_JUDGE_API_KEY"


def agent_environ(host: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The harness variables an agent may see, plus the ones the user passed explicitly."""
    return AGENT.environ(host, pass_env)


def judge_key_vars(judge_model: str | None, judge_base_url: str | None) -> tuple[str, ...]:
    """What the judge reads its key from: PTB_JUDGE_API_KEY, then (with an OpenAI-compatible
    base URL) OPENAI_API_KEY, else its provider's own variables (see evaluate/judge.py)."""
    if judge_base_url:
        return (JUDGE_KEY_VAR, "OPENAI_API_KEY")
    if not judge_model:
        return ()
    provider = judge_model.split("/", 1)[0].lower()
    upper = provider.upper().replace("-", "_")
    return PROVIDER_KEY_VARS.get(provider, (f"{upper}_API_KEY", f"{upper}_BASE_URL"))


def evaluation_environ(
    host: Mapping[str, str],
    *,
    judged: bool,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
) -> dict[str, str]:
    """The harness-side evaluation's environment: no provider key, except the judge's where the
    benchmark is judged."""
    keys = judge_key_vars(judge_model, judge_base_url) if judged else ()
    return EVALUATION.environ(host, keys)
