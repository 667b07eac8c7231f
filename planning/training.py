"""JEPA-style training of the world model (encoder + action-conditioned predictor) from recorded episodes.

Losses, on windows of horizon+1 consecutive ticks (docs/training.md explains each choice):

- prediction: the predictor rolls the first tick's latent forward under the recorded actions for
  `horizon` steps; each step is compared with the encoder's latent of that tick under stop-gradient.
- alignment (cross-modal): z_visual, computed from the image alone, must equal a fixed linear embedding
  of the normalized visual state measured at the same instant: the joint positions, or what a task names
  (a pushed object's pose beside them). This anchors the visual latent so that distances between visual
  latents grow steadily with the distance between states, which is what a planner scoring latent
  distance to a goal image needs.
- VICReg variance + covariance on z_proprio: the prediction loss alone would let the proprio branch
  collapse to a constant; these keep every dimension spread out and decorrelated.

Takes plain arrays (planning never imports runtime); seeded; torch is needed only here.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.nn import functional as F

from perception.manifest import ImageSpec
from perception.nets import Encoder, NetConfig, Predictor
from perception.preprocess import Preprocessor
from planning.visual_basis import visual_basis

PIXEL_SCALE = 1.0 / 255.0


@dataclass(frozen=True)
class EpisodeArrays:
    """One episode, row t of each array belonging to tick t."""

    frames: np.ndarray  # uint8 BGR (T, H, W, 3)
    q: np.ndarray  # joint positions (T, J) [rad]
    dq: np.ndarray  # joint velocities (T, J) [rad/s]
    actions: np.ndarray  # (T, A) command applied for the control period after frame t
    # (T, S) what the camera shows that the task is about (e.g. a pushed object's pose beside the pusher),
    # recorded in simulation; z_visual is anchored to it. None: to the joint positions q.
    visual_state: np.ndarray | None = None


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    epochs: int = Field(6, ge=1, description="Passes over all training windows.")
    time_budget_s: float | None = Field(None, gt=0, description="Stop after the epoch that crosses this.")
    batch_size: int = Field(64, ge=2, description="Windows per step (each window is horizon+1 frames).")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    horizon: int = Field(5, ge=1, description="Predictor steps rolled out per window.")
    visual_dim: int = Field(16, ge=2)
    proprio_latent_dim: int = Field(16, ge=1)
    hidden: int = Field(256, ge=8)
    channels: tuple[int, int, int] = (16, 32, 32)
    prediction_weight: float = Field(1.0, ge=0)
    alignment_weight: float = Field(10.0, ge=0)
    variance_weight: float = Field(1.0, ge=0)
    covariance_weight: float = Field(0.04, ge=0)
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of episodes held out for metrics.")
    threads: int = Field(2, ge=1)
    # CUDA trains the same networks on a GPU (docs/training.md, "On a GPU"); bit-reproducible on the CPU only.
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="Torch device: cpu, cuda or cuda:N.")

    @field_validator("device")
    @classmethod
    def _device_present(cls, device: str) -> str:
        if device != "cpu" and not torch.cuda.is_available():
            raise ValueError(f"torch {torch.__version__} sees no CUDA device (a CPU build of torch, or no GPU): "
                             f"train on a GPU machine with a CUDA build of torch, or use device cpu")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise ValueError(f"torch sees {torch.cuda.device_count()} CUDA device(s), so there is no {device}")
        return device


@dataclass
class TrainResult:
    config: NetConfig
    encoder: Encoder
    predictor: Predictor
    image: ImageSpec
    metrics: dict[str, Any]
    history: list[dict[str, float]]  # per epoch: the mean of each training loss, val_state_error, seconds


class _Dataset:
    """All episodes concatenated, plus the start index of every window that fits inside one episode."""

    def __init__(self, episodes: Sequence[EpisodeArrays], horizon: int) -> None:
        self.frames = np.concatenate([e.frames for e in episodes])
        self.proprio = np.concatenate([np.concatenate([e.q, e.dq], axis=1) for e in episodes]).astype(np.float32)
        self.visual_state = np.concatenate([e.q if e.visual_state is None else e.visual_state
                                            for e in episodes]).astype(np.float32)
        self.actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        offsets = np.cumsum([0] + [len(e.q) for e in episodes])
        self.starts = np.concatenate([np.arange(a, b - horizon) for a, b in itertools.pairwise(offsets)])
        self.horizon = horizon

    def window(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frames (B, H+1, ...), proprio (B, H+1, P), visual state (B, H+1, S) and actions (B, H, A)."""
        ticks = starts[:, None] + np.arange(self.horizon + 1)
        return self.frames[ticks], self.proprio[ticks], self.visual_state[ticks], self.actions[ticks[:, :-1]]


