"""Looking inside LARP: pure functions returning arrays, tensors and small tables (no plotting).

Modules (figures for all of these live in :mod:`larp_lab.viz`):

* :mod:`.dataset` -- :func:`encode_dataset`: token ids, latents, labels, clips and reconstruction
  errors of a dataset, computed once;
* :mod:`.attention` -- where each holistic query looks (per layer and head), attention rollout,
  per-query centroids / spreads / entropies, object-mask statistics, upsampling for overlays;
* :mod:`.token_order` -- the prior's NLL under the learned, reversed and random orders; PSNR when
  keeping only the first k tokens (neutral fill or generator completion); per-position importance;
* :mod:`.likelihood` -- surprisal under the prior and the generator, per class and per position,
  Pearson / Spearman correlation with reconstruction error, most and least likely clips;
* :mod:`.latent` -- codebook usage, UMAP / PCA maps of codes and clips, nearest clips;
* :mod:`.surgery` -- edit a clip's tokens, the prior's alternatives at a position, token influence
  maps ("where does this token act", "which tokens control this pixel");
* :mod:`.compare` -- the same measurements of several tokenizers on the same clips (holistic vs
  patch tokens: reconstruction, prior bits, prefix curve, position importance, influence);
* :mod:`.patching` -- swap tokens or encoder query outputs between clips and measure what moved
  (digit, position, motion, colour); patch the generator's class embedding or residual stream.

Every function works on the model's device and returns CPU results; models are put in ``eval()``
for the call and restored afterwards. Importing this package is cheap (``umap`` is imported only
by ``embed_2d(method="umap")``).
"""

from .attention import (
    QueryStats,
    attention_rollout,
    encoder_attention,
    encoder_layers,
    motion_mask,
    pool_mask_to_grid,
    query_attention_maps,
    query_statistics,
    rollout_query_maps,
    specialisation_summary,
    upsample_maps,
)
from .compare import TokenizerComparison, TokenizerReport, compare_tokenizers, top_share
from .dataset import EncodedDataset, encode_dataset
from .latent import (
    clip_embeddings,
    clip_map,
    codebook_map,
    codebook_points,
    codebook_usage_stats,
    cosine_distances,
    embed_2d,
    hamming_distances,
    motion_energy,
    nearest_clips,
    token_points,
)
from .likelihood import (
    Extremes,
    LikelihoodReport,
    correlation,
    extreme_clips,
    generator_surprisal,
    pearson,
    per_class_table,
    per_position_mean,
    prior_surprisal,
    rankdata,
    score_dataset,
    spearman,
    to_bits,
)
from .locality import own_cell_chance, own_cell_share
from .patching import (
    ClipProperties,
    GeneratorPatch,
    PatchingSweep,
    clip_properties,
    generator_patch_effect,
    patch_query_outputs,
    patching_sweep,
    swap_tokens,
)
from .snapshots import (
    Snapshot,
    SnapshotError,
    SnapshotReport,
    bundled_snapshots,
    list_snapshots,
    measure_snapshots,
)
from .surgery import (
    InfluenceMap,
    TokenEdit,
    decode_edit,
    edit_tokens,
    influence_consistency,
    nearest_codes,
    parse_edits,
    parse_positions,
    prior_alternatives,
    token_influence,
)
from .token_order import (
    OrderNLL,
    PositionImportance,
    PrefixCurve,
    complete_prefix,
    default_ks,
    keep_prefix,
    neutral_code,
    position_importance,
    positional_neutral_codes,
    prefix_reconstruction_curve,
    prior_nll_under_order,
    token_order_nll,
)

__all__ = [
    "TokenizerComparison",
    "TokenizerReport",
    "compare_tokenizers",
    "top_share",
    "ClipProperties",
    "GeneratorPatch",
    "PatchingSweep",
    "clip_properties",
    "generator_patch_effect",
    "patch_query_outputs",
    "patching_sweep",
    "swap_tokens",
    "InfluenceMap",
    "TokenEdit",
    "decode_edit",
    "edit_tokens",
    "influence_consistency",
    "nearest_codes",
    "parse_edits",
    "parse_positions",
    "prior_alternatives",
    "token_influence",
    "EncodedDataset",
    "Extremes",
    "LikelihoodReport",
    "OrderNLL",
    "PositionImportance",
    "PrefixCurve",
    "QueryStats",
    "Snapshot",
    "SnapshotError",
    "SnapshotReport",
    "attention_rollout",
    "bundled_snapshots",
    "clip_embeddings",
    "clip_map",
    "codebook_map",
    "codebook_points",
    "codebook_usage_stats",
    "complete_prefix",
    "correlation",
    "cosine_distances",
    "default_ks",
    "embed_2d",
    "encode_dataset",
    "encoder_attention",
    "encoder_layers",
    "extreme_clips",
    "generator_surprisal",
    "hamming_distances",
    "keep_prefix",
    "list_snapshots",
    "measure_snapshots",
    "motion_energy",
    "motion_mask",
    "nearest_clips",
    "neutral_code",
    "own_cell_chance",
    "own_cell_share",
    "pearson",
    "per_class_table",
    "per_position_mean",
    "pool_mask_to_grid",
    "position_importance",
    "positional_neutral_codes",
    "prefix_reconstruction_curve",
    "prior_nll_under_order",
    "prior_surprisal",
    "query_attention_maps",
    "query_statistics",
    "rankdata",
    "rollout_query_maps",
    "score_dataset",
    "spearman",
    "specialisation_summary",
    "to_bits",
    "token_order_nll",
    "token_points",
    "upsample_maps",
]
