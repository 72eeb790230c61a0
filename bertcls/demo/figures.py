"""Copy the demo run's figures into docs/images/, downscaled, for the README and docs (run by `make demo`).

    python -m bertcls.demo.figures outputs/demo docs/images

The figures are the run's own PNGs (matplotlib at 120 dpi, 25-60 KB each), resized to a width a README shows
and reduced to a 64-colour palette, so a committed image stays under about 60 KB and the docs show exactly
what a run writes. The run's analysis.md is text; one of its tables (the most confident mistakes on test) is
drawn as an image too, in the run's CJK font, so the README can show it beside the figures.
"""

import argparse
import os
import sys

from PIL import Image

from bertcls.evaluation.plots import _figure_style
from bertcls.files import atomic_path

FIGURES = ("learning_curve.png", "confusion_matrix_test.png")
WIDTHS = {"learning_curve.png": 640, "confusion_matrix_test.png": 420}
MAX_BYTES = 60_000


def shrink(source: str, target: str, width: int) -> int:
    """Write `source` resized to `width` pixels (never enlarged) with a 64-colour palette; return its size."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        image = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        with atomic_path(target) as tmp:
            image.save(tmp, format="png", optimize=True)
    return os.path.getsize(target)


EXCERPT = "analysis_excerpt.png"
EXCERPT_SECTION = "## Most confident mistakes on test"


def markdown_table(text: str, heading_prefix: str) -> tuple[str, list[list[str]]]:
    """The heading that starts with `heading_prefix` and the rows of the first table under it."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading_prefix)), None)
    if start is None:
        raise ValueError(f"analysis.md has no section '{heading_prefix}'")
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return lines[start].lstrip("# "), rows


def render_excerpt(analysis_md: str, target: str) -> int:
    """Draw one table of analysis.md as a PNG; return its size."""
    with open(analysis_md, encoding="utf-8") as f:
        title, rows = markdown_table(f.read(), EXCERPT_SECTION)
    with _figure_style() as plt:
        fig, ax = plt.subplots(figsize=(6.4, 0.25 * len(rows)))
        ax.axis("off")
        ax.set_title("analysis.md: " + title, fontsize=9, loc="left", pad=2)
        table = ax.table(cellText=rows[1:], colLabels=rows[0], bbox=(0, 0, 1, 1), cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.auto_set_column_width(list(range(len(rows[0]))))
        for (row, _), cell in table.get_celld().items():
            cell.set_edgecolor("#bbbbbb")
            if row == 0:
                cell.set_facecolor("#eeeeee")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
        plt.close(fig)
    return shrink(target, target, 640)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the demo run's output_dir (recipes/demo.json writes outputs/demo)")
    parser.add_argument("images_dir", help="where the downscaled copies go (docs/images)")
    args = parser.parse_args(argv)
    os.makedirs(args.images_dir, exist_ok=True)
    for name in FIGURES:
        source = os.path.join(args.run_dir, name)
        if not os.path.isfile(source):
            sys.exit(f"error: {source} is missing: the demo run writes it (run `make demo`)")
        size = shrink(source, os.path.join(args.images_dir, name), WIDTHS[name])
        if size > MAX_BYTES:
            sys.exit(f"error: {name} came out at {size:,} bytes, over {MAX_BYTES:,}: lower its width in WIDTHS")
        print(f"{os.path.join(args.images_dir, name)}: {size:,} bytes")
    size = render_excerpt(os.path.join(args.run_dir, "analysis.md"), os.path.join(args.images_dir, EXCERPT))
    print(f"{os.path.join(args.images_dir, EXCERPT)}: {size:,} bytes")


if __name__ == "__main__":
    main()