def _check_episodes(episodes: Sequence[EpisodeArrays], horizon: int) -> None:
    if not episodes:
        raise ValueError("training needs at least one episode")
    if len({e.visual_state is None for e in episodes}) > 1:
        raise ValueError("some episodes carry a visual state and some do not: record them all the same way")
    if len({(e.q if e.visual_state is None else e.visual_state).shape[1] for e in episodes}) > 1:
        raise ValueError("episodes differ in the number of visual state values")
    for i, e in enumerate(episodes):
        lengths = {len(e.frames), len(e.q), len(e.dq), len(e.actions)}
        if len(lengths) != 1:
            raise ValueError(f"episode {i}: frames, q, dq and actions differ in length ({sorted(lengths)})")
        if e.visual_state is not None and len(e.visual_state) != len(e.q):
            raise ValueError(f"episode {i}: {len(e.visual_state)} visual states for {len(e.q)} ticks")
        if len(e.q) <= horizon:
            raise ValueError(f"episode {i}: {len(e.q)} ticks, need more than the horizon ({horizon})")
        if e.frames.dtype != np.uint8 or e.frames.ndim != 4 or e.frames.shape[-1] != 3:
            raise ValueError(f"episode {i}: frames must be uint8 (T, H, W, 3), found {e.frames.dtype} "
                             f"{e.frames.shape}")


def _split(episodes: Sequence[EpisodeArrays], val_fraction: float) -> tuple[list[EpisodeArrays], list[EpisodeArrays]]:
    """The last episodes are held out (at least one when there are two or more and val_fraction > 0)."""
    held = min(len(episodes) - 1, max(1, round(len(episodes) * val_fraction))) if val_fraction > 0 else 0
    return list(episodes[: len(episodes) - held]), list(episodes[len(episodes) - held:])


