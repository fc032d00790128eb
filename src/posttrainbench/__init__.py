"""posttrainbench: how well can an LLM agent post-train an LLM on its own?

The public surface is the `ptb` CLI (`posttrainbench.cli`), the records in
`posttrainbench.records`, and the registries in `posttrainbench.catalog`.
"""

__version__ = "0.1.0"
