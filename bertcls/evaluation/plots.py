"""The run's figures: confusion matrices and the learning curve, legible in Chinese, bounded in cost, never fatal.

matplotlib's default font has no CJK glyphs, so Chinese label names would draw as empty boxes. A CJK font
installed on the system is used when there is one; otherwise Noto Sans CJK SC as shipped by the `mplfonts`
package. A confusion matrix of many classes draws without cell numbers, and beyond MAX_CLASSES_SHOWN classes only
the classes with the most errors, so a 1,000-class task costs seconds, not gigabytes. Every figure is drawn after
the results and predictions are on disk, and a figure that fails is logged and skipped.
"""

import logging
import os
from contextlib import contextmanager
from functools import cache

import numpy as np

from bertcls.files import atomic_path

logger = logging.getLogger(__name__)

# Families that hold the CJK ideographs, most common first; the first one installed wins.
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "SimHei",
)
BUNDLED_FONT = "NotoSansCJKsc-Regular.otf"  # in the mplfonts package (SIL Open Font License)
NUMBERS_UP_TO = 30  # classes whose confusion matrix shows the count in every cell
MAX_CLASSES_SHOWN = 100  # beyond this, the matrix shows the MOST_CONFUSED classes with the most errors
MOST_CONFUSED = 30


@cache
def cjk_font_family() -> str | None:
    """The name of a font family with CJK glyphs, registering mplfonts' Noto Sans CJK SC when none is installed."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    family = next((name for name in CJK_FAMILIES if name in installed), None)
    if family is not None:
        return family
    try:
        import mplfonts
    except ImportError:
        logger.warning("no CJK font found and mplfonts is not installed: Chinese text in plots draws as boxes")
        return None
    path = os.path.join(os.path.dirname(mplfonts.__file__), "fonts", BUNDLED_FONT)
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


@contextmanager
def _figure_style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = cjk_font_family()
    style = {"font.sans-serif": [family, "DejaVu Sans"], "font.family": "sans-serif"} if family else {}
    with plt.rc_context(style):
        yield plt


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            # bbox_inches="tight" keeps rotated tick labels and the title inside the image.
            fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)


def draw(what: str, plot, *args) -> bool:
    """Run one plot function; a failure is logged and skipped (the run's results are already written)."""
    try:
        return plot(*args) is not False
    except Exception as e:  # a figure must never take down a finished run
        logger.warning("could not draw the %s (%s: %s); skipped", what, type(e).__name__, e)
        return False


def shown_classes(matrix: np.ndarray) -> np.ndarray:
    """All classes, or beyond MAX_CLASSES_SHOWN the MOST_CONFUSED ones with the most errors (row + column)."""
    n = len(matrix)
    if n <= MAX_CLASSES_SHOWN:
        return np.arange(n)
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    return np.sort(np.argsort(-errors, kind="stable")[:MOST_CONFUSED])


def plot_confusion(path: str, matrix: np.ndarray, names: list[str], title: str) -> None:
    """Rows are true labels, columns predictions; counts in the cells up to NUMBERS_UP_TO classes."""
    keep = shown_classes(matrix)
    if len(keep) < len(matrix):
        title = f"{title}\n(the {len(keep)} of {len(matrix)} classes with the most errors)"
    sub = matrix[np.ix_(keep, keep)]
    labels = [names[i] for i in keep]
    n = len(keep)
    with _figure_style() as plt:
        size = min(18.0, max(4.5, 0.45 * n + 2.5))
        fig, ax = plt.subplots(figsize=(size, size))
        image = ax.imshow(sub, cmap="Blues")
        font = max(5, min(10, 400 // max(n, 1)))
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=font)
        ax.set_yticks(range(n), labels, fontsize=font)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        if n <= NUMBERS_UP_TO:
            high = sub.max() / 2 if sub.size else 0
            for i in range(n):
                for j in range(n):
                    color = "white" if sub[i, j] > high else "black"
                    ax.text(j, i, str(sub[i, j]), ha="center", va="center", color=color, fontsize=font)
        else:
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title)
        _save(fig, path)


def plot_learning_curve(path: str, log_history: list[dict], metric: str) -> bool:
    """Training loss per logged step, and eval loss / `metric` per evaluation. False when nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e.get("eval_loss"), e.get(f"eval_{metric}")) for e in log_history if "eval_loss" in e]
    if not train and not evals:
        return False
    with _figure_style() as plt:
        fig, ax = plt.subplots(figsize=(7, 4))
        if train:
            ax.plot(*zip(*train), label="train loss")
        if evals:
            ax.plot([s for s, _, _ in evals], [v for _, v, _ in evals], "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left")
        scored = [(s, m) for s, _, m in evals if m is not None]
        if scored:
            right = ax.twinx()
            right.plot(*zip(*scored), "s--", color="tab:green", label=f"eval {metric}")
            right.set_ylabel(metric)
            right.legend(loc="upper right")
        ax.set_title("learning curve")
        _save(fig, path)
    return True


def plot_regression(path: str, gold: np.ndarray, predicted: np.ndarray, title: str) -> None:
    """A regression split: predicted against gold values (the diagonal is a perfect model), and the residuals
    (predicted - gold) against gold, where a slope or a funnel shows what the model gets wrong."""
    gold, predicted = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    with _figure_style() as plt:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        alpha = 0.6 if len(gold) <= 2000 else 0.2
        left.scatter(gold, predicted, s=8, alpha=alpha)
        low, high = float(min(gold.min(), predicted.min())), float(max(gold.max(), predicted.max()))
        left.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = gold")
        left.set_xlabel("gold value")
        left.set_ylabel("predicted value")
        left.legend(loc="upper left")
        left.set_title(f"{title}: predicted vs gold")
        right.scatter(gold, predicted - gold, s=8, alpha=alpha)
        right.axhline(0, color="k", linestyle="--", linewidth=1)
        right.set_xlabel("gold value")
        right.set_ylabel("residual (predicted - gold)")
        right.set_title(f"{title}: residuals")
        _save(fig, path)
