"""What a figure test checks: the panels, their labels and legends, and a PNG with ink on it."""

import numpy as np


def png_ink(path, tol: float = 0.05) -> float:
    """Fraction of the pixels of the PNG ``path`` that differ from its corner (background)
    colour by more than ``tol`` in some channel (0 for a blank image)."""
    from matplotlib.image import imread

    img = np.asarray(imread(path), float)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, img.shape
    assert img.std() > 0, f"{path}: every pixel has the same colour"
    return float(np.mean(np.any(np.abs(img - img[0, 0]) > tol, axis=-1)))


def panel_ink(fig, path, tol: float = 0.05, inset: int = 4) -> list[float]:
    """Ink fraction (as :func:`png_ink`) inside the data area of each visible panel of ``fig``
    in its saved PNG ``path`` (frame and ticks excluded; colour bars left out): 0 for an
    empty panel."""
    from matplotlib.image import imread

    img = np.asarray(imread(path), float)
    h = img.shape[0]
    scale = h / fig.bbox.height
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        bb = ax.get_window_extent()
        x0, x1 = int(bb.x0 * scale) + inset, int(bb.x1 * scale) - inset
        y0, y1 = int(h - bb.y1 * scale) + inset, int(h - bb.y0 * scale) - inset
        crop = img[y0:y1, x0:x1]
        assert crop.size, (ax, bb)
        out.append(float(np.mean(np.any(np.abs(crop - img[0, 0]) > tol, axis=-1))))
    return out


def _texts(fig, getter) -> list[str]:
    return [getter(ax) for ax in fig.axes if ax.get_visible()]


def legend_texts(fig) -> list[str]:
    """Every legend entry of every visible panel."""
    return [t.get_text() for ax in fig.axes if ax.get_visible() and ax.get_legend() is not None
            for t in ax.get_legend().get_texts()]


def assert_figure(fig, path=None, *, n_axes=None, xlabels=(), ylabels=(), titles=(),
                  legend=(), min_ink: float = 0.01, min_panel_ink: float = 0.002):
    """Check a returned matplotlib Figure and its saved PNG.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path, optional
        The PNG the plotting function wrote: it must not be blank (at least
        ``min_ink`` of its pixels differ from the background) and the data
        area of every visible panel must be drawn on (``min_panel_ink``).
    n_axes : int, optional
        Number of visible axes (colour bars included).
    xlabels, ylabels, titles : iterable of str
        Each must be the x label / y label / title of some visible panel.
    legend : iterable of str
        Each must be part of some legend entry.
    """
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure), type(fig)
    if n_axes is not None:
        assert len([ax for ax in fig.axes if ax.get_visible()]) == n_axes, fig.axes
    for want, getter in ((xlabels, lambda ax: ax.get_xlabel()),
                         (ylabels, lambda ax: ax.get_ylabel()),
                         (titles, lambda ax: ax.get_title())):
        have = _texts(fig, getter)
        for text in want:
            assert text in have, (text, have)
    entries = legend_texts(fig)
    for text in legend:
        assert any(text in e for e in entries), (text, entries)
    if path is not None:
        ink = png_ink(path)
        assert ink >= min_ink, f"{path}: only {ink:.2%} of the pixels are drawn"
        panels = panel_ink(fig, path)
        assert min(panels) >= min_panel_ink, f"{path}: a panel is empty (ink {panels})"
