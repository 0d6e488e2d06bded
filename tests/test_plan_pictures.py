"""The Markdown plan's Mermaid diagram and `plan --output` (issue 22).

The diagram is checked structurally here (every node defined once, edges in the steps' order,
gates on the edges, each state marked), and where Mermaid's own browser bundle is at hand
(`.cache/mermaid/mermaid.min.js`, fetched by .ci/run and `make docs-images`) parsed and drawn
by Mermaid itself in headless Chromium. `UPDATE_DOCS_IMAGES=1` rewrites the example in
docs/migrations.md and its picture docs/img/plan.png.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest
from browser_helpers import MERMAID_JS, ROOT, dump_dom, screenshot
from env_helpers import OFF_YAML, ON_YAML, STOCK_UNCONFIRMED_YAML, WriteEnv, run_cli
from plan_helpers import ALL_OFF, ALL_ON, make_env

from reconciler.core.plan import EnvPlan, RunPlan, build_plan
from reconciler.model import ABSENT
from reconciler.render.markdown import render_markdown
from reconciler.render.mermaid import plan_diagram
from reconciler.sandbox import SandboxApp

Sandbox = tuple[SandboxApp, str]
DOCS = ROOT / "docs" / "migrations.md"
DOCS_IMAGE = ROOT / "docs" / "img" / "plan.png"
_NODE = re.compile(r'^  (\w+)(\(\[|\[)"(.*)"(\]\)|\]):::(safe|unsafe)$')
_EDGE = re.compile(r'^  (\w+) -->(?:\|"(.*)"\|)? (\w+)$')


def diagrams(markdown: str) -> list[str]:
    return re.findall(r"^```mermaid\n(.*?)^```$", markdown, re.S | re.M)


def parse(diagram: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str]]]:
    """Nodes (id → label, class) and edges (from, label, to) of one diagram, checking that
    every line is one the renderer means to write."""
    lines = diagram.splitlines()
    assert lines[0] == "flowchart TD"
    nodes: dict[str, tuple[str, str]] = {}
    edges: list[tuple[str, str, str]] = []
    for line in lines[1:]:
        if node := _NODE.match(line):
            assert node[1] not in nodes, f"{node[1]} defined twice"
            assert '"' not in node[3], "a quote would end the label"
            nodes[node[1]] = (node[3], node[5])
        elif edge := _EDGE.match(line):
            assert edge[1] in nodes and edge[3] in nodes, f"an edge to an undefined node: {line}"
            edges.append((edge[1], edge[2] or "", edge[3]))
        else:
            assert line.startswith("  classDef "), f"unexpected line: {line!r}"
    return nodes, edges


def forward() -> EnvPlan:
    return build_plan(make_env(ALL_ON, name="acme-staging"), ALL_OFF)


def test_the_diagram_walks_the_steps_in_order_with_gates_on_edges_and_states_marked() -> None:
    env = forward()
    nodes, edges = parse("\n".join(plan_diagram(env)[1:-1]))

    path = ["live", *(f"s{i}" for i in range(1, len(env.steps) + 1))]
    assert [(a, b) for a, _, b in edges] == list(itertools.pairwise(path))
    for (_, label, _), step in zip(edges, env.steps, strict=True):
        assert nodes[f"s{env.steps.index(step) + 1}"][0].startswith(
            f"{env.steps.index(step) + 1}. {step.setting}: {step.action}"
        )
        for gate in step.gates:
            assert f"gate {gate.name}" in label, "each gate on the edge into its step"
        if not step.gates:
            assert label == ""
    atp = next(i for i, s in enumerate(env.steps) if s.setting == "external_atp")
    assert "gate webhook_probe: checked at apply" in edges[atp][1]
    assert all(cls == "safe" for _, cls in nodes.values()), "a safe plan: every state safe"
    assert nodes[path[-1]][0].endswith("= the desired state")


def test_a_broken_live_state_is_marked_until_the_step_that_repairs_it() -> None:
    # Someone turned external ATP on by hand without the webhook (rule 1) and the new order UI
    # on without the external OMS (rule 3): repaired worst harm first.
    live = {**ALL_ON, "availability_webhook": ABSENT, "external_oms": {"enabled": False}}
    env = build_plan(make_env(ALL_ON, name="acme-eu"), live)
    nodes, _ = parse("\n".join(plan_diagram(env)[1:-1]))

    assert nodes["live"] == ("live state now<br/>⚠ breaks rule 1, rule 2, rule 3", "unsafe")
    marks = [nodes[f"s{i}"] for i in range(1, len(env.steps) + 1)]
    assert marks[0][1] == "unsafe" and "rule 1" not in marks[0][0], "rule 1 repaired first"
    assert marks[-1][1] == "safe"
    assert [s.broken_after for s in env.steps][-1] == ()


def test_labels_are_escaped_for_mermaid() -> None:
    from reconciler.render import mermaid

    assert mermaid._label('a "b" <c> & `d`') == '"a #quot;b#quot; #lt;c#gt; #amp; #96;d#96;"'


def test_the_markdown_plan_keeps_its_step_list_beside_the_diagram() -> None:
    text = render_markdown(RunPlan([forward()]))
    assert len(diagrams(text)) == 1
    steps = text.split("```mermaid", 1)[0]
    assert "1. **external_oms**: update" in steps, "the text list for readers without Mermaid"
    assert text.index("1. **external_oms**") < text.index("```mermaid")
    converged = build_plan(make_env(ALL_OFF, name="acme-calm"), ALL_OFF)
    assert diagrams(render_markdown(RunPlan([converged]))) == [], "no steps, no diagram"


@pytest.fixture
def envs(live_sandbox: Sandbox, write_env: WriteEnv) -> Path:
    _, base = live_sandbox
    write_env("acme-eu", "acme-eu", base, OFF_YAML + STOCK_UNCONFIRMED_YAML)
    return write_env("acme-staging", "acme-staging", base, ON_YAML).parent


def test_plan_writes_its_outputs_from_the_one_plan(envs: Path, tmp_path: Path) -> None:
    out = tmp_path / "review"
    result = run_cli(
        envs,
        "plan",
        "--format",
        "json",
        "--out",
        str(tmp_path / "plan.json"),
        "--output",
        f"markdown={out}/plan.md",
        "--output",
        f"json={out}/plan.json",
        "--output",
        f"text={out}/plan.txt",
    )
    assert result.exit_code == 0, result.output
    assert (out / "plan.json").read_text() == result.stdout == (tmp_path / "plan.json").read_text()
    markdown = (out / "plan.md").read_text()
    (diagram,) = diagrams(markdown)
    nodes, _ = parse(diagram)
    assert len(nodes) == 1 + len(json.loads(result.stdout)["environments"][1]["steps"])
    assert (
        (out / "plan.txt")
        .read_text()
        .rstrip()
        .endswith("Plan: 2 environments, 5 changes, 0 blocked, 0 errors")
    )


def test_plan_has_no_dashboard_or_metrics(envs: Path, tmp_path: Path) -> None:
    result = run_cli(envs, "plan", "--output", f"html={tmp_path}/plan.html")
    assert result.exit_code == 1
    assert "unknown format 'html'; one of text, json, markdown" in result.stderr


def _mermaid_results(diagrams: list[str], work: Path) -> list[dict[str, object]]:
    """Each diagram parsed and drawn by Mermaid itself in the browser."""
    if not MERMAID_JS.is_file():
        pytest.skip(f"Mermaid's browser bundle is not at {MERMAID_JS} (make docs-images)")
    page = work / "mermaid.html"
    page.write_text(
        f"""<!DOCTYPE html><html><body><pre id="out">pending</pre>
