"""The HTML dashboard (`drift --output html=PATH`, issue 22): parsed with a real HTML parser,
opened in a real headless Chromium (screenshot and DOM), with hostile names and messages.

`UPDATE_DOCS_IMAGES=1` also writes docs/img/dashboard.png, the README's screenshot, from the
same browser (`make docs-images`); otherwise nothing is written outside the temporary dirs.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser_helpers import ROOT, dump_dom, screenshot
from drift_helpers import STATUSES, fleet
from env_helpers import WriteEnv, run_cli
from PIL import Image
from plan_helpers import ALL_OFF, ALL_ON, WEBHOOK_A, make_env
from test_drift_outputs import page_text

from reconciler.core.drift import DriftReport, DriftStatus, drift_of
from reconciler.core.drift_state import DriftState, EnvState, drift_shape, with_history
from reconciler.core.plan import EnvPlan, Status, build_plan
from reconciler.provenance import ConfigCommit
from reconciler.render.dashboard import render_dashboard
from reconciler.sandbox import SandboxApp

Sandbox = tuple[SandboxApp, str]
DOCS_IMAGE = ROOT / "docs" / "img" / "dashboard.png"
WHEN = datetime(2025, 6, 2, 5, 17, tzinfo=UTC)
HOSTILE_NAME = '"><img src=x onerror=alert(1)>'
HOSTILE_KEY = '<script>alert("pwned")</script>'
# The colours the page shows each status in (beside its words).
COLOURS = {
    "unhealthy": (0xCF, 0x22, 0x2E),
    "in_sync": (0xDA, 0xFB, 0xE1),
    "drift": (0xFF, 0xF8, 0xC5),
    "error": (0x6E, 0x40, 0xC9),
}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def sample_report() -> DriftReport:
    """Five environments of a retailer, one per status, made by the real planner; the
    README's screenshot."""
    hand_off = {**ALL_ON, "external_oms": {"enabled": False}}
    prod = build_plan(make_env(ALL_ON, name="acme-us-prod"), hand_off)
    prod = dataclasses.replace(
        prod,
        unhealthy=[
            "the live webhook failed the probe: webhook probe to "
            "https://atp.acme.example/availabilities: answered 401, expected 200 "
            "(the webhook refused the api_key)"
        ],
        probe="failed: answered 401",
    )
    staging = build_plan(
        make_env(ALL_ON, name="acme-us-staging"),
        {**ALL_ON, "availability_webhook": {**WEBHOOK_A, "timeout": 30}},
    )
    back = build_plan(make_env(ALL_OFF, name="acme-eu-prod"), ALL_ON)
    calm = build_plan(make_env(ALL_OFF, name="acme-ca-prod"), ALL_OFF)
    gone = EnvPlan(
        "acme-uk-prod",
        "acme-uk-prod",
        Status.ERROR,
        error="[acme-uk-prod] the token endpoint refused the client credentials (POST "
        "/auth/realms/acme-uk-prod/protocol/openid-connect/token answered 401). Request id: "
        "req-7f3a",
    )
    healthy = dataclasses.replace(
        staging,
        probe="passed: 1 product at 1 location",
        uncompared_secrets=["availability_webhook.api_key"],
    )
    report = DriftReport(
        [drift_of(p) for p in (calm, healthy, back, prod, gone)],
        checked_at=WHEN,
        config_commit=ConfigCommit("3f2c9a1b0d4e5f60718293a4b5c6d7e8f9a0b1c2", dirty=False),
        run_url="https://github.com/acme/newstore-config/actions/runs/4242",
    )
    shapes = {env.name: drift_shape(env) for env in report.environments}
    before = DriftState(
        {
            "acme-ca-prod": EnvState(
                DriftStatus.IN_SYNC, shapes["acme-ca-prod"], datetime(2025, 5, 1, tzinfo=UTC)
            ),
            "acme-us-prod": EnvState(DriftStatus.DRIFT, "", datetime(2025, 6, 1, tzinfo=UTC)),
        },
        last_success_at=datetime(2025, 6, 1, 5, 17, tzinfo=UTC),
    )
    return with_history(report, before)


def test_every_status_in_words_worst_first_and_self_contained() -> None:
    html = render_dashboard(sample_report())
    shown, _ = page_text(html)

    rows = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    order = [
        name
        for name in (
            "acme-us-prod",
            "acme-uk-prod",
            "acme-eu-prod",
            "acme-us-staging",
            "acme-ca-prod",
        )
        if name in rows
    ]
    positions = [rows.index(name) for name in order]
    assert positions == sorted(positions) and len(order) == 5, "worst first"
    for word in ("unhealthy", "error", "blocked", "drift", "in sync"):
        assert f'">{word}</span>' in rows, f"status {word} in words, not colour alone"
    assert "timeout 30 → 15" in shown, "a drifted field, live → desired"
    assert "atp-key-" not in html, "secrets masked"
    assert "misroutes orders or availability" in shown and "misleads staff" in shown, "harm"
    assert "rule 2: external ATP on ⇒ the external OMS flag is on" in shown
    assert "Checked 2025-06-02 05:17 UTC from config commit 3f2c9a1b0d4e" in shown
    assert "acme-us-prod (drift → unhealthy" in shown, "what changed since the last run"
    assert "passed: 1 product at 1 location" in shown, "the probe's result"
    assert "Request id: req-7f3a" in shown
    assert "availability_webhook.api_key: NewStore answers it masked" in shown, (
        "a key that could not be compared is said, as in every drift report"
    )

    tags = elements(html)
    assert not [t for t, _ in tags if t in ("script", "img", "link", "iframe", "object")]
    links = [a.get("href") for t, a in tags if t == "a"]
    assert all(h and (h.startswith("#") or h.startswith("https://github.com/")) for h in links)
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in str(csp[0]["content"]), "the browser fetches nothing"


