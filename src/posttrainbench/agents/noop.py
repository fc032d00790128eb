"""`noop`: submits the base model unchanged — the floor every agent must beat.

Run as `python -m posttrainbench.agents.noop BASE_MODEL_DIR DEST` inside the sandbox; it copies
the base model's safetensors, config and tokenizer files into final_model/.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from posttrainbench.agents.base import Agent, AgentContext, AgentLaunch


class NoopAgent(Agent):
    name = "noop"
    crash = "command_crash"  # a script of ours, not an LLM CLI

    def launch(self, ctx: AgentContext) -> AgentLaunch:
        return AgentLaunch(
            [
                ctx.python,
                "-m",
                "posttrainbench.agents.noop",
                str(ctx.base_model_path),
                "final_model",
            ]
        )


def main(argv: list[str]) -> int:
    src, dest = Path(argv[0]), Path(argv[1])
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("ptb_build.json"))
    print(f"submitted {src} unchanged as {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