<script src="{MERMAID_JS.as_uri()}"></script>
<script>
const diagrams = {json.dumps(diagrams)};
mermaid.initialize({{startOnLoad: false}});
(async () => {{
  const results = [];
  for (const [i, text] of diagrams.entries()) {{
    try {{
      await mermaid.parse(text);
      const {{svg}} = await mermaid.render("d" + i, text);
      results.push({{ok: true, svg: svg.length}});
    }} catch (e) {{ results.push({{ok: false, error: String(e.message || e)}}); }}
  }}
  document.getElementById("out").textContent = "RESULT:" + JSON.stringify(results) + ":END";
}})();
</script></body></html>""",
        encoding="utf-8",
    )
    dom = dump_dom(page, work, budget_ms=30000)
    found = re.search(r"RESULT:(.*?):END", dom, re.S)
    assert found, "Mermaid did not finish"
    import html

    results: list[dict[str, object]] = json.loads(html.unescape(found[1]))
    return results


def test_mermaid_itself_parses_and_draws_every_diagram_of_the_golden_plan(
    tmp_path: Path,
) -> None:
    golden = (ROOT / "tests" / "golden" / "representative.md").read_text(encoding="utf-8")
    found = diagrams(golden)
    assert found
    broken = 'flowchart TD\n  a["x" --> ]]'  # the check can fail
    results = _mermaid_results([*found, broken], tmp_path)
    assert [r["ok"] for r in results] == [True] * len(found) + [False]
    assert all(int(str(r["svg"])) > 1000 for r in results[:-1])


def docs_example() -> str:
    return "\n".join(plan_diagram(forward()))


def test_the_docs_show_the_diagram_the_plan_draws(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    begin, end = "<!-- plan-diagram:begin -->\n", "<!-- plan-diagram:end -->"
    if os.environ.get("UPDATE_DOCS_IMAGES") == "1":
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        DOCS.write_text(f"{head}{begin}{docs_example()}\n{end}{tail}", encoding="utf-8")
        (diagram,) = diagrams(docs_example() + "\n")
        _draw(diagram, tmp_path)
        text = DOCS.read_text(encoding="utf-8")
    assert f"{begin}{docs_example()}\n{end}" in text, "regenerate: make docs-images"
    assert DOCS_IMAGE.is_file() and DOCS_IMAGE.stat().st_size < 200_000


def _draw(diagram: str, work: Path) -> None:
    """docs/img/plan.png: Mermaid's drawing of the example, in the browser."""
    from PIL import Image

    assert MERMAID_JS.is_file(), f"make docs-images fetches Mermaid to {MERMAID_JS} first"

    page = work / "draw.html"
    page.write_text(
        f"""<!DOCTYPE html><html><body style="margin:0;background:#fff"><div id="out"></div>
<script src="{MERMAID_JS.as_uri()}"></script>
<script>
mermaid.initialize({{startOnLoad: false}});
mermaid.render("plan", {json.dumps(diagram)}).then(({{svg}}) => {{
  document.getElementById("out").innerHTML = svg;
}});
</script></body></html>""",
        encoding="utf-8",
    )
    png = work / "plan.png"
    screenshot(page, png, work, width=560, height=900, budget_ms=30000)
    image = Image.open(png).convert("RGB")
    box = Image.eval(image, lambda v: 255 - v).getbbox()
    assert box, "Mermaid drew nothing"
    left, top, right, bottom = box
    cropped = image.crop((max(0, left - 12), max(0, top - 12), right + 12, bottom + 12))
    cropped.quantize(colors=64).save(DOCS_IMAGE, optimize=True)
