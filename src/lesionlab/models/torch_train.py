"""The PyTorch training loop shared by linear probes (heads on cached embeddings) and fine-tuning.

What a variant can switch on (``probe:`` / ``finetune:`` in params.yaml): AdamW with linear warmup
then cosine decay (per step), early stopping on validation balanced accuracy (best weights kept),
cross-entropy or focal loss, label smoothing, class weights, class-balanced sampling, mixup /
cutmix, an exponential moving average (EMA) of the weights. The loop is framework-plain: the
caller supplies ``make_batch(indices, train)`` and ``predict_val(model)``.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lesionlab.config import BackboneParams
from lesionlab.models.fitting import BestEpoch, FitResult, balanced_class_weights


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear from ~0 to 1 over ``warmup`` steps, then cosine down to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ema_average(decay: float):
    """EMA update with a warmup of the decay, min(decay, (1 + n) / (10 + n)) after n updates (as timm does):
    early averages are not dominated by the random head of the first steps. A ``multi_avg_fn`` of
    :class:`torch.optim.swa_utils.AveragedModel`: one ``foreach`` lerp over all floating-point tensors of a
    device (a per-tensor Python loop of three operations per tensor was a few per cent of a full
    EfficientNet-Lite0 fine-tune's step on 2 CPU cores); integer buffers (BatchNorm's batch counters) take the
    model's values."""

    def average(averaged: list, current: list, n) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:
            torch._foreach_copy_(averaged, current)

    return average


