"""The plateau experiment's code paths (a few steps; the committed result comes from a full run)."""

from __future__ import annotations

import importlib.util
import json
import math

import torch
from conftest import REPO


def _module():
    spec = importlib.util.spec_from_file_location("plateau", REPO / "experiments" / "plateau.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_both_autoencoders_reconstruct_the_input_shape_and_differ_only_in_tokens():
    mod = _module()
    model = mod.build(tokens=16, seed=0)
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    with torch.no_grad():
        assert mod.tokens_of(model, x, "holistic").shape == (2, 16, 16)
        assert mod.tokens_of(model, x, "patch").shape == (2, 32, 16)  # one per 8x8x4 patch
        for v in mod.VARIANTS:
            assert mod.reconstruct(model, x, v).shape == x.shape
        # the holistic path is exactly the tokenizer's own continuous encode/decode
        z = mod.tokens_of(model, x, "holistic")
        ref = model.decode(model.bottleneck.out_linear(z), (8, 32, 32))
        assert torch.equal(mod.reconstruct(model, x, "holistic"), ref)


def test_a_short_run_writes_its_json_and_plot(tmp_path):
    mod = _module()
    assert mod.main(["--steps", "3", "--eval-every", "3", "--probe-train", "20", "--name", "t",
                     "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "t.json").read_text())
    assert set(out["variants"]) == {"holistic", "patch"}
    for r in out["variants"].values():
        assert [s for s, _ in r["curve"]] == [0, 3]
        assert math.isfinite(r["layout_r2_init"]) and r["layout_r2_init"] <= 1.0  # 20 probe clips: any sign
    assert 10 < out["flat_mean_colour_psnr"] < 40
    assert (tmp_path / "t.png").stat().st_size > 10_000
