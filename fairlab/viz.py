"""Figures the chapters share: image grids, group-accuracy bars, training curves.

Plotting only: this module imports no training code. Every function returns the matplotlib ``Figure``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def _to_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) tensor in [0, 1] -> (H, W, C) / (H, W) array for imshow."""
    x = x.detach().float().cpu().clamp(0, 1)
    return x.permute(1, 2, 0).numpy() if x.ndim == 3 else x.numpy()


def image_grid(
    images: torch.Tensor,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 10,
    row_labels: Sequence[str] | None = None,
    size: float = 1.0,
    suptitle: str | None = None,
):
    """Show (N, C, H, W) images on a grid, ``ncols`` per row, with optional per-image titles and row labels."""
    n = len(images)
    nrows = -(-n // ncols)
    # room for the title's lines above the rows, so a grid of one row keeps its title
    title_height = 0.25 * (suptitle.count("\n") + 1) + 0.1 if suptitle else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1 + title_height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < n:
            ax.imshow(_to_image(images[i]), cmap="gray" if images[i].ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def grid_picks(data, n_per_class: int = 1) -> tuple[list[list[int]], list[str]]:
    """Which images ``dataset_grid`` shows: ``n_per_class`` rows of bias-aligned images, one per class and row, then
    one row of bias-conflicting images where the data has any; and each row's label.

    Images of a class are taken in data order within their kind, so the grid does not depend on where the
    conflicting images happen to sit (LfF's colouring, for one, gives a class's first images the other colours).
    A data set without ``aligned`` gives its first images. Returns ``(rows of indices, row labels)``; a class without
    an image of a row's kind leaves -1 in that row.
    """
    kinds = [("aligned", True)] * n_per_class + [("conflicting", False)]
    if data.aligned is None:
        kinds = [("", None)] * n_per_class
    elif bool(data.aligned.all()):
        kinds = kinds[:-1]
    rows, labels, taken = [], [], {}
    for label, aligned in kinds:
        row = []
        for c in range(data.num_classes):
            mask = data.y == c
            if aligned is not None:
                mask = mask & (data.aligned == aligned)
            candidates = torch.nonzero(mask).flatten().tolist()
            used = taken.setdefault((c, aligned), 0)
            row.append(candidates[used] if used < len(candidates) else -1)
            taken[(c, aligned)] = used + 1
        rows.append(row)
        labels.append(label)
    return rows, labels


def dataset_grid(data, n_per_class: int = 2, *, title: str | None = None, size: float = 0.9):
    """Images of each class of a ``BiasedDataset``, titled ``y=<label> s=<bias>``: ``n_per_class`` rows of
    bias-aligned images, then a row of bias-conflicting ones (starred), and in the title the share of conflicting
    images in the whole set, so that the grid shows what the data is (``grid_picks`` says which images)."""
    rows, labels = grid_picks(data, n_per_class)
    images, titles = [], []
    blank = torch.ones_like(data.x[0])
    for row in rows:
        for i in row:
            if i < 0:
                images.append(blank)
                titles.append("(none)")
                continue
            images.append(data.x[i])
            s = int(data.group[i]) if data.group is not None else "-"
            star = "*" if data.aligned is not None and not bool(data.aligned[i]) else ""
            titles.append(f"y={int(data.y[i])} s={s}{star}")
    if data.aligned is not None:
        conflicting = float((~data.aligned).float().mean())
        share = f"{conflicting:.1%} of the images bias-conflicting (* row)" if conflicting else "no image bias-conflicting"
        title = f"{title}\n{share}" if title else share
    return image_grid(torch.stack(images).cpu(), titles, ncols=data.num_classes, size=size, suptitle=title,
                      row_labels=labels if any(labels) else None)


def group_accuracy_bars(results: Mapping[str, Mapping[str, float]], *, title: str = "", ylabel: str = "accuracy"):
    """Grouped bars: ``{model_name: {group_name: accuracy}}``, e.g. aligned / conflicting / overall per model."""
    frame = pd.DataFrame(results).T  # rows: models, columns: groups
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(frame) * max(1, len(frame.columns)) / 2, 3.2))
    width = 0.8 / len(frame.columns)
    x = np.arange(len(frame))
    for j, column in enumerate(frame.columns):
        bars = ax.bar(x + (j - (len(frame.columns) - 1) / 2) * width, frame[column], width, label=column)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, frame.index)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, columns: Sequence[str] | None = None, *, title: str = "", ncols: int = 3):
    """One small panel per column of a ``fit`` history (index = epoch)."""
    columns = [c for c in (columns or history.columns) if c != "seconds"]
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(columns)), figsize=(3.3 * min(ncols, len(columns)), 2.6 * nrows),
                             squeeze=False)
    for ax, column in zip(axes.flat, columns):
        ax.plot(history.index, history[column], marker="o", ms=3)
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def metric_against(
    frame: pd.DataFrame, x: str, y: str, *, hue: str | None = None, yerr: str | None = None, title: str = "",
    xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
):
    """Line plot of ``frame[y]`` against ``frame[x]``, one line per value of ``hue`` (error bars from ``yerr``)."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    groups = frame.groupby(hue) if hue else [(None, frame)]
    for name, part in groups:
        part = part.sort_values(x)
        ax.errorbar(part[x], part[y], yerr=part[yerr] if yerr else None, marker="o", ms=4, capsize=3,
                    label=str(name) if name is not None else None)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    if hue:
        ax.legend(title=hue, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def against_published(ours: pd.DataFrame, published: pd.DataFrame, x: str, y: str, *, title: str = "",
                      xlabel: str | None = None, ylabel: str | None = None):
    """``y`` against ``x`` for each method: ours solid, the authors' dashed and paler, one colour per method (both
    frames have a ``method`` column). A method with a single point of ours still shows its marker."""
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, method in enumerate(dict.fromkeys(list(ours["method"]) + list(published["method"]))):
        for frame, style, source in ((ours, "-", "ours"), (published, "--", "authors")):
            part = frame[frame["method"] == method].sort_values(x)
            if len(part):
                ax.plot(part[x], part[y], style, marker="o", ms=5 if source == "ours" else 3.5,
                        color=colours[k % len(colours)], alpha=1.0 if source == "ours" else 0.55,
                        label=f"{method} ({source})")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- Signal is Harder ---
def ours_against_published(ours: pd.DataFrame, published: pd.DataFrame, *, title: str = "", ylabel: str = "accuracy (%)"):
    """Accuracy against the bias-conflicting ratio: ours (solid, mean ± sd) next to published numbers (dashed).

    Both frames have columns method, rho, mean, sd (sd may be nan); one colour per method, log-scaled x.
    """
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, method in enumerate(dict.fromkeys(list(ours["method"]) + list(published["method"]))):
        colour = colours[k % len(colours)]
        for frame, style, suffix in ((ours, "-", "ours"), (published, "--", "published")):
            part = frame[frame["method"] == method].sort_values("rho")
            if len(part):
                ax.errorbar(part["rho"] * 100, part["mean"], yerr=part["sd"].fillna(0), fmt=style, marker="o", ms=4,
                            capsize=3, color=colour, alpha=1.0 if suffix == "ours" else 0.55,
                            label=f"{method} ({suffix})")
    ax.set_xscale("log")
    ticks = sorted(set(ours["rho"] * 100) | set(published["rho"] * 100))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("bias-conflicting ratio rho (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- MI backprop ---
def mine_convergence(runs: Mapping[str, tuple[pd.DataFrame, float]], *, title: str = "", ncols: int = 4):
    """MINE's estimate over training against the closed form: ``{label: (history, truth)}``, one panel per case.

    ``history`` is ``fairlab.models.mine.train_mine``'s output: the noisy per-batch value (``train_estimate``,
    drawn faint) and the large-sample evaluations (``estimate``, dots); the truth is a dashed line.
    """
    ncols = min(ncols, len(runs))
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (label, (history, truth)) in zip(axes.flat, runs.items()):
        ax.plot(history.index, history["train_estimate"], color="tab:blue", alpha=0.25, lw=0.8, label="batch")
        evaluated = history["estimate"].dropna()
        ax.plot(evaluated.index, evaluated, "o-", color="tab:blue", ms=3, label="estimate")
        ax.axhline(truth, color="k", ls="--", lw=1, label="truth")
        ax.set_ylim(min(0.0, float(history["train_estimate"].min())), 1.3 * truth + 0.05)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def lambda_sweep_audit(frame: pd.DataFrame, *, title: str = ""):
    """One run per lambda (``fairlab.experiments.mi_backprop.kim_sweep`` rows), two panels against lambda
    (symmetric-log axis, 0 shown).

    Left, in nats: what the adversary reports (``mi_estimate``) and the floor that counting guarantees
    (``mi_floor`` = I(yhat; c)); an estimate below the floor is an underestimate, a negative one a fooled adversary.
    Right: test accuracy and the accuracy of a fresh linear probe reading the colour from the features
    (``bias_probe_accuracy``), with its chance level dotted.
    """
    frame = frame.sort_values("lambda")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.3))
    left.plot(frame["lambda"], frame["mi_estimate"], "o-", label="MINE estimate of I(z; c)")
    left.plot(frame["lambda"], frame["mi_floor"], "s--", label="floor I(yhat; c), counted")
    left.set_ylabel("nats (training set)")
    right.plot(frame["lambda"], frame["accuracy"], "o-", label="test accuracy (digit)")
    right.plot(frame["lambda"], frame["bias_probe_accuracy"], "s-", label="probe accuracy (colour from z)")
    right.axhline(frame["bias_probe_chance"].mean(), color="k", ls=":", lw=1, label="probe chance")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(0, 1.5 * frame["lambda"].max())
        ax.set_xlabel("lambda")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_against_fairness(runs: pd.DataFrame, *, x: str = "probe_accuracy", y: str = "worst_group_accuracy",
                              panel: str = "rho", xlabel: str | None = None, ylabel: str | None = None,
                              chance: float | None = None, title: str = ""):
    """One point per method (mean over seeds, error bars one sd over seeds in both directions), one panel per value
    of ``panel`` (a column of ``runs``, e.g. the bias strength; ``None``: one panel). ``runs`` has one row per run
    with columns method, ``x``, ``y`` (and ``panel``). ``chance`` draws a dotted vertical line (the probe's chance
    level)."""
    panels = list(dict.fromkeys(runs[panel])) if panel else [None]
    methods = list(dict.fromkeys(runs["method"]))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharex=True, sharey=True,
                             squeeze=False)
    for ax, value in zip(axes.flat, panels):
        part = runs if value is None else runs[runs[panel] == value]
        stats = part.groupby("method", sort=False)[[x, y]].agg(["mean", "std"]).fillna(0.0)
        for method, row in stats.iterrows():
            ax.errorbar(row[(x, "mean")], row[(y, "mean")], xerr=row[(x, "std")], yerr=row[(y, "std")], fmt="o",
                        ms=6, capsize=3, color=colours[method], label=method)
            ax.annotate(method, (row[(x, "mean")], row[(y, "mean")]), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
        if chance is not None:
            ax.axvline(chance, color="k", ls=":", lw=1)
        ax.set_title(f"{panel} = {value}" if value is not None else "", fontsize=10)
        ax.set_xlabel(xlabel or x)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel or y)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def audit_gallery(rows: Mapping[str, torch.Tensor | None], *, size: float = 0.9, title: str = ""):
    """What each method lets an auditor *see*, on the same test images: one row per method (its name on the left),
    ``rows[name]`` a tensor (N, C, H, W) of images, or ``None`` for a method that shows nothing (an empty row,
    labelled so). Every row should hold the same N."""
    n = max(len(images) for images in rows.values() if images is not None)
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 1.4, size * len(rows) * 1.05 + 0.3), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for i, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if images is not None and i < len(images):
                ax.imshow(_to_image(images[i]), vmin=0, vmax=1)
        axes[r, 0].set_ylabel(name, fontsize=9, rotation=0, ha="right", va="center")
        if images is None:
            axes[r, n // 2].text(0.5, 0.5, "nothing to see", ha="center", va="center", fontsize=9, color="0.4",
                                 transform=axes[r, n // 2].transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- widgets for a static page ---
def reads_digit_or_colour(y, colour, y_pred, *, num_classes: int = 10, title: str = ""):
    """What a Coloured MNIST classifier reads: P(prediction | digit) and P(prediction | colour), side by side.

    A shape reader fills the diagonal of the left map; a colour reader fills the diagonal of the right one (on a test
    set where digit and colour mostly disagree, the other map is then nearly flat).
    """
    y, colour, y_pred = (torch.as_tensor(t).long().cpu() for t in (y, colour, y_pred))
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 3.3), layout="constrained")
    for ax, factor, name in zip(axes, (y, colour), ("digit", "colour index")):
        counts = torch.zeros(num_classes, num_classes)
        counts.index_put_((factor, y_pred), torch.ones(len(y_pred)), accumulate=True)
        rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
        image = ax.imshow(rates.numpy(), vmin=0, vmax=1, cmap="Blues")
        ax.set_xlabel("predicted digit")
        ax.set_ylabel(f"true {name}")
        ax.set_title(f"P(prediction | {name})\ndiagonal mass {rates.diagonal().mean():.2f}", fontsize=9)
        ax.set_xticks(range(num_classes))
        ax.set_yticks(range(num_classes))
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_slider(figures: Mapping[object, "plt.Figure"], *, description: str, value=None, dpi: int = 80):
    """A slider that flips between figures drawn in advance, and still works in a static web page.

    ``figures`` maps each slider value (its label) to a finished figure. Each figure is rendered to PNG into its own
    ``Output`` widget, so the notebook's saved widget state holds *every* figure; the outputs sit in a ``Stack``
    whose visible child is linked to the slider in the browser (``jslink``). Moving the slider in the built book
    therefore changes the figure without a Python kernel. The figures are closed (they are shown only through the
    widget). Returns the widget box; display it, or leave it as the cell's last expression.
    """
    import base64
    import io

    import ipywidgets as widgets

    if not figures:
        raise ValueError("figure_slider needs at least one figure: got an empty mapping")
    labels = list(figures)
    if value is not None and value not in figures:
        raise ValueError(f"figure_slider: value {value!r} is not one of the figures' labels {labels}")
    outputs = []
    for label in labels:
        buffer = io.BytesIO()
        figures[label].savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(figures[label])
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        output = widgets.Output()
        output.outputs = ({"output_type": "display_data", "metadata": {},
                           "data": {"image/png": png, "text/plain": f"<figure {description} = {label}>"}},)
        outputs.append(output)
    index = labels.index(value) if value is not None else 0
    slider = widgets.SelectionSlider(options=[(str(label), k) for k, label in enumerate(labels)], index=index,
                                     description=description, continuous_update=True)
    stack = widgets.Stack(outputs, selected_index=index)
    box = widgets.VBox([slider, stack])
    box.link = widgets.jslink((slider, "index"), (stack, "selected_index"))
    return box
