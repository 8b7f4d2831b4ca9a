"""The jobs the CLI, the app and the benchmarks run, written once.

Each pipeline takes models and inputs and returns a typed result: videos as float32
(B, 3, T, H, W) tensors in [-1, 1], token ids as int64, a ``metrics`` dict (PSNR and SSIM from
:mod:`larp_lab.evaluation.metrics`), ``timings_ms``, and for a video file a
:class:`ClipSource` saying what the model was given (its first ``frame_num`` frames from the start
time, at an ``input_size`` centre crop)::

    from larp_lab import pipelines

    r = pipelines.reconstruct(tok, "clip.mp4", start_time=2.0)
    print(r.source.describe(), r.metrics["psnr_db"])
    pipelines.save_side_by_side("both.mp4", r.original, r.reconstruction)

* :func:`reconstruct` (tokenize, decode, measure), :func:`generate` (class-conditional samples),
  :func:`predict` (frame prediction against the repeat-last-frame baseline), :func:`complete`
  (keep the first k tokens, fill in the rest by the tokenizer's prior or a generator);
* :func:`load_clip` reads a file the way a tokenizer sees it;
* ``save_*`` write results (MP4/GIF, side by side, token files); the pipelines themselves write nothing.
"""

from .inputs import ClipSource, load_clip
from .reconstruction import Reconstruction, reconstruct
from .sampling import Completion, Generation, Prediction, complete, generate, predict
from .saving import save_clips, save_reconstruction, save_side_by_side, save_tokens, save_video

__all__ = [
    "ClipSource",
    "Completion",
    "Generation",
    "Prediction",
    "Reconstruction",
    "complete",
    "generate",
    "load_clip",
    "predict",
    "reconstruct",
    "save_clips",
    "save_reconstruction",
    "save_side_by_side",
    "save_tokens",
    "save_video",
]
