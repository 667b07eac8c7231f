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


class CoordinateChannels(nn.Module):
    """Appends x and y coordinate planes in [-1, 1] (CoordConv), so convolutions can tell where they are."""

    grid: torch.Tensor

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys])[None])  # (1, 2, H, W)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, self.grid.expand(image.shape[0], -1, -1, -1)], dim=1)


class Encoder(nn.Module):
    """(normalized image [B,3,H,W], proprio [B,P] in rad and rad/s) -> latent [z_visual | z_proprio]."""

    proprio_mean: torch.Tensor
    proprio_std: torch.Tensor

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        c1, c2, c3 = config.channels
        # The arm's pose is a position question, hence coordinate channels and a dense head over the map.
        self.conv = nn.Sequential(
            CoordinateChannels(config.image_size, config.image_size),
            nn.Conv2d(5, c1, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(),
        )
        side = config.image_size // 8
        self.visual_head = nn.Sequential(
            nn.Linear(c3 * side * side, config.hidden), nn.GELU(),
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
        z_visual = self.visual_head(self.conv(image))
        z_proprio = self.proprio_head((proprio - self.proprio_mean) / self.proprio_std)
        return torch.cat([z_visual, z_proprio], dim=1)


class Predictor(nn.Module):
    """(latent [B,Z], physical action [B,A]) -> next latent one control period later (residual MLP)."""

    action_scale: torch.Tensor

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim + config.action_dim, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.latent_dim),
        )
        # Start as "nothing moves" (next = current), so training only ever adds learned dynamics.
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.register_buffer("action_scale", torch.ones(config.action_dim))

    def forward(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return latent + self.net(torch.cat([latent, action / self.action_scale], dim=1))


class Rollout(nn.Module):
    """(latent [B,Z], actions [B,H,A]) -> latents [B,H,Z]: the predictor stepped over every action in turn."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        latents = []
        for step in range(actions.shape[1]):
            latent = self.predictor(latent, actions[:, step])
            latents.append(latent)
        return torch.stack(latents, dim=1)


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
