"""``modalign demo``: the main job on the embedded ``digits`` data, no file needed.

Until the OTM method lands, the demo computes the fused Gromov-Wasserstein barycenter of the
two views of scikit-learn's handwritten digits (left and right image halves) with
:func:`modalign.ot.fgw_barycenter`, times it against POT's exact ``fgw_barycenters`` on the
same input, and reports both objectives by one formula.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer


def demo(
    n_points: int = typer.Option(300, help="Samples taken from digits (and barycenter size)."),
    alpha: float = typer.Option(0.5, help="Feature weight of the FGW objective."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    pot: bool = typer.Option(True, help="Also run POT's exact solver for comparison."),
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the plot."),
) -> None:
    """FGW barycenter of the digits' two views, timed against POT."""
    import numpy as np
    import torch

    from modalign.data import load_digits_views
    from modalign.ot import barycenter_objective, fgw_barycenter, sqeuclidean_lowrank

    ds = load_digits_views()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(ds.n_samples, size=min(n_points, ds.n_samples), replace=False))
    views = [v[torch.as_tensor(rows)].double() for v in ds.views]
    structures = [sqeuclidean_lowrank(v) for v in views]
    typer.echo(f"digits: {len(rows)} samples, views {[tuple(v.shape) for v in views]}")

    fgw_barycenter([v[:20] for v in views], alpha=alpha)  # warm-up: thread pools, lazy init
    start = time.perf_counter()
    bary = fgw_barycenter(views, structures, alpha=alpha)
    ours_s = time.perf_counter() - start
    ours = bary.objective[-1]
    typer.echo(
        f"modalign fgw_barycenter: {ours_s:.3f} s, objective {ours:.5f}, "
        f"{len(bary.objective)} iterations"
    )
    if pot:
        import ot

        ys = [v.numpy() for v in views]
        cs = [s.dense().numpy() for s in structures]
        start = time.perf_counter()
        z, c, log = ot.gromov.fgw_barycenters(
            N=len(rows), Ys=ys, Cs=cs, alpha=alpha, log=True, random_state=seed
        )
        pot_s = time.perf_counter() - start
        pot_obj = barycenter_objective(
            torch.from_numpy(z),
            torch.from_numpy(c),
            views,
            [torch.from_numpy(x) for x in cs],
            [torch.from_numpy(t) for t in log["T"]],
            alpha,
        )
        typer.echo(f"POT fgw_barycenters (exact): {pot_s:.3f} s, objective {pot_obj:.5f}")
        typer.echo(f"speed-up {pot_s / ours_s:.1f}x, objective ratio {ours / pot_obj:.3f}")
    _plot(bary, views, ds.labels[torch.as_tensor(rows)].numpy(), out)


def _plot(bary, views, labels, out: Path) -> None:
    """Barycenter points drawn as 8x4 half-images beside the two views' samples."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 10, figsize=(10, 4.2))
    order = [int(np.argmax(labels == k)) for k in range(10)]

    for col, i in enumerate(order):
        for row, img in enumerate([views[0][i], views[1][i], bary.features[i]]):
            ax = axes[row, col]
            ax.imshow(img.reshape(8, 4).numpy(), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(str(labels[i]))
    for row, name in enumerate(["left half", "right half", "barycenter"]):
        axes[row, 0].set_ylabel(name)
    fig.suptitle("FGW barycenter of the digits' two views (one point per sample)")
    fig.tight_layout()
    path = out / "barycenter.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    typer.echo(f"plot: {path}")