def test_hostile_names_and_messages_reach_the_page_as_text() -> None:
    hostile = DriftReport(
        [
            drift_of(
                EnvPlan(
                    HOSTILE_NAME,
                    "acme-x",
                    Status.ERROR,
                    error=f"unknown key {HOSTILE_KEY} at 'x' & \"y\"",
                )
            ),
            dataclasses.replace(
                drift_of(build_plan(make_env(ALL_OFF, name=HOSTILE_KEY), ALL_OFF)),
                notes=["</table></section><script>alert(2)</script>"],
            ),
        ],
        run_url='javascript:alert(3)//"',
    )
    html = render_dashboard(hostile)
    tags = elements(html)
    assert not [t for t, _ in tags if t in ("script", "img")]
    assert not [(t, a) for t, a in tags for k in a if k.startswith("on")], "no event handler"
    assert "javascript:" not in html, "a run URL that is no http(s) URL is not linked"
    shown, _ = page_text(html)
    assert HOSTILE_NAME in shown and HOSTILE_KEY in shown
    assert "</table></section><script>alert(2)</script>" in shown


def _colours(image: Image.Image) -> Counter[tuple[int, int, int]]:
    found = image.getcolors(maxcolors=image.width * image.height) or []
    return Counter({colour: count for count, colour in found})


def _non_blank(png: Path) -> Image.Image:
    image = Image.open(io.BytesIO(png.read_bytes()))
    image.load()
    assert image.format == "PNG"
    rgb = image.convert("RGB")
    counts = _colours(rgb)
    (_, most), *_ = counts.most_common(1)
    assert most < 0.97 * rgb.width * rgb.height, "not a blank page"
    assert len(counts) > 50, "text and colours drawn, not a flat fill"
    return rgb


def _has_colour(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    near = sum(
        count
        for pixel, count in _colours(image).items()
        if all(abs(a - b) <= 6 for a, b in zip(pixel, colour, strict=True))
    )
    return near >= 40


@pytest.mark.e2e
def test_the_dashboard_in_a_real_browser(
    live_sandbox: Sandbox, write_env: WriteEnv, tmp_path: Path
) -> None:
    sandbox, base = live_sandbox
    directory = fleet(sandbox, base, write_env)
    # An environment whose file name and broken key are markup.
    (directory / f"{HOSTILE_NAME}.yaml").write_text(
        f"tenant: acme-x\n'{HOSTILE_KEY}': 1\n", encoding="utf-8"
    )
    page = tmp_path / "site" / "drift.html"
    result = run_cli(directory, "drift", "--probe", "--output", f"html={page}")
    assert result.exit_code == 1, result.output

    png = tmp_path / "dashboard.png"
    screenshot(page, png, tmp_path)
    image = _non_blank(png)
    for status, colour in COLOURS.items():
        assert _has_colour(image, colour), f"the colour of {status} is on screen"

    dom = dump_dom(page, tmp_path)
    tags = elements(dom)
    assert not [t for t, _ in tags if t in ("script", "img")], "markup in names stays text"
    shown, _ = page_text(dom)
    for name in [*STATUSES, HOSTILE_NAME]:
        assert name in shown, name
    for word in ("in sync", "drift", "blocked", "unhealthy", "error"):
        assert word in shown
    assert HOSTILE_KEY in shown, "the message that quotes the key, as text"


def test_the_readme_screenshot(tmp_path: Path) -> None:
    """The README's picture of the dashboard: regenerated by the browser on request, and
    always a real, small PNG of it."""
    if os.environ.get("UPDATE_DOCS_IMAGES") == "1":
        page = tmp_path / "dashboard.html"
        page.write_text(render_dashboard(sample_report()), encoding="utf-8")
        png = tmp_path / "dashboard.png"
        screenshot(page, png, tmp_path, width=1100, height=760)
        image = _non_blank(png)
        image = image.resize((image.width * 8 // 10, image.height * 8 // 10), Image.LANCZOS)
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=128).save(DOCS_IMAGE, optimize=True)
    assert DOCS_IMAGE.is_file(), "run `make docs-images` to make docs/img/dashboard.png"
    assert DOCS_IMAGE.stat().st_size < 200_000, "small enough to commit"
    _non_blank(DOCS_IMAGE)
    assert "docs/img/dashboard.png" in (ROOT / "README.md").read_text()
