"""Prometheus metrics of the agent, in a registry the caller gives (the API's): goals
ended by each path (the goal's own tool, a retrieved one, a synthesized one, failed)
and outcome, the model calls and tokens each path spent, and how long episodes took."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from controller.agent.episode import Episode

EPISODE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.goals = Counter(
            "fazai_agent_goals",
            "Goals the agent ended, by how (path) and outcome",
            ["path", "outcome"],
            registry=registry,
        )
        self.calls = Counter(
            "fazai_agent_model_calls", "Model calls made by episodes, by path", ["path"],
            registry=registry,
        )  # fmt: skip
        # Not "tokens" in a label or key: the event bus masks values under such names;
        # the metric's name is fine.
        self.spent = Counter(
            "fazai_agent_tokens", "Tokens episodes spent (prompt and answer), by path", ["path"],
            registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "fazai_agent_episode_seconds", "Wall time of one episode", ["path"],
            buckets=EPISODE_BUCKETS, registry=registry,
        )  # fmt: skip

    def record(self, episode: Episode) -> None:
        path = episode.path.value
        self.goals.labels(path, episode.outcome.value).inc()
        self.calls.labels(path).inc(episode.calls)
        self.spent.labels(path).inc(episode.tokens)
        self.seconds.labels(path).observe(episode.seconds)
