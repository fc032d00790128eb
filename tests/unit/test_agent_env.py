"""The agent's environment is an allow-list: credentials and harness settings never pass."""

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
