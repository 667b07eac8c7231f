"""A tiny end-to-end training run: recorded sim episodes -> JEPA training -> export -> verified manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception.engines import create_engine
from perception.export import ModelInterface, export_world_model
from perception.manifest import load_manifest
from perception.nets import Predictor
from planning.training import EpisodeArrays, TrainResult, TrainSettings, train_world_model
from runtime.recording import read_episode
from runtime.sim.explore import record_episodes

SETTINGS = TrainSettings(seed=3, epochs=30, batch_size=16, horizon=3, visual_dim=8, proprio_latent_dim=8,
                         hidden=64, channels=(8, 16, 16), val_fraction=0.34, threads=2)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> list[EpisodeArrays]:
    paths = record_episodes(tmp_path_factory.mktemp("episodes"), episodes=3, steps=48, seed=5)
    loaded = [read_episode(path) for path in paths]
    return [EpisodeArrays(e.frames, e.q, e.dq, e.actions) for e in loaded]


@pytest.fixture(scope="module")
def trained(episodes: list[EpisodeArrays]) -> TrainResult:
    return train_world_model(episodes, SETTINGS, log=lambda line: None)


def rollout_mse(predictor: torch.nn.Module, result: TrainResult, episode: EpisodeArrays) -> float:
    """Mean squared error of one-step predictions against the trained encoder's next latents."""
    from perception.preprocess import Preprocessor

    with torch.no_grad():
        images = torch.from_numpy(Preprocessor(result.image)(episode.frames))
        proprio = torch.from_numpy(np.concatenate([episode.q, episode.dq], axis=1))
        latents = result.encoder(images, proprio)
        predicted = predictor(latents[:-1], torch.from_numpy(episode.actions[:-1]))
        return float((predicted - latents[1:]).pow(2).mean())


def test_training_lowers_the_prediction_loss(trained: TrainResult, episodes: list[EpisodeArrays]) -> None:
    # Same targets (the trained encoder's latents) for both: the untrained predictor, zero-initialized,
    # predicts "nothing moves"; training must have learned how actions move the latent.
    untrained = Predictor(trained.config)
    untrained.load_state_dict({k: v for k, v in trained.predictor.state_dict().items() if "net." not in k},
                              strict=False)
    for episode in episodes[:2]:  # the training episodes (the last one is held out)
        assert rollout_mse(trained.predictor, trained, episode) < 0.6 * rollout_mse(untrained, trained, episode)


def test_latent_does_not_collapse(trained: TrainResult) -> None:
    assert trained.metrics["latent_std_min_visual"] > 0.2
    assert trained.metrics["latent_std_min_proprio"] > 0.2
    assert trained.metrics["last_epoch"]["alignment"] < trained.metrics["first_epoch"]["alignment"]


def test_export_writes_a_manifest_that_verifies(trained: TrainResult, tmp_path: Path) -> None:
    interface = ModelInterface(name="tiny", image=trained.image, proprio_names=["q0", "q1", "dq0", "dq1"],
                               action_names=["v0", "v1"], action_low=[-2.0, -2.0], action_high=[2.0, 2.0],
                               action_units="rad/s", control_period_s=0.05,
                               training={"metrics": trained.metrics})
    path = export_world_model(trained.encoder, trained.predictor, tmp_path, trained.config, interface)
    manifest = load_manifest(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.onnx", "manifest.json", "predictor.onnx",
                                                         "reference.pt", "rollout.onnx"]
    assert manifest.latent_dim == 16 and manifest.visual_dim == 8
    assert max(manifest.training["export_max_abs_error"].values()) <= 1e-4
    latent = np.zeros((3, manifest.latent_dim), dtype=np.float32)
    action = np.ones((3, 2), dtype=np.float32)
    next_latent = create_engine(manifest, "predictor").run({"latent": latent, "action": action})["next_latent"]
    assert next_latent.shape == (3, 16)


