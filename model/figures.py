"""Matplotlib for files, not screens: the one place that picks the backend and writes PNGs."""

from __future__ import annotations

import types


def pyplot() -> types.ModuleType:
    """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def save_figure(figure, path: str) -> str:
    """`figure` laid out, written to `path` as a PNG and closed; the path."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return path
