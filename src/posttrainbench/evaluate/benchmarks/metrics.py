"""Metrics of the judged benchmarks (imported only when their tasks are built: it loads
inspect-ai at import, which metric registration needs for its type hints)."""

from __future__ import annotations

from inspect_ai.scorer import Metric, SampleScore, metric


@metric(name="score")
def battle_mean() -> Metric:
    """Mean over every battle of every sample (Arena-Hard's exploded-battles score)."""

    def compute(scores: list[SampleScore]) -> float:
        battles = [b for s in scores for b in (s.score.metadata or {}).get("battles", [])]
        return sum(battles) / len(battles) if battles else 0.0

    return compute


@metric(name="score")
def clipped_mean() -> Metric:
    """The mean of the samples' values, clipped to [0, 1] (HealthBench)."""

    def compute(scores: list[SampleScore]) -> float:
        values = [float(s.score.as_float()) for s in scores]
        mean = sum(values) / len(values) if values else 0.0
        return min(1.0, max(0.0, mean))

    return compute
