"""Figures of training snapshots (larp_lab.viz.snapshots) on a hand-made SnapshotReport (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from larp_lab.analysis import SnapshotReport
from larp_lab.viz import figure_to_array, snapshot_curves, snapshot_grid


def _report(S: int = 4, B: int = 6, k: int = 3, Q: int = 2) -> SnapshotReport:
    rng = np.random.default_rng(0)
    steps = np.array([10, 40, 160, 640][:S])
    return SnapshotReport(
        steps=steps, labels=[f"step {s}" for s in steps[:-1]] + [f"step {steps[-1]} (final)"],
        final=np.arange(S) == S - 1,
        psnr_clip=np.linspace(12, 25, S)[:, None] + rng.normal(0, 0.5, (S, B)),
        ssim_clip=np.linspace(0.05, 0.8, S)[:, None] + np.zeros((S, B)),
        usage=np.linspace(0.01, 0.3, S), used_codes=np.round(np.linspace(0.01, 0.3, S) * 64).astype(np.int64),
        perplexity=np.linspace(1, 15, S), prior_bits_clip=np.linspace(6.5, 4.5, S)[:, None] + np.zeros((S, B)),
        own_cell=np.linspace(0.05, 0.6, S), attention_entropy=np.linspace(1, 0.3, S), patch_mass=np.ones(S),
        indices=rng.integers(0, 64, (S, B, 16)), originals=rng.uniform(-1, 1, (k, 3, 8, 32, 32)).astype(np.float32),
        reconstructions=rng.uniform(-1, 1, (S, k, 3, 8, 32, 32)).astype(np.float32), queries=[5, 11][:Q],
        query_maps=rng.uniform(0, 0.1, (S, k, Q, 2, 4, 4)).astype(np.float32), codebook_size=64, num_tokens=16,
        uniform_bits=6.0, own_cell_chance=2 / 48, cells=(1, 4, 4), layer=1,
    )


def test_grid_has_one_row_per_snapshot_plus_the_originals():
    rep = _report()
    fig = snapshot_grid(rep)
    rows, cols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    assert (rows, cols) == (1 + 4, 3 + 2) and len(fig.axes) == 5 * 5
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels[0] == "original" and labels[1].startswith("step 10\n") and labels[-1].startswith("step 640 (final)")
    assert f"{rep.psnr[2]:.1f} dB" in labels[3]
    titles = [ax.get_title() for ax in fig.axes[:5]]
    assert titles == ["clip 0", "clip 1", "clip 2", "query 5, clip 0", "query 11, clip 0"]
    one = snapshot_grid(rep, rows=[2], clips=2, queries=[1])  # the app's view: originals and one snapshot
    assert one.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    assert one.axes[3].get_ylabel().startswith("step 160\n")
    img = figure_to_array(one)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    with pytest.raises(ValueError, match="indices into the report's 4 snapshots"):
        snapshot_grid(rep, rows=[4])


def test_query_maps_and_home_cells_are_drawn_where_they_belong():
    rep = _report(S=2)
    fig = snapshot_grid(rep, rows=[1], clips=1, queries=[0])  # query 5 of a (1, 4, 4) cell grid: row 1, column 1
    ax = fig.axes[-1]
    rect = ax.patches[0]
    assert rect.get_xy() == (8 - 0.5, 8 - 0.5) and rect.get_width() == rect.get_height() == 8  # 32 / 4 pixels
    heat = ax.images[-1].get_array()
    assert heat.shape == (32, 32) and float(heat.max()) == pytest.approx(1.0)  # the map over the frame, max-scaled


def test_curves_have_four_panels_on_a_log_step_axis_and_mark_the_scrub_position():
    rep = _report()
    fig = snapshot_curves(rep, highlight=2)
    main = [ax for ax in fig.axes if ax.get_xlabel() == "training step"]
    assert len(main) == 4 and all(ax.get_xscale() == "log" for ax in main)
    for ax in main:  # a vertical line at the highlighted step
        assert any(list(ln.get_xdata()) == [160, 160] for ln in ax.get_lines())
    bits = main[2]
    assert any(list(ln.get_ydata()) == [6.0, 6.0] for ln in bits.get_lines())  # the uniform log2 K line
    plotted = [ln for ln in bits.get_lines() if len(ln.get_xdata()) == 4]
    assert np.allclose(plotted[0].get_ydata(), rep.prior_bits)
    assert not any(list(ln.get_xdata()) == [160, 160] for ax in snapshot_curves(rep).axes for ln in ax.get_lines())
