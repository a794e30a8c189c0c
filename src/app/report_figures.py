"""The figures of `epmoe report` (src/app/report.py) and bench/scale_report.py, drawn with matplotlib's Agg
backend (no display). Each function takes plain numbers, draws one figure and writes it as a PNG; none reads a
results directory. Debian: python3-matplotlib."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after use("Agg"))
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

DPI = 110
PHASES = ["gate", "dispatch", "expert", "combine", "coordinator"]
plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                     "figure.facecolor": "white", "axes.spines.top": False, "axes.spines.right": False})


def save(fig, path):
    """Writes fig to path as a PNG and frees it."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _load_panel(ax, loads, kinds, layer_names, vmax, title):
    """One heatmap: rows = layers, columns = experts, colour = load over the layer's mean; dense rows hatched."""
    grid = []
    for load, kind in zip(loads, kinds):
        mean = sum(load) / len(load) if load and kind != "dense" else 0
        grid.append([x / mean if mean > 0 else math.nan for x in load])
    cmap = ListedColormap(plt.get_cmap("viridis")(range(256)))
    cmap.set_bad("#dddddd")
    image = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    num_experts = max(len(r) for r in grid)
    for row, kind in enumerate(kinds):
        if kind == "dense":
            ax.add_patch(plt.Rectangle((-0.5, row - 0.5), num_experts, 1, fill=False, hatch="//", color="#888888",
                                       linewidth=0))
            ax.text((num_experts - 1) / 2, row, "dense layer (no routing)", ha="center", va="center", fontsize=9)
        elif num_experts <= 16 and len(grid) <= 16:
            for col, count in enumerate(loads[row]):
                shade = "white" if grid[row][col] < 0.6 * vmax else "black"
                ax.text(col, row, f"{count:g}", ha="center", va="center", fontsize=7, color=shade)
    ax.set_yticks(range(len(grid)), layer_names)
    step = max(1, num_experts // 16)
    ax.set_xticks(range(0, num_experts, step))
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_title(title)
    ax.grid(False)
    return image


def load_heatmap(first, last, kinds, layer_names, titles, suptitle, path):
    """The layer x expert load of two metrics lines side by side. first, last: [num_layers][num_experts] kept
    assignments; kinds: "moe" or "dense" per layer; titles: the two panels' titles."""
    def ratio_max(loads):
        out = 1.0
        for load, kind in zip(loads, kinds):
            if kind != "dense" and load and sum(load) > 0:
                out = max(out, max(load) * len(load) / sum(load))
        return out

    vmax = max(ratio_max(first), ratio_max(last))
    rows, cols = len(kinds), max(len(x) for x in first)
    fig, axes = plt.subplots(2, 1, figsize=(min(14, 4 + 0.5 * cols), 1.2 + 2 * (1.2 + min(0.4 * rows, 7))),
                             layout="constrained")
    for ax, loads, title in zip(axes, (first, last), titles):
        image = _load_panel(ax, loads, kinds, layer_names, vmax, title)
    bar = fig.colorbar(image, ax=list(axes), shrink=0.8)
    bar.set_label("assignments / layer mean (1 = even)")
    fig.suptitle(suptitle + "\n(number: kept assignments; colour: over the layer's mean)")
    save(fig, path)


def steps_figure(lines, simulated, title, path, p50=None, p99=None):
    """Step time and tokens/s over steps. lines: (first_step, step, seconds per step, tokens/s) per metrics line,
    drawn at x = step with a bar from first_step when a line covers several steps. p50, p99: seconds or None;
    simulated: the seconds are SimGrid's virtual time."""
    time_unit = "simulated ms" if simulated else "ms"
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    spans = any(step > first for first, step, *_ in lines)
    xs = [step for _, step, _, _ in lines]
    ms = [s * 1e3 for _, _, s, _ in lines]
    for ax, ys, colour in ((ax_t, ms, "tab:blue"), (ax_r, [r for *_, r in lines], "tab:green")):
        ax.plot(xs, ys, marker="o", color=colour, label="per metrics line")
        for (first, step, *_), y in zip(lines, ys):
            if step > first:
                ax.hlines(y, first, step, color=colour, linewidth=4, alpha=0.35)
        ax.set_xlabel("step (a bar spans the steps one line covers)" if spans else "step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for value, name, style in ((p50, "p50", "--"), (p99, "p99", ":")):
        if value is not None:
            ax_t.axhline(value * 1e3, color="grey", linestyle=style, label=f"run {name}: {value * 1e3:.3g} ms")
    if ms and min(ms) > 0 and max(ms) / min(ms) > 20:
        ax_t.set_yscale("log")
    ax_t.set_ylabel(f"step time ({time_unit}, mean per step)")
    ax_t.set_title("step time")
    ax_t.legend(fontsize=8)
    ax_r.set_ylabel("tokens/s (all ranks)")
    ax_r.set_ylim(bottom=0)
    ax_r.set_title("throughput")
    fig.suptitle(title)
    save(fig, path)


def breakdown_figure(seconds, simulated, title, path):
    """Horizontal bars of the phases' seconds (summary.json time_breakdown_s), with each phase's share."""
    prefix = "simulated " if simulated else ""
    values = [seconds.get(p) or 0.0 for p in PHASES]
    total = sum(values)
    scale, unit = (1e3, prefix + "ms") if total < 1 else (1.0, prefix + "s")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bars = ax.barh(PHASES, [v * scale for v in values], color=plt.get_cmap("tab10")(range(len(PHASES))))
    for bar, v in zip(bars, values):
        share = 100 * v / total if total > 0 else 0
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v * scale:.3g} ({share:.1f} %)",
                va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"time ({unit}), summed over steps, mean over ranks")
    ax.set_xlim(0, max(max(values) * scale * 1.3, 1e-12))
    ax.set_title(title)
    save(fig, path)


