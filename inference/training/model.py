"""The compact CNN every shipped model uses: conv blocks to an 8x8 grid of cell logits (the class
activation map), pooled into one study-or-slice logit.

Each cell logit is the linear head applied to the last feature maps at that position (CAM with
the bias included). The logit pools the cells with log-sum-exp ("lse": a soft maximum, so one
small lesion in one cell can carry the score) or with their mean ("mean": classic global average
pooling). Either way the heat map is exactly what the score is computed from.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from inference.training.specs import CAM_CELLS as CAM_SIZE

POOLINGS = ("lse", "mean")


def conv_block(in_channels: int, out_channels: int, *, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CamNet(nn.Module):
    """Input (N, C, size, size) -> logit (N, 1) and class activation map (N, 8, 8)."""

    def __init__(
        self,
        *,
        in_channels: int,
        size: int,
        widths: tuple[int, ...] = (16, 32, 48, 64),
        repeats: tuple[int, ...] = (0, 0, 0, 0),
        downsample_first: bool = False,
        pooling: str = "lse",
    ) -> None:
        super().__init__()
        downsamplings = int(math.log2(size // CAM_SIZE))
        if CAM_SIZE * 2**downsamplings != size or downsamplings > len(widths):
            raise ValueError(f"input size {size} must be 8 * 2**k with k <= {len(widths)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        full = len(widths) - downsamplings
        # Full-resolution blocks first keep one-pixel detail; downsampling first is cheaper.
        strides = (
            [2] * downsamplings + [1] * full
            if downsample_first
            else [1] * full + [2] * (downsamplings)
        )
        blocks = []
        previous = in_channels
        for width, stride, repeat in zip(widths, strides, repeats, strict=True):
            blocks.append(conv_block(previous, width, stride=stride))
            blocks.extend(conv_block(width, width, stride=1) for _ in range(repeat))
            previous = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Conv2d(previous, 1, 1)
        self.pooling = pooling
        if pooling == "lse":
            # Start every cell at 1/64 odds, so the pooled logit starts near 0 (even odds).
            assert self.head.bias is not None  # nn.Conv2d has a bias unless told otherwise
            nn.init.constant_(self.head.bias, -math.log(CAM_SIZE * CAM_SIZE))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cam = self.head(self.features(inputs))[:, 0]  # (N, 8, 8) cell logits
        cells = cam.flatten(1)
        if self.pooling == "lse":
            logit = torch.logsumexp(cells, dim=1, keepdim=True)
        else:
            logit = cells.mean(dim=1, keepdim=True)
        return logit, cam
