"""Several outputs from one run (`--output FORMAT=PATH`, repeatable): which formats a command
has, the renderer of each, and writing them whole.

Every output of a run renders the one value the run made (the `DriftReport`, the `RunPlan`):
no renderer reads NewStore or a file again, or works anything out the value does not hold.
Each file is written atomically (temporary file, then rename: `fsutil.atomic_write_text`), so
a textfile collector or a web server never reads half a report. Renderers are imported when
used: a drift run that writes no dashboard never imports Jinja2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from reconciler.core.drift import DriftReport
from reconciler.core.plan import RunPlan
from reconciler.errors import ConfigError
from reconciler.fsutil import atomic_write_text, check_output_file, make_parents

DRIFT_FORMATS: Final = ("text", "json", "markdown", "html", "prometheus")
# A plan is reviewed and applied, not graphed: no dashboard or metrics of it.
PLAN_FORMATS: Final = ("text", "json", "markdown")


V = TypeVar("V")


@dataclass(frozen=True)
class Output:
    format: str
    path: Path


def parse_outputs(specs: Sequence[str], formats: Sequence[str]) -> list[Output]:
    """`FORMAT=PATH` specs as Outputs; a ConfigError names a malformed one, an unknown format
    or a path given twice, before anything is read."""
    outputs: list[Output] = []
    seen: set[Path] = set()
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(
                f"--output {spec!r}: expected FORMAT=PATH, e.g. html=drift.html "
                f"(FORMAT: {', '.join(formats)})."
            )
        if fmt not in formats:
            raise ConfigError(
                f"--output {spec!r}: unknown format {fmt!r}; one of {', '.join(formats)}."
            )
        target = Path(path)
        resolved = target.absolute()
        if resolved in seen:
            raise ConfigError(f"--output {spec!r}: {path} is already another --output's file.")
        seen.add(resolved)
        check_output_file(target, f"{fmt} output", makes_directories=True)
        outputs.append(Output(fmt, target))
    return outputs


def _drift_text(report: DriftReport) -> str:
    from reconciler.render.drift import render_drift_text  # lazy: start-up time

    return render_drift_text(report, color=False)


def _drift_json(report: DriftReport) -> str:
    from reconciler.core.drift import drift_to_json  # lazy: start-up time

    return drift_to_json(report)


def _drift_markdown(report: DriftReport) -> str:
    from reconciler.render.drift import render_drift_markdown  # lazy: start-up time

    return render_drift_markdown(report)


def _drift_html(report: DriftReport) -> str:
    from reconciler.render.dashboard import render_dashboard  # lazy: start-up time (Jinja2)

    return render_dashboard(report)


def _drift_prometheus(report: DriftReport) -> str:
    from reconciler.render.metrics import render_metrics  # lazy: start-up time

    return render_metrics(report)


DRIFT_RENDERERS: Final[Mapping[str, Callable[[DriftReport], str]]] = {
    "text": _drift_text,
    "json": _drift_json,
    "markdown": _drift_markdown,
    "html": _drift_html,
    "prometheus": _drift_prometheus,
}


def plan_renderers() -> Mapping[str, Callable[[RunPlan], str]]:
    """The plan's renderers; json is the plan file itself, stamped with the plan's own
    `created_at` like the run's other JSON outputs (stdout, `--out`), so all of them are the
    very same document."""

    def text(run: RunPlan) -> str:
        from reconciler.render.text import render_text  # lazy: start-up time

        return render_text(run, color=False)

    def json(run: RunPlan) -> str:
        from reconciler.core.planfile import plan_to_json  # lazy: start-up time

        return plan_to_json(run)

    def markdown(run: RunPlan) -> str:
        from reconciler.render.markdown import render_markdown  # lazy: start-up time

        return render_markdown(run)

    return {"text": text, "json": json, "markdown": markdown}


def write_outputs(
    outputs: Sequence[Output], value: V, renderers: Mapping[str, Callable[[V], str]]
) -> None:
    """Render `value` once per format and write each file whole, creating missing
    directories."""
    rendered: dict[str, str] = {}
    for output in outputs:
        if output.format not in rendered:
            rendered[output.format] = renderers[output.format](value)
        make_parents(output.path, f"{output.format} output")
        atomic_write_text(output.path, rendered[output.format], what=f"{output.format} output")
