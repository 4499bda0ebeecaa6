"""Episodes counted by path and outcome, with the calls and tokens each path spent."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controller.agent.episode import Episode, Outcome, Path
from controller.agent.metrics import AgentMetrics


def test_each_episode_counts_under_its_path() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.record(Episode("g", "n", Outcome.RESOLVED, Path.BOUND, "ok", seconds=0.2))
    metrics.record(Episode("g", "n", Outcome.RESOLVED, Path.SYNTHESIZED, "ok", tokens=900,
                           calls=4, seconds=12.0))  # fmt: skip
    metrics.record(Episode("g", "n", Outcome.UNRESOLVED, Path.FAILED, "no", tokens=50, calls=1))

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    assert value("fazai_agent_goals_total", path="bound", outcome="resolved") == 1
    assert value("fazai_agent_goals_total", path="synthesized", outcome="resolved") == 1
    assert value("fazai_agent_goals_total", path="failed", outcome="unresolved") == 1
    assert value("fazai_agent_model_calls_total", path="bound") == 0
    assert value("fazai_agent_model_calls_total", path="synthesized") == 4
    assert value("fazai_agent_tokens_total", path="synthesized") == 900
    assert value("fazai_agent_episode_seconds_count", path="synthesized") == 1
