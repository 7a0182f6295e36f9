"""PSNR-against-something figures: one panel per evaluation set, each with the float model's PSNR as
a dashed line (the PTQ sweep's PSNR-vs-bits plot, the mixed-precision PSNR-vs-size plot)."""
from contextlib import contextmanager

from src.utils.atomic import atomic_target


@contextmanager
def psnr_panels(sets, fp, xlabel, title, path):
    """Yield ``[(axes, set name)]``, one matplotlib panel per name in ``sets``, for the caller to draw
    its PSNR curves on (dB, Y channel); then add ``fp[name]`` (float PSNR, dB) as a dashed line,
    labels, grid and legend, and write the figure as a PNG to ``path`` atomically (Agg backend;
    OSError when ``path`` cannot be written)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    try:
        panels = list(zip(axes[0], sets))
        yield panels
        for ax, name in panels:
            ax.axhline(fp[name], color="k", linestyle="--", label="FP32")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("PSNR (dB, Y)")
            ax.set_title(f"{title} - {name}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_target(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