def _image_spec(frames: np.ndarray) -> ImageSpec:
    """Per-channel statistics of the training frames (a subsample of up to ~1000), in the model's RGB order."""
    sample = frames[:: max(1, len(frames) // 1000)]
    pixels = sample.reshape(-1, 3)[:, ::-1].astype(np.float64) * PIXEL_SCALE
    return ImageSpec(width=frames.shape[2], height=frames.shape[1], channel_order="RGB", layout="NCHW",
                     scale=PIXEL_SCALE, mean=[round(float(v), 6) for v in pixels.mean(axis=0)],
                     std=[round(float(max(v, 1e-3)), 6) for v in pixels.std(axis=0)])


def _vicreg(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance hinge (each dimension's std >= 1) and mean squared off-diagonal covariance."""
    z = z - z.mean(dim=0)
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    variance = F.relu(1.0 - std).mean()
    cov = (z.T @ z) / (len(z) - 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return variance, off_diagonal.pow(2).sum() / z.shape[1]


class _Trainer:
    def __init__(self, settings: TrainSettings, config: NetConfig, image: ImageSpec, train: _Dataset) -> None:
        self.settings = settings
        self.config = config
        self.device = torch.device(settings.device)
        self.preprocess = Preprocessor(image)
        self.encoder = Encoder(config)
        self.predictor = Predictor(config)
        # Normalization constants live in the networks, so the exported files take physical units.
        self.encoder.proprio_mean.copy_(torch.from_numpy(train.proprio.mean(axis=0)))
        self.encoder.proprio_std.copy_(torch.from_numpy(train.proprio.std(axis=0) + 1e-3))
        action_scale = np.maximum(np.abs(train.actions).max(axis=0), 1e-3)
        self.predictor.action_scale.copy_(torch.from_numpy(action_scale))
        self.state_mean = train.visual_state.mean(axis=0)
        self.state_std = train.visual_state.std(axis=0) + 1e-3
        self.basis = torch.from_numpy(visual_basis(config.visual_dim, train.visual_state.shape[1]))
        # Moved after the constants are set, so that initialization draws the same numbers on every device.
        self.encoder.to(self.device)
        self.predictor.to(self.device)
        self.basis = self.basis.to(self.device)
        params = [*self.encoder.parameters(), *self.predictor.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def visual_target(self, state: np.ndarray) -> torch.Tensor:
        return self.tensor((state - self.state_mean) / self.state_std) @ self.basis.T

    def state_from_visual(self, z_visual: torch.Tensor) -> np.ndarray:
        """The visual state read back from z_visual through the fixed basis (least squares)."""
        normalized = z_visual @ torch.linalg.pinv(self.basis).T
        return normalized.cpu().numpy() * self.state_std + self.state_mean

    def encode(self, frames: np.ndarray, proprio: np.ndarray) -> torch.Tensor:
        return self.encoder(self.tensor(self.preprocess(frames)), self.tensor(proprio))

    def losses(self, frames: np.ndarray, proprio: np.ndarray, visual_state: np.ndarray,
               actions: np.ndarray) -> dict[str, torch.Tensor]:
        batch, ticks = visual_state.shape[:2]
        visual_dim = self.config.visual_dim
        z = self.encode(frames.reshape(-1, *frames.shape[2:]), proprio.reshape(batch * ticks, -1))
        latents = z.reshape(batch, ticks, -1)
        targets = latents[:, 1:].detach()  # stop-gradient targets
        rollout = []
        current = latents[:, 0]
        actions_t = self.tensor(actions)
        for step in range(ticks - 1):
            current = self.predictor(current, actions_t[:, step])
            rollout.append(current)
        prediction = F.mse_loss(torch.stack(rollout, dim=1), targets)
        alignment = F.mse_loss(z[:, :visual_dim], self.visual_target(visual_state.reshape(batch * ticks, -1)))
        variance, covariance = _vicreg(z[:, visual_dim:])
        s = self.settings
        total = (s.prediction_weight * prediction + s.alignment_weight * alignment
                 + s.variance_weight * variance + s.covariance_weight * covariance)
        return {"total": total, "prediction": prediction, "alignment": alignment, "variance": variance,
                "covariance": covariance}


def _warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 1/30 of the steps, then cosine decay to zero."""
    warmup = max(1, total_steps // 30)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _encode_all(trainer: _Trainer, data: _Dataset, chunk: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([trainer.encode(data.frames[i:i + chunk], data.proprio[i:i + chunk])
                          for i in range(0, len(data.frames), chunk)])


def _evaluate(trainer: _Trainer, train: _Dataset, val: _Dataset) -> dict[str, Any]:
    """Held-out metrics: linear probe z_visual -> visual state, the state read through the fixed basis, rollout
    error, spread."""
    visual_dim = trainer.config.visual_dim
    z_train, z_val = _encode_all(trainer, train), _encode_all(trainer, val)

    def with_bias(z: torch.Tensor) -> np.ndarray:
        v = z[:, :visual_dim].cpu().numpy().astype(np.float64)
        return np.concatenate([v, np.ones((len(v), 1))], axis=1)

    weights, *_ = np.linalg.lstsq(with_bias(z_train), train.visual_state.astype(np.float64), rcond=None)
    residual = val.visual_state - with_bias(z_val) @ weights
    probe_r2 = 1.0 - residual.var(axis=0) / val.visual_state.var(axis=0)
    basis_error = np.abs(trainer.state_from_visual(z_val[:, :visual_dim]) - val.visual_state)

    spread = z_val.std(dim=0)
    train_spread = z_train.std(dim=0)
    with torch.no_grad():
        start = trainer.tensor(val.starts)
        ticks = start[:, None] + torch.arange(val.horizon + 1, device=trainer.device)
        current = z_val[start]
        actions = trainer.tensor(val.actions)
        rmse_visual, rmse_all = [], []
        for step in range(val.horizon):
            current = trainer.predictor(current, actions[ticks[:, step]])
            error = current - z_val[ticks[:, step + 1]]
            rmse_all.append(float(error.pow(2).mean().sqrt() / spread.mean()))
            rmse_visual.append(float(error[:, :visual_dim].pow(2).mean().sqrt() / spread[:visual_dim].mean()))
    return {
        "probe_r2": [round(float(v), 5) for v in probe_r2],
        # In the visual state's units: rad for the joints of an arm, m and unit-circle values for Push-T.
        "visual_state_error_mean": round(float(basis_error.mean()), 5),
        "visual_state_error_p95": round(float(np.percentile(basis_error, 95)), 5),
        "rollout_relative_rmse": [round(v, 5) for v in rmse_all],
        "rollout_relative_rmse_visual": [round(v, 5) for v in rmse_visual],
        # Collapse shows on the training frames first (held-out episodes may cover a narrow range).
        "latent_std_min_visual": round(float(train_spread[:visual_dim].min()), 5),
        "latent_std_min_proprio": round(float(train_spread[visual_dim:].min()), 5),
    }


def train_world_model(episodes: Sequence[EpisodeArrays], settings: TrainSettings,
                      log: Callable[[str], None] = print,
                      on_step: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train encoder + predictor; returns them (eval mode) with the image spec they expect, metrics and the
    per-epoch history. `on_step(done, total)` follows the optimizer steps (a time budget may end them early).

    Metrics are measured on the held-out episodes (on the training episodes when none are held out).
    The networks have no train/eval-dependent layers, so evaluation between epochs needs no mode switch.
    """
    _check_episodes(episodes, settings.horizon)
    train_episodes, val_episodes = _split(episodes, settings.val_fraction)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    try:
        train = _Dataset(train_episodes, settings.horizon)
        val = _Dataset(val_episodes or train_episodes, settings.horizon)
        image = _image_spec(train.frames)
        if image.width != image.height:
            raise ValueError(f"training needs square frames, found {image.width}x{image.height}")
        config = NetConfig(image_size=image.height, channels=settings.channels, visual_dim=settings.visual_dim,
                           proprio_dim=train.proprio.shape[1], proprio_latent_dim=settings.proprio_latent_dim,
                           action_dim=train.actions.shape[1], hidden=settings.hidden)
        trainer = _Trainer(settings, config, image, train)
        steps_per_epoch = max(1, len(train.starts) // settings.batch_size)
        schedule = _warmup_cosine(trainer.optimizer, steps_per_epoch * settings.epochs)
        log(f"training on {len(train_episodes)} episodes ({len(train.frames)} frames, {len(train.starts)} windows), "
            f"{len(val_episodes)} held out; {settings.epochs} epochs x {steps_per_epoch} steps")
        history: list[dict[str, float]] = []
        started = time.perf_counter()
        for epoch in range(settings.epochs):
            order = rng.permutation(train.starts)
            sums: dict[str, float] = {}
            for step in range(steps_per_epoch):
                batch = np.sort(order[step * settings.batch_size:(step + 1) * settings.batch_size])
                losses = trainer.losses(*train.window(batch))
                trainer.optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                trainer.optimizer.step()
                schedule.step()
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                if on_step is not None:
                    on_step(epoch * steps_per_epoch + step + 1, settings.epochs * steps_per_epoch)
            z_val = _encode_all(trainer, val)
            state_error = float(np.abs(trainer.state_from_visual(z_val[:, :config.visual_dim])
                                       - val.visual_state).mean())
            record = {key: value / steps_per_epoch for key, value in sums.items()}
            record |= {"epoch": epoch + 1, "val_state_error": state_error, "seconds": time.perf_counter() - started}
            history.append(record)
            log(f"epoch {epoch + 1:3d}/{settings.epochs}  prediction {record['prediction']:.5f}  "
                f"alignment {record['alignment']:.5f}  variance {record['variance']:.4f}  "
                f"covariance {record['covariance']:.4f}  val state error {state_error:.4f}  {record['seconds']:.0f} s")
            if settings.time_budget_s is not None and record["seconds"] > settings.time_budget_s:
                log(f"time budget of {settings.time_budget_s:.0f} s reached after epoch {epoch + 1}")
                break
        metrics = _evaluate(trainer, train, val)
        metrics |= {
            "epochs_run": len(history),
            "train_seconds": round(time.perf_counter() - started, 1),
            "train_episodes": len(train_episodes),
            "val_episodes": len(val_episodes),
            "train_frames": len(train.frames),
            "first_epoch": {k: round(v, 6) for k, v in history[0].items()},
            "last_epoch": {k: round(v, 6) for k, v in history[-1].items()},
            "visual_target": {"state": "visual_state" if episodes[0].visual_state is not None else "q",
                              "mean": trainer.state_mean.tolist(), "std": trainer.state_std.tolist(),
                              "basis": "harmonic tight frame, planning/training.py visual_basis"},
        }
        log("held-out metrics: " + ", ".join(f"{k} {metrics[k]}" for k in (
            "probe_r2", "visual_state_error_mean", "rollout_relative_rmse_visual", "latent_std_min_proprio")))
        # Back on the CPU: export and the reference weights never depend on where training ran.
        return TrainResult(config, trainer.encoder.cpu().eval(), trainer.predictor.cpu().eval(), image, metrics,
                           history)
    finally:
        torch.set_num_threads(threads)
