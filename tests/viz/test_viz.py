"""larp_lab.viz: every figure builds from analysis outputs and saves; overlay videos stay in range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import larp_lab.analysis as A
import larp_lab.viz as V
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.data.synthetic import CLASS_NAMES, SyntheticVideos
from larp_lab.models.generator import LARPGenerator
from larp_lab.models.tokenizer import LARPTokenizer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _perturb(model, scale):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def res():
    """Every analysis result the figures draw, on micro random models (about 0.3 s)."""
    torch.manual_seed(0)
    tok = _perturb(LARPTokenizer(TOKENIZER_PRESETS["micro"]()), 0.1)
    gen = _perturb(LARPGenerator(GENERATOR_PRESETS["micro"]()), 0.05)
    data = A.encode_dataset(tok, SyntheticVideos(12, frames=8, size=32, seed=1), n=6, batch_size=6)
    _, cache = A.encoder_attention(tok, data.videos[:2])
    maps = A.query_attention_maps(cache)
    roll = A.rollout_query_maps(A.attention_rollout(cache), cache.layout)
    rep = A.score_dataset(tok, data, gen, cond=data.labels % 10)
    return {
        "tok": tok,
        "data": data,
        "maps": maps,
        "roll": roll,
        "stats": A.query_statistics(roll, mask=A.motion_mask(data.videos[:2])),
        "order": A.token_order_nll(tok, data.indices, num_random=3),
        "neutral": A.prefix_reconstruction_curve(tok, data.videos, data.indices, ks=[0, 8, 16]),
        "generated": A.prefix_reconstruction_curve(tok, data.videos, data.indices, ks=[0, 8, 16], mode="generator",
                                                   gen=gen, cond=data.labels % 10),
        "importance": A.position_importance(tok, data.videos[:2], data.indices[:2]),
        "report": rep,
    }


def _static_figures(r):
    d, rep = r["data"], r["report"]
    last = r["maps"][:, -1].mean(1)  # (B, N, t, h, w) head-averaged last layer
    coords = A.embed_2d(A.clip_embeddings(d.latents), "pca")
    return {
        "attention_grid": V.attention_grid(last, d.videos[:2], clip=1, queries=[0, 3, 15]),
        "attention_grid_bare": V.attention_grid(last, normalize="global", include_mean=False),
        "rollout": V.rollout_figure(r["roll"], d.videos[:2], normalize="minmax"),
        "layer_head": V.layer_head_grid(r["maps"], query=2),
        "centroids": V.query_centroid_scatter(r["stats"], clip=1, frame=d.videos[1, :, 0]),
        "nll_order": V.nll_order_curves(r["order"], bits=True, smooth=3),
        "psnr_vs_k": V.psnr_vs_k({"neutral": r["neutral"], "generator": r["generated"]}),
        "psnr_vs_k_one": V.psnr_vs_k(r["neutral"]),
        "importance": V.position_importance_bar(r["importance"]),
        "importance_top": V.position_importance_bar(r["importance"], top=4),
        "surprisal_heatmap": V.surprisal_heatmap(rep.prior, labels=d.labels, class_names=CLASS_NAMES),
        "surprisal_strip": V.surprisal_strip(rep.prior[0], d.indices[0]),
        "generator_strip": V.surprisal_strip(rep.generator[0], d.indices[0], first_position=0, bits=False),
        "per_class": V.per_class_bars(A.per_class_table(rep.prior_clip, d.labels, CLASS_NAMES), sort=True),
        "scatter": V.likelihood_error_scatter(rep.prior_clip, rep.error, labels=d.labels, class_names=CLASS_NAMES),
        "usage": V.codebook_usage_histogram(A.codebook_usage_stats(d.indices, 64)["counts"]),
        "umap_static": V.embedding_scatter_static(coords, d.labels, class_names=CLASS_NAMES),
        "umap_static_cont": V.embedding_scatter_static(coords, A.motion_energy(d.videos), color_title="motion"),
        "token_grid": V.token_id_grid(d.indices[0], 64),
        "token_grid_batch": V.token_id_grid(d.indices, 64, annotate=False),
    }


def test_static_figures_build_and_save(res, tmp_path):
    figs = _static_figures(res)
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
        assert isinstance(fig.canvas, FigureCanvasAgg), name  # headless, no pyplot
        path = V.save_figure(fig, tmp_path / f"{name}.png")
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, name
    # grid layout: (mean row + 3 queries) x t slots with a clip
    assert len(figs["attention_grid"].axes) == 4 * 2
    assert len(figs["attention_grid_bare"].axes) == 8 * 2
    assert len(figs["layer_head"].axes) == 2 * 4
    with pytest.raises(ValueError):
        V.attention_grid(res["roll"], normalize="max")


def test_figure_helpers(res, tmp_path):
    fig = V.nll_order_curves(res["order"])
    png = fig._repr_png_()
    assert png.startswith(PNG_MAGIC)
    img = V.figure_to_array(fig, dpi=50)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    assert V.save_figure(fig, tmp_path / "sub" / "f.svg").read_text().lstrip().startswith("<?xml")
    # a figure made elsewhere (no canvas of ours) saves too
    plain = Figure()
    plain.add_subplot().plot([0, 1], [1, 0])
    assert V.save_figure(plain, tmp_path / "plain.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(TypeError):
        V.save_figure(object(), tmp_path / "x.png")
    assert V.grid_shape(16) == (4, 4) and V.grid_shape(1024) == (32, 32) and V.grid_shape(12) == (3, 4)
    assert V.grid_shape(7) == (1, 7)
    rgb = V.apply_colormap(np.array([[-1.0, 0.0, 0.5, 2.0]]))
    assert rgb.shape == (1, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(rgb[0, 0], rgb[0, 1])  # clipped to [0, 1]
    assert len(set(V.category_colors(12))) == 12 and len(set(V.category_colors(5))) == 5


def test_plotly_figures(res, tmp_path):
    d, rep = res["data"], res["report"]
    coords = A.embed_2d(A.clip_embeddings(d.latents), "pca")
    fig = V.embedding_scatter(coords, d.labels, class_names=CLASS_NAMES, hover=[f"clip {i}" for i in range(6)],
                              title="clips")
    assert len(fig.data) == len(np.unique(d.labels.numpy()))
    assert fig.data[0].name == CLASS_NAMES[0] and fig.data[0].text[0] == "clip 0"
    cont = V.embedding_scatter(coords, A.motion_energy(d.videos), color_title="motion")
    assert len(cont.data) == 1 and cont.data[0].marker.showscale
    assert len(V.embedding_scatter(coords).data) == 1
    html = V.save_figure(fig, tmp_path / "clips.html").read_text()
    assert "plotly" in html.lower() and "clip 3" in html
    sc = V.likelihood_error_scatter(rep.prior_clip, rep.error, labels=d.labels, backend="plotly")
    assert "Spearman" in sc.layout.title.text
    assert V.save_figure(sc, tmp_path / "sc.json").stat().st_size > 100
    try:
        import kaleido  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="kaleido"):
            V.save_figure(sc, tmp_path / "sc.png")
    with pytest.raises(ValueError):
        V.likelihood_error_scatter(rep.prior_clip, rep.error, backend="bokeh")


def test_overlay_video(res, tmp_path):
    video = res["data"].videos[0]  # (3, T, H, W)
    heat = res["roll"][0, 5]  # (t, h, w) patch grid
    ov = V.overlay_video(video, heat, alpha=0.5)
    assert ov.shape == video.shape and ov.dtype == torch.float32
    assert ov.min() >= -1 and ov.max() <= 1
    assert not torch.allclose(ov, video)
    torch.testing.assert_close(V.overlay_video(video, heat, alpha=0.0), video.clamp(-1, 1))
    # alpha 1 shows only the colour map; a heat peak at one pixel is the colour map's top colour
    full = torch.zeros(8, 32, 32)
    full[3, 4, 5] = 2.0
    only = V.overlay_video(video, full, alpha=1.0, normalize="global")
    top = torch.tensor(V.apply_colormap(np.array(1.0))) * 2 - 1
    torch.testing.assert_close(only[:, 3, 4, 5], top)
    bottom = torch.tensor(V.apply_colormap(np.array(0.0))) * 2 - 1
    torch.testing.assert_close(only[:, 0, 0, 0], bottom)
    per_frame = V.overlay_video(video, torch.rand(8, 32, 32), normalize="frame", mode="nearest")
    assert per_frame.min() >= -1 and per_frame.max() <= 1
    with pytest.raises(ValueError):
        V.overlay_video(video, heat, normalize="max")
    with pytest.raises(ValueError):
        V.overlay_video(video[0], heat)
    from larp_lab.data.video import write_video

    assert write_video(tmp_path / "overlay.mp4", ov).stat().st_size > 0


def test_token_id_figures_show_ids_on_hover_or_in_small_grids(res):
    idx = res["data"].indices  # (6, 16) ids of a 64-code micro tokenizer
    big = torch.arange(256) % 64
    fig = V.token_id_heatmap(big, 64)
    hm = fig.data[0]
    assert np.asarray(hm.z).shape == (16, 16) and hm.text is None  # 256 cells: ids on hover only
    assert hm.hovertext[2][5] == f"token 37 (row 2, column 5)<br>code {37 % 64}"
    small = V.token_id_heatmap(idx[0], 64, title="")
    assert np.asarray(small.data[0].text).shape == (4, 4) and small.layout.title.text is None
    assert small.data[0].text[1][2] == str(int(idx[0, 6]))
    batch = V.token_id_heatmap(idx, 64, annotate=False)
    assert batch.data[0].hovertext[1][3] == f"clip 1, token 3<br>code {int(idx[1, 3])}"
    # the static grid writes the ids only into small grids
    assert len(V.token_id_grid(big, 64).axes[0].texts) == 0
    assert len(V.token_id_grid(idx[0], 64).axes[0].texts) == 16
    with pytest.raises(ValueError):
        V.token_id_heatmap(big, 64, shape=(3, 5))
