"""Figure hygiene shared by every plot and gallery: titles that fit, legends beside the data, point labels that
do not collide, and a check that no text falls off the canvas.

Each helper works on a plain `Figure` (no pyplot state) and is deterministic: the same data gives the same
picture. Plot modules call them instead of repeating layout tricks:

* `wrap_title(text, width_in)`: line breaks so a title fits `width_in` inches at its font size;
* `legend_beside(ax)`: the legend outside the axes, to the right, where it cannot cover a line or a bar;
* `place_point_labels(ax, points, labels)`: each label next to its point, moved to the first free side;
* `text_outside_canvas(fig)`: the texts whose rendered box leaves the figure (empty when all fit);
* `save(fig, path)`: writes the file; if some text would be cut off, the canvas grows to hold it instead.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text
from matplotlib.textpath import TextToPath
from matplotlib.transforms import Bbox

# Width of an average character relative to the font size, for placing point labels before they are drawn.
CHAR_WIDTH = 0.6


def text_width(text: str, fontsize: float) -> float:
    """Width in points of one line of `text` in matplotlib's default font at `fontsize` (measured, not guessed)."""
    prop = FontProperties(size=fontsize)
    width, _, _ = TextToPath().get_text_width_height_descent(text, prop, ismath=False)
    return width


def wrap_title(text: str, width_in: float, fontsize: float = 12.0) -> str:
    """`text` with its lines wrapped at spaces so that each fits `width_in` inches at `fontsize` pt (a single word
    wider than that stays whole)."""
    room = width_in * 72 * 0.95  # a margin for the layout's padding
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and text_width(candidate, fontsize) > room:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return "\n".join(lines)


def legend_beside(ax, **options):
    """The legend outside the axes' right edge (constrained layout makes room for it), or None if nothing has a
    label. Outside, it never covers data, whatever the data do."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=options.pop("fontsize", "small"), **options)


def renderer(fig: Figure):
    """A renderer for `fig` (attaching an Agg canvas if it has none), after the layout engine has run."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


# Offsets (points) tried in order for a point label: right, left, above, below, then stacked further up and down
# on either side, so even a cluster of coincident points gets one free slot per label.
_OFFSETS = [(5, -3), (-5, -3), (0, 6), (0, -12)] + [
    (dx, -3 + 9 * k) for k in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5) for dx in (5, -5)]
_ALIGN = {1: "left", -1: "right", 0: "center"}


def place_point_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 7.0) -> list:
    """Annotate each data point with its label, choosing for each (in order) the first side where the label's box
    overlaps neither an already placed label nor another point. Deterministic; returns the annotations.

    The layout is settled (drawn once) before placing, so distances are those of the final picture.
    """
    fig = ax.get_figure(root=True)
    render = renderer(fig)
    to_display = ax.transData.transform
    dots = [to_display(p) for p in points]
    scale = fig.dpi / 72
    placed: list[Bbox] = []
    annotations = []
    for k, ((x, y), label) in enumerate(zip(points, labels, strict=True)):
        width = len(label) * CHAR_WIDTH * fontsize * scale
        height = fontsize * 1.2 * scale
        px, py = dots[k]
        choice = None
        for dx, dy in _OFFSETS:
            sx = (dx > 0) - (dx < 0)
            left = px + dx * scale - (width if sx < 0 else width / 2 if sx == 0 else 0)
            bottom = py + dy * scale
            box = Bbox.from_bounds(left, bottom, width, height)
            free = not any(box.overlaps(other) for other in placed)
            free = free and not any(box.contains(*d) for j, d in enumerate(dots) if j != k)
            if free:
                choice = (dx, dy, sx, box)
                break
        if choice is None:  # crowded everywhere: the first side, still readable beside its own point
            dx, dy = _OFFSETS[0]
            choice = (dx, dy, 1, Bbox.from_bounds(px + dx * scale, py + dy * scale, width, height))
        dx, dy, sx, box = choice
        placed.append(box)
        annotations.append(ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points",
                                       fontsize=fontsize, ha=_ALIGN[sx], va="bottom"))
    del render
    return annotations


def text_outside_canvas(fig: Figure, tolerance_px: float = 1.0) -> list[str]:
    """What of `fig` a reader would miss: the visible texts (titles, labels, legends, annotations) and the drawn
    tick labels whose rendered box leaves the canvas; an empty list when everything is on the picture.

    Ticks are judged by their axis's tight bbox (only the ticks matplotlib draws, not the spare ones it keeps
    outside the view limits), the rest one text at a time, so the message names what is cut off."""
    render = renderer(fig)
    canvas = fig.bbox

    def off(box: Bbox) -> bool:
        return (box.x0 < canvas.x0 - tolerance_px or box.y0 < canvas.y0 - tolerance_px
                or box.x1 > canvas.x1 + tolerance_px or box.y1 > canvas.y1 + tolerance_px)

    outside, ticks = [], set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks |= {id(t) for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                      for t in (tick.label1, tick.label2)}
            if ax.get_visible() and axis.get_visible() and off(axis.get_tightbbox(render) or canvas):
                outside.append(f"{axis.axis_name} tick labels of '{ax.get_title() or 'an axes'}'")
    for text in fig.findobj(Text):
        if id(text) in ticks or not text.get_visible() or not text.get_text().strip() or not _shown(text):
            continue
        if off(text.get_window_extent(render)):
            outside.append(text.get_text())
    return outside


def _shown(text: Text) -> bool:
    """A text is shown if the axes holding it is (an axes hidden in a grid hides its texts)."""
    return text.axes is None or text.axes.get_visible()


def save(fig: Figure, path: Path, **options) -> Path:
    """Write `fig` to `path` (format from the suffix). A figure whose text would be cut off at the canvas edge is
    saved with the canvas grown to hold it (bbox_inches="tight"), so nothing a reader needs is ever lost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if text_outside_canvas(fig):
        options = {"bbox_inches": "tight", "pad_inches": 0.1, **options}
    fig.savefig(path, **options)
    return path
