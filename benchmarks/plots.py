"""Drawing benchmark reports: pyplot on the file-only backend, and one way to save."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """pyplot on the file-only backend: reports are written where no display exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path, dpi: int = 120) -> None:
    """Write the figure as PNG (its folder made if missing) and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
