"""The score-against-latency plot, per device, with each score's interval and the Pareto
front."""

from __future__ import annotations

from pathlib import Path

from compress.eval.schema import MetricRow


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and score (higher),
    ordered by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: list[MetricRow], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [d for d in ("cpu", "cuda") if any(r.device == d and r.latency_ms for r in rows)]
    if not panels:
        return
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(panels), figsize=(11 * len(panels), 6), squeeze=False)
    for ax, device in zip(axes[0], panels, strict=True):
        group = [r for r in rows if r.device == device and "b1" in r.latency_ms]
        xs = [r.latency_ms["b1"].p50 for r in group]
        ys = [r.score * 100 for r in group]
        largest = max(r.size_mb for r in group) or 1.0
        sizes = [60 + 900 * r.size_mb / largest for r in group]
        ax.scatter(
            xs, ys, s=sizes, alpha=0.5, c=range(len(group)), cmap="viridis", edgecolors="black"
        )
        # each score's 95% bootstrap interval, so overlapping variants read as such
        lows = [
            y - r.score_ci[0] * 100 if r.score_ci else 0.0 for r, y in zip(group, ys, strict=True)
        ]
        highs = [
            r.score_ci[1] * 100 - y if r.score_ci else 0.0 for r, y in zip(group, ys, strict=True)
        ]
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="none", ecolor="0.4", elinewidth=0.8, capsize=3)
        # numbers on the points, names in the legend: readable however close the points are
        handles = []
        for i, r in enumerate(group, 1):
            ax.annotate(str(i), (xs[i - 1], ys[i - 1]), ha="center", va="center", fontsize=8)
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=f"${i}$",
                    color="black",
                    label=f"{r.label}, {r.size_mb:.1f} MB",
                )
            )
        front = pareto_front(list(zip(xs, ys, strict=True)))
        (line,) = ax.plot(
            [xs[i] for i in front],
            [ys[i] for i in front],
            "--",
            color="tab:red",
            label="Pareto front",
        )
        ax.set_xscale("log")
        ax.set_xlabel(f"{device.upper()} latency, batch 1, p50 (ms, log scale)")
        ax.set_ylabel(f"{metric} (points)")
        ax.set_title(f"{device.upper()}: score (95% CI) against latency (marker area ~ MB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(
            handles=[*handles, line],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
        )
        ax.margins(x=0.25, y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