def energy_figure(lines, per_token, source, title, path, reason=""):
    """J/token per metrics line (lines: (first_step, step, J/token or None)), a bar over the steps it covers, and the
    run's J/token as a dashed line; source says
    where the joules came from (in the title). per_token None: a figure that says "not measured", and reason."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.set_title(f"{title}\nJ/token, source: {source}")
    if per_token is None:
        ax.axis("off")
        ax.text(0.5, 0.55, "J/token: not measured", ha="center", va="center", fontsize=14, transform=ax.transAxes)
        ax.text(0.5, 0.35, reason, ha="center", va="center", fontsize=9, wrap=True, transform=ax.transAxes)
        save(fig, path)
        return
    measured = [(first, step, j) for first, step, j in lines if j is not None]
    ax.bar([(first + step) / 2 for first, step, _ in measured], [j for *_, j in measured],
           width=[step - first + 0.8 for first, step, _ in measured], color="tab:orange", label="per metrics line")
    ax.axhline(per_token, color="black", linestyle="--", label=f"run: {per_token:.3g} J/token")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("joules per token (J)")
    ax.legend(fontsize=8)
    save(fig, path)


def pareto(points, maximize):
    """Indices of the points (x, y) no other point beats: x lower or equal and y better or equal, one strictly."""
    def beats(a, b):
        better_y = a[1] >= b[1] if maximize else a[1] <= b[1]
        return a[0] <= b[0] and better_y and a != b
    return {i for i, p in enumerate(points) if not any(beats(q, p) for q in points)}


def _spread_bars(v):
    """(median, min, max) -> the [[below], [above]] error bar lengths matplotlib takes."""
    med, lo, hi = v
    return [[med - lo if lo is not None else 0], [hi - med if hi is not None else 0]]


def _frontier_panel(ax, pairs, xkey, ykey, maximize):
    """One panel of the frontier: a point per pair with min-max bars on both axes, the Pareto-optimal ones as
    red stars joined by a dashed line. pairs: {"label", xkey, ykey: (median, min, max)}. Returns their labels."""
    pts = [p for p in pairs if p[xkey][0] is not None and p[ykey][0] is not None]
    best = pareto([(p[xkey][0], p[ykey][0]) for p in pts], maximize)
    at = {}  # (x, y) -> the labels of the pairs there: one text for pairs that coincide
    for i, p in enumerate(pts):
        x, y = p[xkey], p[ykey]
        on = i in best
        ax.errorbar(x[0], y[0], xerr=_spread_bars(x), yerr=_spread_bars(y), fmt="*" if on else "o",
                    markersize=13 if on else 7, color="tab:red" if on else "tab:blue", capsize=3, elinewidth=1)
        at.setdefault((x[0], y[0]), []).append(p["label"])
    for xy, labels in at.items():
        ax.annotate("\n".join(labels), xy, textcoords="offset points", xytext=(7, 5), fontsize=8)
    frontier = sorted((pts[i][xkey][0], pts[i][ykey][0]) for i in best)
    if len(frontier) > 1:
        ax.plot([f[0] for f in frontier], [f[1] for f in frontier], linestyle="--", color="tab:red", alpha=0.6)
    ax.margins(0.15)
    return [pts[i]["label"] for i in sorted(best)]


def frontier_figure(pairs, title, path):
    """The gain-vs-fidelity frontier of a compare directory: x = changed assignment fraction (top row) and output
    relative L2 (bottom row), y = rank max/mean (left, lower is better) and tokens/s (right, higher is better).
    pairs: dicts with "label" and (median, min, max) under "changed", "rel_l2", "rank", "tokens_per_s".
    Returns {panel name: the labels of its Pareto-optimal pairs}."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
    xs = [("changed", "changed assignment fraction (fidelity cost, lower is better)"),
          ("rel_l2", "output relative L2 distance (fidelity cost, lower is better)")]
    ys = [("rank", "rank max/mean rows, last step (lower is better)", False),
          ("tokens_per_s", "tokens/s (higher is better)", True)]
    optimal = {}
    for row, (xkey, xlabel) in enumerate(xs):
        for col, (ykey, ylabel, maximize) in enumerate(ys):
            ax = axes[row][col]
            optimal[f"{ylabel.split(' (')[0].split(',')[0]} against {xlabel.split(' (')[0]}"] = \
                _frontier_panel(ax, pairs, xkey, ykey, maximize)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
    handles = [Line2D([], [], marker="o", color="tab:blue", linestyle="", label="pair: median, bars min-max"),
               Line2D([], [], marker="*", markersize=13, color="tab:red", linestyle="--", label="Pareto-optimal")]
    axes[0][1].legend(handles=handles, loc="best", fontsize=8)
    fig.suptitle(title)
    save(fig, path)
    return optimal


def lines_figure(panels, xticks, xlabel, title, path, log_y=False):
    """Side-by-side panels of lines over a log2 x axis (bench/scale_report.py). panels: (title, ylabel,
    {series: [(x, y)]}) each; xticks: the x values to label; log_y: a log10 y axis in every panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False, layout="constrained")
    for ax, (panel_title, ylabel, series) in zip(axes[0], panels):
        for i, (name, points) in enumerate(series.items()):  # the first thicker: lines that coincide stay visible
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="os^D"[i % 4], label=name,
                        linewidth=3.5 if i == 0 else 1.6, markersize=8 if i == 0 else 5)
        ax.set_xscale("log", base=2)
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xticks, [str(x) for x in xticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.legend(fontsize=9)
    fig.suptitle(title)
    save(fig, path)
