"""The seven PostTrainBench benchmarks as inspect-ai tasks, one module each (see base.py)."""
