"""The agent's protocol: every action parses to its type, anything else is an
InvalidAction with a short reason, the last turn's schema holds only done, and the
worker can make a grammar of every schema the loop asks for (llama.cpp's converter
drops keywords silently; the worker refuses those, and a refused schema would leave the
model unconstrained)."""

from __future__ import annotations

import json

import pytest
from fazai_native.grammar import grammar_for

from controller.agent import actions


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"action":"plan","steps":["read","fix"]}', actions.Plan),
        ('{"action":"ask","question":"which port?"}', actions.Ask),
        ('{"action":"research","query":"sshd"}', actions.Research),
        ('{"action":"shell","argv":["cat","/etc/hosts"]}', actions.Shell),
        ('{"action":"toolspec","name":"t-1","tool":{"platform":"linux"}}', actions.ToolSpec),
        ('{"action":"usetool","tool":"t-1","params":{"a":1}}', actions.UseTool),
        ('{"action":"observe"}', actions.Observe),
        ('{"action":"commitkb","note":"x"}', actions.CommitKb),
        ('{"action":"done","outcome":"unresolved","summary":"no"}', actions.Done),
    ],
)
def test_each_action_parses_to_its_type_and_renders_back(text: str, kind: type) -> None:
    parsed = actions.parse(text)
    assert isinstance(parsed, kind)
    assert actions.parse(actions.render(parsed)) == parsed
    assert json.loads(actions.render(parsed))["action"] == json.loads(text)["action"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ("[1]", "an action is a JSON object"),
        ('{"action":"rm"}', "'action' must be one of"),
        ('{"action":"shell","argv":[]}', "shell: argv"),
        ('{"action":"shell","argv":["ls"],"sudo":true}', "shell"),
        ('{"action":"usetool","tool":"../x"}', "usetool: tool"),
        ('{"action":"done","outcome":"maybe","summary":"s"}', "done: outcome"),
        ("x" * (actions.MAX_ANSWER_CHARS + 1), "characters long"),
    ],
)
def test_anything_else_is_invalid_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(actions.InvalidAction, match=why.replace("(", r"\(")):
        actions.parse(text)


def test_on_the_last_turn_only_done_is_allowed() -> None:
    with pytest.raises(actions.InvalidAction, match="not allowed now; allowed: done"):
        actions.parse('{"action":"observe"}', ("done",))
    only = actions.schema(("done",))
    assert "oneOf" not in only and only["properties"]["action"] == {"const": "done"}


def test_the_worker_makes_a_grammar_of_every_schema_the_loop_asks_for() -> None:
    grammar_for(actions.schema())
    for name in actions.NAMES:
        grammar_for(actions.schema((name,)))


def test_commands_the_policy_stage_sees() -> None:
    shell = actions.parse('{"action":"shell","argv":["grep","-q","a b","/etc/x"]}')
    assert actions.command(shell) == "shell grep -q 'a b' /etc/x"
    use = actions.parse('{"action":"usetool","tool":"t","params":{"b":2,"a":1}}')
    assert actions.command(use) == 'usetool t {"a":1,"b":2}'
    assert actions.command(actions.parse('{"action":"observe"}')) is None