def soft_targets(y: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    onehot = F.one_hot(y, n_classes).float()
    return onehot * (1.0 - smoothing) + smoothing / n_classes


def loss_fn(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None, loss: str, gamma: float
) -> torch.Tensor:
    """Soft-target cross-entropy (or focal loss), optionally weighted by class; mean over the batch."""
    logp = F.log_softmax(logits, dim=1)
    per_class = -targets * logp
    if loss == "focal":
        per_class = per_class * (1.0 - logp.exp()).pow(gamma)
    per_sample = per_class.sum(dim=1)
    if class_weights is not None:
        per_sample = per_sample * (targets @ class_weights)
    return per_sample.mean()


def mix(x: torch.Tensor, targets: torch.Tensor, cfg: BackboneParams, rng: np.random.Generator):
    """Mixup (any input) or CutMix (images, NHWC): one of them per batch when both are on."""
    choices = [m for m, a in (("mixup", cfg.mixup), ("cutmix", cfg.cutmix)) if a > 0]
    if not choices:
        return x, targets
    kind = choices[rng.integers(len(choices))]
    lam = float(rng.beta(cfg.mixup, cfg.mixup) if kind == "mixup" else rng.beta(cfg.cutmix, cfg.cutmix))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    if kind == "mixup":
        mixed = lam * x.float() + (1 - lam) * x[perm].float()
        return mixed.to(x.dtype) if not x.dtype.is_floating_point else mixed, lam * targets + (1 - lam) * targets[perm]
    h, w = x.shape[1], x.shape[2]
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1, x0, x1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[:, y0:y1, x0:x1] = x[perm, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * targets + (1 - lam) * targets[perm]


def epoch_order(y: np.ndarray, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """One epoch of training indices: a shuffle, or a class-balanced draw (with replacement) of the same length."""
    if sampler == "class_balanced":
        counts = np.bincount(y)
        p = 1.0 / counts[y]
        return rng.choice(len(y), size=len(y), replace=True, p=p / p.sum())
    return rng.permutation(len(y))


def fit(
    model: nn.Module,
    make_batch,
    y_train: np.ndarray,
    predict_val,
    y_val: np.ndarray,
    cfg: BackboneParams,
    n_classes: int,
    seed: int,
    device: str,
    progress: bool = True,
    label: str = "",
    autocast=contextlib.nullcontext,
    dist=None,
) -> FitResult:
    """Train ``model`` in place; afterwards it holds the best epoch's weights (EMA weights when ``cfg.ema``).

    With ``dist`` (:class:`lesionlab.models.distributed.Dist`, under torchrun) the model trains data-parallel:
    each process takes its slice of every global batch and DDP averages the gradients."""
    from torch.optim.swa_utils import AveragedModel

    rng = np.random.default_rng(seed)  # the epoch order: the same in every process
    # mixup / cutmix draws: per process under DDP (slices differ), else the same stream as the epoch order
    mix_rng = np.random.default_rng([seed, dist.rank]) if dist is not None else rng
    trained = dist.wrap(model) if dist is not None else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(y_train) / cfg.batch_size)
    total, warmup = steps * cfg.epochs, steps * cfg.warmup_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    weights = None
    if cfg.class_weights:
        weights = torch.tensor(balanced_class_weights(y_train, n_classes), dtype=torch.float32, device=device)
    ema = AveragedModel(model, multi_avg_fn=ema_average(cfg.ema), use_buffers=True) if cfg.ema else None
    scored = ema.module if ema is not None else model
    tracker, best_state = BestEpoch(y_val, n_classes, cfg.epochs, cfg.patience, label, progress), None
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        trained.train()
        order, running, correct, seen = epoch_order(y_train, cfg.sampler, rng), 0.0, 0, 0
        bar = tracker.batches(epoch, steps)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if dist is not None:
                if len(idx) < dist.world:  # a last batch too small to give every process an image
                    continue
                idx = dist.shard(idx)
            x = make_batch(idx, True).to(device)
            targets = soft_targets(torch.from_numpy(y_train[idx]).to(device), n_classes, cfg.label_smoothing)
            x, targets = mix(x, targets, cfg, mix_rng)
            with autocast():  # bfloat16 where lesionlab.models.compute chose it; the loss in float32
                logits = trained(x).float()
            loss = loss_fn(logits, targets, weights, cfg.loss, cfg.focal_gamma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            running += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(dim=1) == targets.argmax(dim=1)).sum())
            seen += len(idx)
            bar.update(1)
        bar.close()
        if dist is not None:  # the epoch's loss and accuracy over every process' slices
            running, correct, seen = dist.sum([running, correct, seen])
        seconds = time.perf_counter() - started
        scored.eval()
        if tracker.end_epoch(
            epoch,
            predict_val(scored),
            running / max(seen, 1),
            correct / max(seen, 1),
            seconds,
            seen,
            optimizer.param_groups[0]["lr"],
        ):
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
        if tracker.stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return tracker.result


def augment_batch(
    images: torch.Tensor, rng: np.random.Generator, zoom: float, brightness: float, contrast: float
) -> torch.Tensor:
    """Random dihedral view per image (lesions have no "up"), mild zoom and brightness/contrast; uint8 NHWC in/out."""
    out = []
    n, h, w, _ = images.shape
    for img in images:
        view = int(rng.integers(8))
        img = torch.rot90(img, view % 4, dims=(0, 1))
        if view >= 4:
            img = torch.flip(img, dims=(1,))
        if zoom > 0:
            scale = 1.0 - float(rng.uniform(0, zoom))
            ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
            y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            crop = img[y0 : y0 + ch, x0 : x0 + cw].permute(2, 0, 1)[None].float()
            img = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        out.append(img.float())
    x = torch.stack(out)
    if brightness or contrast:
        b = torch.from_numpy(rng.uniform(-brightness, brightness, (n, 1, 1, 1))).float() * 255.0
        c = torch.from_numpy(rng.uniform(1 - contrast, 1 + contrast, (n, 1, 1, 1))).float()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + b
    return x.clamp(0, 255).round().to(torch.uint8)


@torch.no_grad()
def predict_images(
    model: nn.Module, images: np.ndarray, device: str, batch_size: int = 32, autocast=contextlib.nullcontext
) -> np.ndarray:
    """Softmax over uint8 NHWC images, in eval mode, batch by batch."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        with autocast():
            logits = model(torch.from_numpy(np.array(images[i : i + batch_size])).to(device))
        out.append(F.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))
