"""The training loop: seeded, deterministic data order, hard-negative mining, progress lines.

A study is scored by its most suspicious slice, so one confident false-positive slice makes a
false-positive study. Each epoch therefore trains on every positive and a set of negatives of
which a share are the pool's currently hardest (highest-scoring) ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inference.training.model import CamNet

Log = Callable[[str], None]
MAX_THREADS = 2  # the training machines are shared; never take more cores than this
SCORING_BATCH = 256


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Which inputs an epoch trains on. `negatives_per_positive=None`: every input, every epoch."""

    negatives_per_positive: float | None = None
    hard_fraction: float = 0.5  # share of an epoch's negatives that are the hardest in the pool
    mine_from_epoch: int = 2  # epoch 1 sees random negatives only


@dataclass(frozen=True, kw_only=True)
class TrainingResult:
    model: CamNet
    epochs: int
    seconds: float
    final_loss: float
    inputs_per_epoch: int


def torch_seed(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(min(MAX_THREADS, torch.get_num_threads()))
    torch.use_deterministic_algorithms(True)


def pool_logits(model: CamNet, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Logits of `features[index]` in eval mode (no gradient)."""
    model.eval()
    scores = []
    with torch.no_grad():
        for start in range(0, index.numel(), SCORING_BATCH):
            logit, _ = model(features[index[start : start + SCORING_BATCH]])
            scores.append(logit.reshape(-1))
    model.train()
    return torch.cat(scores) if scores else torch.empty(0)


def epoch_index(
    *,
    model: CamNet,
    features: torch.Tensor,
    labels: torch.Tensor,
    sampling: Sampling,
    epoch: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The inputs of one epoch, shuffled: all positives plus drawn (partly hard) negatives."""
    positives = torch.nonzero(labels > 0.5).reshape(-1)
    negatives = torch.nonzero(labels <= 0.5).reshape(-1)
    if sampling.negatives_per_positive is None:
        chosen = torch.arange(labels.numel())
    else:
        wanted = min(negatives.numel(), round(sampling.negatives_per_positive * positives.numel()))
        hard = round(wanted * sampling.hard_fraction) if epoch >= sampling.mine_from_epoch else 0
        hardest = torch.empty(0, dtype=torch.long)
        if hard:
            hardest = negatives[torch.topk(pool_logits(model, features, negatives), hard).indices]
        rest = negatives[~torch.isin(negatives, hardest)]
        drawn = rest[torch.randperm(rest.numel(), generator=generator)[: wanted - hard]]
        chosen = torch.cat([positives, hardest, drawn])
    return chosen[torch.randperm(chosen.numel(), generator=generator)]


def model_train(
    *,
    inputs: np.ndarray,
    targets: np.ndarray,
    cells: np.ndarray,
    model: CamNet,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    sampling: Sampling,
    cell_loss_weight: float,
    seed: int,
    log: Log,
    progress_lines_per_epoch: int = 2,
) -> TrainingResult:
    """Train `model` (freshly initialised after torch_seed) on (n, C, h, w) inputs with binary
    targets, with random left-right flips. Classes are weighted to count equally per epoch.

    `cells` (n, 8, 8) marks where each input's lesion is: with `cell_loss_weight` > 0 the
    activation map's cells are also trained against it, so the map learns to point at lesions
    and a small lesion is learnt from its own cells rather than from the whole image's label.
    """
    generator = torch.Generator().manual_seed(seed)
    features = torch.from_numpy(inputs)
    labels = torch.from_numpy(targets.astype(np.float32))
    cell_labels = torch.from_numpy(cells.astype(np.float32))
    cell_loss = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    first = epoch_index(
        model=model,
        features=features,
        labels=labels,
        sampling=sampling,
        epoch=1,
        generator=generator,
    )
    per_epoch = first.numel()
    batches = (per_epoch + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=epochs * batches, pct_start=0.2
    )
    report_every = max(1, batches // progress_lines_per_epoch)
    started = time.monotonic()
    running, seen = 0.0, 0
    model.train()
    for epoch in range(1, epochs + 1):
        order = (
            first
            if epoch == 1
            else epoch_index(
                model=model,
                features=features,
                labels=labels,
                sampling=sampling,
                epoch=epoch,
                generator=generator,
            )
        )
        epoch_labels = labels[order]
        positives = float(epoch_labels.sum())
        pos_weight = torch.tensor([(order.numel() - positives) / max(positives, 1.0)])
        loss_function = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        running, seen = 0.0, 0
        for batch in range(batches):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            if index.numel() == 0:
                break
            x = features[index]
            where = cell_labels[index]
            flip = torch.rand(index.numel(), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            where = torch.where(flip[:, None, None], where.flip(-1), where)
            logit, cam = model(x)
            loss = loss_function(logit.reshape(-1), labels[index])
            if cell_loss_weight > 0:
                loss = loss + cell_loss_weight * cell_loss(cam, where)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach()) * index.numel()
            seen += index.numel()
            done = batch + 1
            if done == batches or (done % report_every == 0 and batches - done > report_every // 2):
                log(
                    f"  epoch {epoch}/{epochs} batch {batch + 1}/{batches} "
                    f"loss {running / seen:.4f} {time.monotonic() - started:.0f}s"
                )
    model.eval()
    return TrainingResult(
        model=model,
        epochs=epochs,
        seconds=round(time.monotonic() - started, 1),
        final_loss=running / max(seen, 1),
        inputs_per_epoch=per_epoch,
    )
