"""The agent's and the evaluation's environments are allow-lists: credentials and harness settings
never pass; the evaluation of a judged benchmark gets its judge's key, and only that."""

import os

import pytest

from posttrainbench.evaluate import launch
from posttrainbench.sandbox.env import agent_environ

HOST = {
    "PATH": "/usr/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "HF_HOME": "/data/hf",
    "HF_TOKEN": "hf_secret",
    "GITHUB_PAT": "ghp_secret",
    "DATABASE_URL": "postgres://u:p@db/x",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "PTB_CACHE": "/home/me/.cache/posttrainbench",
    "XDG_CACHE_HOME": "/home/me/.cache",
    "HOME": "/home/me",
    "WANDB_MODE": "offline",
}


def test_only_allowed_names_pass() -> None:
    env = agent_environ(HOST)
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HOME": "/data/hf",
    }


def test_pass_env_is_explicit_and_only_for_present_names() -> None:
    env = agent_environ(HOST, ["WANDB_MODE", "NOT_SET"])
    assert env["WANDB_MODE"] == "offline" and "NOT_SET" not in env
    assert "GITHUB_PAT" not in env


KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "OPENAI_API_KEY": "sk-openai-secret",
    "GEMINI_API_KEY": "gem-secret",
    "GOOGLE_API_KEY": "goog-secret",
    "HF_TOKEN": "hf_secret",
    "PTB_JUDGE_API_KEY": "judge-secret",
    "GITHUB_PAT": "ghp_secret",
}
EVAL_HOST = {
    "PATH": "/usr/bin",
    "HOME": "/home/me",
    "LANG": "C.UTF-8",
    "TMPDIR": "/scratch",
    "CUDA_VISIBLE_DEVICES": "3",
    "HF_HUB_OFFLINE": "1",
    "PTB_CACHE": "/home/me/.cache/posttrainbench",
    "TOKENIZERS_PARALLELISM": "false",
    **KEYS,
}


def _launch_env(monkeypatch: pytest.MonkeyPatch, benchmark: str, **opts: str) -> dict[str, str]:
    monkeypatch.setattr(os, "environ", dict(EVAL_HOST))
    return launch.evaluation_env(benchmark, launch.EvalOptions(**opts))  # type: ignore[arg-type]


def test_evaluation_of_an_unjudged_benchmark_gets_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _launch_env(monkeypatch, "gsm8k", judge_model="openai/gpt-5-mini")
    assert not set(env) & set(KEYS)
    assert not any(secret in env.values() for secret in KEYS.values())
    assert env == {k: v for k, v in EVAL_HOST.items() if k not in KEYS} | launch.OFFLINE_ENV


def test_evaluation_with_its_gpus_gets_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", dict(EVAL_HOST))
    env = launch.evaluation_env("arith", launch.EvalOptions(), gpus=[1])
    assert not set(env) & set(KEYS) and env["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.parametrize(
    ("benchmark", "opts", "passed"),
    [
        ("healthbench", {"judge_model": "openai/gpt-5-mini"}, {"OPENAI_API_KEY"}),
        ("arenahardwriting", {"judge_model": "anthropic/claude-x"}, {"ANTHROPIC_API_KEY"}),
        ("healthbench", {"judge_model": "google/gemini-x"}, {"GOOGLE_API_KEY", "GEMINI_API_KEY"}),
        (
            "arenahardwriting",
            {"judge_model": "openai/judge", "judge_base_url": "http://127.0.0.1:9/v1"},
            {"PTB_JUDGE_API_KEY", "OPENAI_API_KEY"},
        ),
    ],
)
def test_a_judged_benchmark_gets_only_the_judge_key(
    monkeypatch: pytest.MonkeyPatch, benchmark: str, opts: dict[str, str], passed: set[str]
) -> None:
    env = _launch_env(monkeypatch, benchmark, **opts)
    assert set(env) & set(KEYS) == passed


def test_curated_names_pass_even_when_they_contain_a_secret_word() -> None:
    assert agent_environ({"TOKENIZERS_PARALLELISM": "false"}) == {"TOKENIZERS_PARALLELISM": "false"}
    assert agent_environ({"HF_TOKEN": "x", "CUDA_AUTH": "y"}) == {}
