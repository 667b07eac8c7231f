"""The world model's torch networks: a multimodal encoder and an action-conditioned latent predictor.

Imported lazily (torch is a train-time extra): by training, by export, and by the torch reference
backend, which rebuilds these modules from `reference.pt`. Both networks take physical units and hold
their own input normalization as buffers, so the ONNX files and the manifest speak rad, rad/s and pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

REFERENCE_FORMAT = 1


@dataclass(frozen=True)
class NetConfig:
    image_size: int = 64
    channels: tuple[int, int, int] = (16, 32, 32)
    visual_dim: int = 16
    proprio_dim: int = 4
    proprio_latent_dim: int = 16
    action_dim: int = 2
    hidden: int = 256

    @property
    def latent_dim(self) -> int:
        return self.visual_dim + self.proprio_latent_dim

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        return cls(**{**data, "channels": tuple(data["channels"])})


class SpatialSoftmax(nn.Module):
    """Per channel, the softmax-weighted mean (x, y) of the feature map: sub-pixel keypoints."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))  # (H*W, 2)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels = features.shape[:2]
        weights = torch.softmax(features.flatten(2) / self.log_temperature.exp(), dim=-1)  # (B, C, H*W)
        return (weights @ self.grid).reshape(batch, channels * 2)


class Encoder(nn.Module):
    """(normalized image [B,3,H,W], proprio [B,P] in rad and rad/s) -> latent [z_visual | z_proprio]."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        c1, c2, c3 = config.channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c1, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c2, c3, 3, padding=1),
        )
        side = config.image_size // 4
        self.keypoints = SpatialSoftmax(side, side)
        self.visual_head = nn.Sequential(
            nn.Linear(2 * c3, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.visual_dim),
        )
        self.proprio_head = nn.Sequential(
            nn.Linear(config.proprio_dim, 64), nn.GELU(),
            nn.Linear(64, config.proprio_latent_dim),
        )
        # Physical proprio -> unit scale; set from the training data before training.
        self.register_buffer("proprio_mean", torch.zeros(config.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(config.proprio_dim))

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        z_visual = self.visual_head(self.keypoints(self.conv(image)))
        z_proprio = self.proprio_head((proprio - self.proprio_mean) / self.proprio_std)
        return torch.cat([z_visual, z_proprio], dim=1)


class Predictor(nn.Module):
    """(latent [B,Z], physical action [B,A]) -> next latent one control period later (residual MLP)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim + config.action_dim, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.latent_dim),
        )
        self.register_buffer("action_scale", torch.ones(config.action_dim))

    def forward(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return latent + self.net(torch.cat([latent, action / self.action_scale], dim=1))


def save_reference(path: str | Path, config: NetConfig, encoder: Encoder, predictor: Predictor) -> None:
    """Weights plus architecture, loadable with `weights_only=True` (no pickled code)."""
    torch.save({"format": REFERENCE_FORMAT, "config": config.to_dict(), "encoder": encoder.state_dict(),
                "predictor": predictor.state_dict()}, str(path))


def load_reference(path: str | Path) -> tuple[NetConfig, Encoder, Predictor]:
    """Rebuild the eval-mode networks saved by `save_reference`."""
    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if data.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"{path}: reference weights format {data.get('format')!r}, expected {REFERENCE_FORMAT}")
    config = NetConfig.from_dict(data["config"])
    encoder, predictor = Encoder(config), Predictor(config)
    encoder.load_state_dict(data["encoder"])
    predictor.load_state_dict(data["predictor"])
    return config, encoder.eval(), predictor.eval()
