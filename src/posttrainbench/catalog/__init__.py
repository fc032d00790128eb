"""What can be run: registries of base models, benchmarks and agents.

Plug-ins add entries through the entry-point groups `posttrainbench.models`,
`posttrainbench.benchmarks` and `posttrainbench.agents` (values: BaseModelInfo, BenchmarkInfo,
AgentInfo instances).
"""

from __future__ import annotations

from posttrainbench.catalog import agents, benchmarks, models
from posttrainbench.catalog.agents import AgentInfo
from posttrainbench.catalog.benchmarks import BenchmarkInfo
from posttrainbench.catalog.models import BaseModelInfo
from posttrainbench.registry import Registry

MODELS: Registry[BaseModelInfo] = Registry("model", BaseModelInfo)
BENCHMARKS: Registry[BenchmarkInfo] = Registry("benchmark", BenchmarkInfo)
AGENTS: Registry[AgentInfo] = Registry("agent", AgentInfo)

for _m in models.OFFICIAL + models.EMBEDDED:
    MODELS.register(_m.name, _m, aliases=(_m.baseline_key,))
for _b in benchmarks.OFFICIAL + benchmarks.EMBEDDED:
    BENCHMARKS.register(_b.id, _b)
for _a in agents.BUILTIN:
    AGENTS.register(_a.name, _a)

__all__ = ["AGENTS", "BENCHMARKS", "MODELS", "AgentInfo", "BaseModelInfo", "BenchmarkInfo"]
