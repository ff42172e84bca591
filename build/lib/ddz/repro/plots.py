"""A figure spec's plot: ddz's accuracy (mean ± std as error bars) against the spec's x axis, one
line per method, one panel per IPC, each method's unguided baseline dotted (as the paper draws
Fig. 2 and Fig. 3). Only ddz's numbers are drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from ddz.io import atomic_write  # noqa: E402
from ddz.repro.spec import PlotSpec, Spec  # noqa: E402


def _x(plot: PlotSpec, obj: dict[str, Any]) -> float | None:
    if plot.x == "pool":
        return plot.x_values.get(obj["pool"])
    value = obj[plot.x]
    return None if isinstance(value, str) else float(value)


def write_plot(spec: Spec, cells: list[dict[str, Any]], path: Path, arch: str) -> Path | None:
    """Draw the report's cell objects (report.json `cells`); None when the spec has no plot."""
    plot = spec.plot
    if plot is None:
        return None
    panels = list(dict.fromkeys(obj[plot.panels] for obj in cells)) if plot.panels else [None]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        chosen = [obj for obj in cells if plot.panels is None or obj[plot.panels] == panel]
        for line in dict.fromkeys(obj[plot.lines] for obj in chosen):
            mine = [obj for obj in chosen if obj[plot.lines] == line and arch in obj["ddz"]]
            points = sorted(
                (_x(plot, obj), obj["ddz"][arch]["mean"], obj["ddz"][arch]["std"])
                for obj in mine if obj["pool"] != spec.baseline and _x(plot, obj) is not None
            )
            drawn = axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                                  marker="o", capsize=3, label=str(line).upper())
            for obj in mine:
                if obj["pool"] == spec.baseline:
                    axis.axhline(obj["ddz"][arch]["mean"], linestyle=":", color=drawn.lines[0].get_color())
        if plot.log_x:
            axis.set_xscale("log")
        axis.set_xlabel(plot.x_label or plot.x)
        axis.set_ylabel(f"ddz test accuracy (%), {arch}")
        if panel is not None:
            axis.set_title(f"{plot.panels} {panel}")
        axis.legend()
    figure.suptitle(f"{spec.title} (ddz; dotted: without CLoM)", fontsize=9)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path
