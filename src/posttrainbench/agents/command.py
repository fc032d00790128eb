"""`command`: any shell command is the agent (`--agent-cmd "python /agent/my_agent.py"`).

The command runs with bash in the workspace (its working directory: final_model/, timer.sh,
evaluate.py and data/ are there) and gets what it is told on stdin: the task on its first launch,
a re-prompt with the time left on later ones (`--continue-prompts`). `--agent-dir DIR` brings
the user's files: a snapshot of DIR, read-only at /agent in isolating sandboxes ($PTB_AGENT_DIR
names it in every sandbox; see agents.agent_files). PTB_PROMPT_FILE points at the task,
PTB_BASE_MODEL_PATH at the base model's weights, and PTB_LAUNCH numbers the launch (0 first).
A non-zero exit is a `command_crash`, shown with the last lines of the command's stderr.
"""

from __future__ import annotations

from posttrainbench.agents import agent_files
from posttrainbench.agents.base import Agent, AgentContext, AgentLaunch
from posttrainbench.errors import ConfigError
from posttrainbench.records import RunSpec
from posttrainbench.sandbox import isolates


def _require_command(spec: RunSpec) -> None:
    if not (spec.agent_cmd or "").strip():
        raise ConfigError("agent 'command' needs a command to run", f"pass {agent_files.EXAMPLE}")


class CommandAgent(Agent):
    name = "command"
    crash = "command_crash"
    takes_agent_dir = True

    def check(self, spec: RunSpec) -> None:
        """Before the run exists: a command, and its script where the sandbox will see it."""
        _require_command(spec)
        agent_files.check_command(spec, isolates(spec.sandbox) is not False)

    def launch(self, ctx: AgentContext) -> AgentLaunch:
        _require_command(ctx.spec)  # the script was checked at creation, against the originals
        return AgentLaunch(
            ["bash", "-c", ctx.spec.agent_cmd or ""],
            env={"PTB_LAUNCH": str(ctx.continuation)},
            stdin_prompt=True,
        )
