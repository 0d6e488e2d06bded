"""An environment's migration path as a Mermaid flowchart, for the Markdown plan (GitHub and
GitLab draw it in a PR comment; elsewhere it stays readable text beside the step list).

    live state ──▶ 1. external_oms: update ──gate webhook_probe──▶ 2. external_atp: update
    (breaks rule 2)   (safe after it)                              (safe after it)

One node per state: the live state, then the state after each step in the plan's order, each
marked safe (no safety rule broken) or with the rules it still breaks (`Step.broken_after`: a
broken live state is repaired step by step, worst harm first). Each edge is a step's write and
carries the gates (the webhook probe among them) that run right before it. The labels hold only
words of the tool's own (setting, action and gate names, rule numbers), never a value from a
file or from NewStore, and are escaped all the same.
"""

from __future__ import annotations

from typing import Final

from reconciler.core.plan import EnvPlan
from reconciler.render._format import gate_state
from reconciler.rules import RULES

_RULE_NUMBERS: Final = {rule.id: rule.number for rule in RULES}
_ESCAPES: Final = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
_CLASSES: Final = (
    "classDef safe fill:#dafbe1,stroke:#1a7f37,color:#0f5323",
    "classDef unsafe fill:#ffebe9,stroke:#cf222e,color:#82071e,stroke-width:2px",
)


def _text(words: str) -> str:
    """Mermaid's entity codes for what would end a quoted label or open HTML."""
    return "".join(_ESCAPES.get(ch, ch) for ch in words)


def _label(*lines: str) -> str:
    return '"' + "<br/>".join(_text(line) for line in lines) + '"'


def _state(broken: list[int] | tuple[int, ...]) -> tuple[str, str]:
    """The mark of a state and its class."""
    if not broken:
        return "✓ safe", "safe"
    rules = ", ".join(f"rule {n}" for n in broken)
    return f"⚠ breaks {rules}", "unsafe"


def plan_diagram(env: EnvPlan) -> list[str]:
    """The ```mermaid block (its lines) of `env`'s steps; [] when it has none."""
    if not env.steps:
        return []
    mark, cls = _state([_RULE_NUMBERS[rule_id] for rule_id in env.live_rules])
    lines = ["```mermaid", "flowchart TD", f"  live([{_label('live state now', mark)}]):::{cls}"]
    previous = "live"
    for number, step in enumerate(env.steps, 1):
        node = f"s{number}"
        mark, cls = _state(step.broken_after)
        title = f"{number}. {step.setting}: {step.action}"
        last = ("= the desired state",) if number == len(env.steps) else ()
        lines.append(f"  {node}[{_label(title, f'then {mark}', *last)}]:::{cls}")
        gates = [f"gate {gate.name}: {gate_state(gate)}" for gate in step.gates]
        edge = f"-->|{_label(*gates)}|" if gates else "-->"
        lines.append(f"  {previous} {edge} {node}")
        previous = node
    return [*lines, *(f"  {c}" for c in _CLASSES), "```"]
