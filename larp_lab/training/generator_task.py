"""Training the AR generator on tokens precomputed once from a tokenizer.

Clips are tokenised a single time with the tokenizer in ``eval()`` (argmax VQ, the official
``eval_deterministic``), in batches through a DataLoader, and cached in
``<run>/token_cache/tokens.safetensors`` (with the tokenizer's checksum, the data config and, for
frame prediction, the tokens of the conditioning clips: the first ``cond_frames`` frames with the
last one repeated to the full length, as the official code does). 5% of the clips are held out
for the validation NLL.

Class-conditional training drops labels to the null class with ``class_dropout_prob`` (for CFG);
frame prediction conditions on the conditioning tokens plus the separator.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.video import repeat_last_frame
from ..models.generator import LARPGenerator, check_tokenizer_fit
from ..models.tokenizer import LARPTokenizer
from .config import GeneratorTrainConfig
from .data import build_dataset


def generator_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The generator's optimizer groups: weight decay on matrices, none on embedding tables, the
    absolute position table ``abs_pe``, norms and biases."""
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n and n != "abs_pe"]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n and n != "abs_pe")]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def tokenizer_checksum(tok: LARPTokenizer) -> str:
    h = hashlib.sha256()
    for k, v in sorted(tok.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
        h.update(str(tuple(v.shape)).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def tokenize_dataset(
    tok: LARPTokenizer, dataset: Dataset, *, batch_size: int = 32, cond_frames: int | None = None,
    num_workers: int = 0, device: torch.device | str = "cpu", progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Tokenise every clip of ``dataset``: {"tokens": (n, N) int32, "labels": (n,) int64[, "cond": (n, N)]}."""
    tok = tok.to(device).eval()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=lambda b: (torch.stack([x["video"] for x in b]), torch.tensor([int(x.get("label", -1)) for x in b])),
    )
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="tokenizing", leave=False)
    tokens, labels, conds = [], [], []
    for video, label in loader:
        video = video.to(device)
        tokens.append(tok.encode(video).indices.to(torch.int32).cpu())
        labels.append(label)
        if cond_frames is not None:
            conds.append(tok.encode(repeat_last_frame(video, cond_frames)).indices.to(torch.int32).cpu())
    out = {"tokens": torch.cat(tokens), "labels": torch.cat(labels)}
    if cond_frames is not None:
        out["cond"] = torch.cat(conds)
    return out


class TokenDataset(Dataset):
    def __init__(self, data: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        self.data, self.rows = data, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = int(self.rows[i])
        return {k: v[r] for k, v in self.data.items()}


class GeneratorTask:
    display_keys = ("loss", "val_nll")

    def __init__(self, cfg: GeneratorTrainConfig, tokenizer: LARPTokenizer, run_dir: Path, device: torch.device,
                 is_main: bool = True, barrier=lambda: None, progress: bool = True) -> None:
        self.cfg, self.device, self.progress = cfg, device, progress
        self.tokenizer = tokenizer.to(device).eval()
        m = cfg.model
        try:
            check_tokenizer_fit(m, tokenizer.config)
        except ValueError as e:
            raise ValueError(f"{e}; set model_overrides num_tokens/vocab_size (and cls_token_num)") from None
        if (cfg.data.frames, cfg.data.size) != (tokenizer.config.frame_num, tokenizer.config.input_size):
            raise ValueError("data frames/size must equal the tokenizer's frame_num/input_size")
        self.model = LARPGenerator(m)
        self.shuffle = True
        data = self._token_cache(run_dir, is_main, barrier)
        n = len(data["tokens"])
        n_val = max(1, n // 20)
        self.data = data
        self.train_dataset = TokenDataset(data, torch.arange(0, n - n_val))
        self.val_rows = torch.arange(n - n_val, n)

    def _token_cache(self, run_dir: Path, is_main: bool, barrier) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file, save_file

        cfg = self.cfg
        key = {
            "tokenizer": tokenizer_checksum(self.tokenizer),
            "data": cfg.data.to_dict(),
            "num_train_clips": cfg.num_train_clips,
            "cond_frames": cfg.cond_frames if cfg.model.frame_prediction else None,
        }
        cache = run_dir / "token_cache"
        path, meta_path = cache / "tokens.safetensors", cache / "meta.json"
        fresh = meta_path.is_file() and path.is_file() and json.loads(meta_path.read_text()) == key
        if not fresh and is_main:
            ds = build_dataset(cfg.data, train=True, num_clips=cfg.num_train_clips)
            data = tokenize_dataset(
                self.tokenizer, ds, cond_frames=cfg.cond_frames if cfg.model.frame_prediction else None,
                num_workers=cfg.data.num_workers, device=self.device, progress=self.progress,
            )
            cache.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in data.items()}, str(path))
            meta_path.write_text(json.dumps(key))
        barrier()
        return load_file(str(path))

    # -------------------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        return generator_param_groups(self.model)

    def collate(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}

    def _cond(self, batch: dict) -> torch.Tensor:
        return batch["cond"].long() if self.cfg.model.frame_prediction else batch["labels"].long()

    def loss(self, model: nn.Module, batch: dict, step: int, max_steps: int):
        tokens = batch["tokens"].long()
        logits = model(tokens, self._cond(batch))
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        return loss, {"loss": loss.item()}

    def after_step(self, batch: dict, step: int) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def validation_nll(self, model: LARPGenerator) -> float:
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(self.val_rows), 64):
            rows = self.val_rows[i : i + 64]
            tokens = self.data["tokens"][rows].long().to(self.device)
            cond = (self.data["cond"][rows] if self.cfg.model.frame_prediction else self.data["labels"][rows]).long()
            ll = model.token_log_likelihood(tokens, cond.to(self.device))
            total += -float(ll.sum())
            count += ll.numel()
        return total / max(1, count)

    @torch.no_grad()
    def evaluate(self, model: LARPGenerator, step: int, run_dir: Path) -> dict[str, float]:
        from ..data.video import save_frame_grid, side_by_side, video_grid, write_video

        metrics = {"val_nll": self.validation_nll(model)}
        g = torch.Generator(device=self.device).manual_seed(0)
        samples = run_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        if self.cfg.model.frame_prediction:
            rows = self.val_rows[:4]
            cond = self.data["cond"][rows].long().to(self.device)
            idx = model.sample(cond, generator=g)
            pred = self.tokenizer.decode_indices(idx).clamp(-1, 1).cpu()
            truth = self.tokenizer.decode_indices(self.data["tokens"][rows].long().to(self.device)).clamp(-1, 1).cpu()
            metrics["token_accuracy"] = float((idx.cpu() == self.data["tokens"][rows].long()).float().mean())
            clips = [side_by_side([truth[i], pred[i]]) for i in range(len(rows))]
        else:
            n_cls = min(self.cfg.model.num_classes, 8)
            labels = torch.arange(n_cls, device=self.device)
            idx = model.sample(labels, cfg_scale=self.cfg.sample_cfg_scale, generator=g)
            clips = list(self.tokenizer.decode_indices(idx).clamp(-1, 1).cpu())
        write_video(samples / f"samples_step{step:07d}.mp4", video_grid(clips, nrow=4), fps=8)
        save_frame_grid(samples / f"samples_step{step:07d}.png", clips)
        return metrics

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
