"""The sampling benchmark's code (no timings are checked): FLOP counts, the per-step profile's counts,
the official-code loader skipping cleanly, the CLI entry."""

from __future__ import annotations

import json

import pytest
import torch

from larp_lab.bench_official import find_official_repo, load_official_ar
from larp_lab.bench_sampling import (
    SamplingBenchConfig,
    build_generator,
    run_sampling_benchmarks,
    sampling_flops,
)
from larp_lab.config import GeneratorConfig


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=2), dict(frame_prediction=True, cls_token_num=9)])
def test_sampling_flops_match_a_flop_counter(kw):
    """The matmul FLOPs equal what torch's FLOP counter sees in one teacher-forced pass over the same
    positions; the causal attention count is the full-matrix count times (P + 1) / (2P)."""
    from torch.utils.flop_counter import FlopCounterMode

    from larp_lab import LARPGenerator
    from larp_lab.models.layers import plain_attention

    cfg = GeneratorConfig(dim=64, n_layer=2, n_head=4, vocab_size=64, num_tokens=8, num_classes=5, **kw)
    gen = LARPGenerator(cfg).eval()
    B = 3
    z = torch.zeros(B, 8, dtype=torch.long)
    cond = torch.zeros(B, 8, dtype=torch.long) if cfg.frame_prediction else torch.zeros(B, dtype=torch.long)
    with FlopCounterMode(display=False) as fc, torch.no_grad(), plain_attention():  # attention as countable bmm
        gen(z, cond)
    counted = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    mm, attn = counted["aten.mm"], counted["aten.bmm"]
    ours = sampling_flops(cfg, B, 8)
    assert ours["matmul"] == mm
    P = cfg.cls_token_num + 7
    assert ours["attention"] == pytest.approx(attn * (P + 1) / (2 * P))


def test_official_loader_skips_when_absent(tmp_path):
    assert find_official_repo(tmp_path / "nowhere") is None
    assert load_official_ar(tmp_path / "nowhere") is None


def test_grid_and_profile_run_and_report(tmp_path):
    small = GeneratorConfig(dim=64, n_layer=2, n_head=4, vocab_size=64, num_tokens=8, num_classes=5)
    bc = SamplingBenchConfig(model=small, batches=(1,), lengths=(4,), cfg_scales=(1.0, 1.5), repeat=1,
                             official_repo=str(tmp_path / "nowhere"), profile=(2, 6, 1.5), micro_calls=5)
    res = run_sampling_benchmarks(bc, out=tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["config"]["batches"] == [1]
    assert res["official"].startswith("skipped")
    assert [(r["batch"], r["length"], r["cfg_scale"], r["rows"]) for r in res["grid"]] == [(1, 4, 1.0, 1), (1, 4, 1.5, 2)]
    for r in res["grid"]:
        assert r["tokens_per_s"] > 0 and r["floor_peak_s"] > 0 and r["floor_gemm_shapes_s"] > 0
        assert r["official_seconds"] is None and r["speedup_vs_official"] is None
    p = res["profile"]
    before, after = p["counts"]["module path"], p["counts"]["fast path"]
    assert after["aten_ops_from_python"] < before["aten_ops_from_python"]
    assert after["python_calls"] < before["python_calls"]
    assert after["allocating_ops"] < before["allocating_ops"]
    # the module path's torch.multinomial synchronises twice per step; the fast path only before the loop
    assert before["host_syncs"] * 6 >= 2 * 5 and after["host_syncs"] * 6 <= 2
    assert dict(p["breakdown"]).keys() >= {"GEMMs (timed alone at their shapes)", "KV-cache writes (one copy per layer)"}


@pytest.mark.skipif(find_official_repo() is None, reason="no local copy of github.com/hywang66/LARP")
@pytest.mark.filterwarnings("ignore::FutureWarning")  # the official code's sdp_kernel context
def test_official_code_samples_the_same_ids():
    """Where the official code is at hand: same weights, same global seed -> the same ids (CFG on)."""
    off = load_official_ar()
    gen = build_generator("micro", 6, torch.device("cpu"))
    official = off.build(gen.config, gen.state_dict(), torch.device("cpu"))
    labels = torch.tensor([1, 7])
    torch.manual_seed(4)
    theirs = official.sample(labels, cfg_scale=1.5, temperature=1.0, top_k=0, top_p=1.0)
    torch.manual_seed(4)
    assert torch.equal(gen.sample(labels, cfg_scale=1.5), theirs.long())


def test_cli_entry(tmp_path):
    from larp_lab.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", "--sampling", "--batches", "1", "--lengths", "3", "--cfg-scales", "1.5", "--repeat", "1",
               "--profile", "none", "--no-official", "--micro-calls", "3", "--model", "micro",
               "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["profile"] is None and len(res["grid"]) == 1 and res["official"] is None
