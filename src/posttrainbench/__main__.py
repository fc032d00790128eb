"""`python -m posttrainbench` is the `ptb` CLI."""

from posttrainbench.cli import main

main()