def test_bad_episodes_are_refused(episodes: list[EpisodeArrays]) -> None:
    short = EpisodeArrays(episodes[0].frames[:2], episodes[0].q[:2], episodes[0].dq[:2], episodes[0].actions[:2])
    with pytest.raises(ValueError, match=r"episode 1: 2 ticks, need more than the horizon \(3\)"):
        train_world_model([episodes[0], short], SETTINGS)
    ragged = EpisodeArrays(episodes[0].frames, episodes[0].q[:-1], episodes[0].dq, episodes[0].actions)
    with pytest.raises(ValueError, match="episode 0: frames, q, dq and actions differ in length"):
        train_world_model([ragged], SETTINGS)


@pytest.mark.parametrize("state_dim", [1, 2, 3, 4, 6, 7])
def test_the_visual_basis_is_a_tight_frame_of_unit_rows(state_dim: int) -> None:
    from planning.visual_basis import visual_basis

    basis = visual_basis(16, state_dim).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(basis, axis=1), 1.0, atol=1e-6)  # unit variance per latent axis
    np.testing.assert_allclose(basis.T @ basis, 16 / state_dim * np.eye(state_dim), atol=1e-5)  # L2 ∝ Euclidean
    with pytest.raises(ValueError, match="visual_dim"):
        visual_basis(state_dim - 1 if state_dim > 1 else 0, state_dim)
    if state_dim > 2:  # cos/sin pairs need a frequency below visual_dim / 2
        with pytest.raises(ValueError, match=f"needs an even visual_dim above {state_dim}"):
            visual_basis(state_dim, state_dim)


def test_two_joints_keep_the_half_turn_basis_whose_l1_distance_is_nearly_euclidean() -> None:
    from planning.visual_basis import visual_basis

    angles = np.pi * np.arange(16) / 16
    np.testing.assert_allclose(visual_basis(16), np.stack([np.cos(angles), np.sin(angles)], axis=1), atol=1e-7)
    directions = np.random.default_rng(0).standard_normal((1000, 2))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    l1 = np.abs(directions @ visual_basis(16).T).sum(axis=1)
    assert l1.max() / l1.min() < 1.01


def test_episodes_must_all_carry_a_visual_state_or_none(episodes: list[EpisodeArrays]) -> None:
    e = episodes[0]
    with_state = EpisodeArrays(e.frames, e.q, e.dq, e.actions, np.zeros((len(e.q), 3), np.float32))
    with pytest.raises(ValueError, match="some episodes carry a visual state and some do not"):
        train_world_model([with_state, episodes[1]], SETTINGS)
    short_state = EpisodeArrays(e.frames, e.q, e.dq, e.actions, np.zeros((len(e.q) - 1, 3), np.float32))
    with pytest.raises(ValueError, match="episode 0: 47 visual states for 48 ticks"):
        train_world_model([short_state], SETTINGS)


def test_the_device_is_named_and_checked_before_any_recording_is_read() -> None:
    with pytest.raises(ValueError, match="device"):
        TrainSettings(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            TrainSettings(device="cuda")
    assert TrainSettings(device="cpu").device == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and an NVIDIA GPU")
def test_training_on_cuda_gives_cpu_networks_that_predict_as_well(episodes: list[EpisodeArrays],
                                                                  trained: TrainResult) -> None:
    on_gpu = train_world_model(episodes, SETTINGS.model_copy(update={"device": "cuda"}), log=lambda line: None)
    assert next(on_gpu.encoder.parameters()).device.type == "cpu"
    # Not bit-identical (CUDA's kernels sum in another order), but as good a model.
    cpu, gpu = trained.history[-1]["prediction"], on_gpu.history[-1]["prediction"]
    assert gpu < 1.5 * cpu + 1e-4, (gpu, cpu)
    assert rollout_mse(on_gpu.predictor, on_gpu, episodes[0]) < 1.5 * rollout_mse(trained.predictor, trained,
                                                                                 episodes[0]) + 1e-4
