"""`recipe`: the built-in reference agent — supervised fine-tuning on the public training split.

It is a real agent in the harness's sense: launched in the sandbox, it reads the workspace (data/,
timer.sh, evaluate.py) and leaves final_model/. The training itself is
`posttrainbench.embedded.recipe_train`.
"""

from __future__ import annotations

from posttrainbench.agents.base import Agent, AgentContext, AgentLaunch
from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import ConfigError
from posttrainbench.records import RunSpec


class RecipeAgent(Agent):
    name = "recipe"
    crash = "command_crash"  # a script of ours, not an LLM CLI

    def check(self, spec: RunSpec) -> None:
        if BENCHMARKS.get(spec.benchmark).public_data is None:
            raise ConfigError(
                f"agent 'recipe' needs a public training split; {spec.benchmark} has none",
                "use --benchmark arith, or an LLM agent that finds its own data",
            )

    def launch(self, ctx: AgentContext) -> AgentLaunch:
        return AgentLaunch(
            [
                ctx.python,
                "-m",
                "posttrainbench.embedded.recipe_train",
                "--base-model",
                str(ctx.base_model_path),
                "--seed",
                str(ctx.spec.seed),
            ]
        )
