"""Evaluation with the harness's own code: inspect-ai tasks run on a model folder.

`evaluate_model` (in `run`) is the one implementation; `python -m posttrainbench.evaluate` wraps
it for the workspace's evaluate.py and for the harness's isolated evaluation subprocess.
"""
