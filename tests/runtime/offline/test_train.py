"""`edgeloop train`'s job: recordings in, a model that loads and fits its manifest out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

from perception.manifest import load_manifest
from planning.training import EpisodeArrays, TrainSettings
from planning.world_model import WorldModel
from runtime.offline.train import NoRecordingsError, train_from_recordings, training_data_sha256
from runtime.recording import read_episode
from runtime.sim.arm import VELOCITY_LIMIT
from runtime.sim.explore import record_episodes

SMALL = TrainSettings(seed=1, epochs=1, batch_size=8, horizon=2, visual_dim=4, proprio_latent_dim=4, hidden=16,
                      channels=(4, 4, 4), val_fraction=0.0, threads=1)


def test_recordings_become_a_model_whose_manifest_says_what_trained_it(tmp_path: Path) -> None:
    recorded: list[int] = []
    paths = record_episodes(tmp_path / "episodes", episodes=2, steps=20, seed=4,
                            on_episode=lambda: recorded.append(1))
    assert len(recorded) == 2
    steps: list[tuple[int, int]] = []
    trained = train_from_recordings(tmp_path / "episodes", tmp_path / "model", SMALL.model_copy(update={"epochs": 2}),
                                    on_step=lambda done, total: steps.append((done, total)))
    assert steps[-1][0] == steps[-1][1] == len(steps) and steps[0] == (1, len(steps))
    # The loss and validation curves beside the model.
    assert trained.curves == tmp_path / "model" / "training_curves.png"
    curves = cv2.imread(str(trained.curves))
    assert curves is not None and curves.shape[:2] == (420, 1100)
    manifest = load_manifest(trained.manifest)
    assert manifest.action_dim == 2 and manifest.proprio_dim == 4 and manifest.latent_dim == 8
    assert manifest.action_low == [-VELOCITY_LIMIT] * 2 and manifest.action_high == [VELOCITY_LIMIT] * 2
    assert manifest.control_period_s == pytest.approx(0.05)
    episodes = [read_episode(path) for path in paths]
    data = manifest.training["data"]
    assert data["episodes"] == 2 and data["frames"] == sum(len(e) for e in episodes)
    assert data["sha256"] == training_data_sha256([EpisodeArrays(e.frames, e.q, e.dq, e.actions) for e in episodes])
    assert manifest.training["settings"]["seed"] == 1 and "train_seconds" in trained.metrics
    model = WorldModel(manifest)  # the files agree with the manifest and run
    latent = model.encode(episodes[0].frames[0], np.zeros(4, np.float32))
    assert latent.shape == (8,) and np.all(np.isfinite(latent))


def test_a_folder_without_recordings_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NoRecordingsError, match=f"{tmp_path}: no .mcap recordings found"):
        train_from_recordings(tmp_path, tmp_path / "model", SMALL)
    assert not (tmp_path / "model").exists()


def test_a_task_recording_trains_a_model_whose_manifest_takes_the_scenes_interface(tmp_path: Path) -> None:
    from runtime.recording import read_episode as read
    from runtime.sim.task_data import record_task_episodes

    paths = record_task_episodes("two-room", tmp_path / "episodes", episodes=2, steps=15, seed=2)
    recorded = read(paths[0])
    assert recorded.frames.shape == (15, 64, 64, 3) and recorded.q.shape == (15, 2)
    assert np.all(np.abs(recorded.actions) <= 0.5)  # the scene's action bounds
    trained = train_from_recordings(tmp_path / "episodes", tmp_path / "model", SMALL, scene="two-room",
                                    task="two-room")
    manifest = load_manifest(trained.manifest)
    assert (manifest.scene, manifest.task, manifest.name) == ("two-room", "two-room", "two-room-jepa")
    assert manifest.action_names == ["agent_x.velocity", "agent_y.velocity"] and manifest.action_units == "m/s"
    assert manifest.action_low == [-0.5, -0.5] and manifest.control_period_s == pytest.approx(0.1)
    assert manifest.proprio_names[2:] == ["agent_x.velocity", "agent_y.velocity"]


def test_a_push_t_recording_anchors_the_visual_latent_to_the_t_as_well_as_the_pusher(tmp_path: Path) -> None:
    from runtime.sim.task_data import record_task_episodes

    paths = record_task_episodes("push-t", tmp_path / "episodes", episodes=2, steps=12, seed=3)
    recorded = read_episode(paths[0])
    assert recorded.visual_state is not None and recorded.visual_state.shape == (12, 6)
    np.testing.assert_allclose(recorded.visual_state[:, :2], recorded.q, atol=1e-6)  # the pusher, then the T
    np.testing.assert_allclose(np.hypot(recorded.visual_state[:, 4], recorded.visual_state[:, 5]), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"visual state has 6 values; visual_dim \(4\) must be at least that"):
        train_from_recordings(tmp_path / "episodes", tmp_path / "small", SMALL, scene="push-t", task="push-t")
    wider = SMALL.model_copy(update={"visual_dim": 8})
    trained = train_from_recordings(tmp_path / "episodes", tmp_path / "model", wider, scene="push-t", task="push-t")
    target = trained.metrics["visual_target"]
    assert target["state"] == "visual_state" and len(target["mean"]) == 6 and len(trained.metrics["probe_r2"]) == 6
    states = np.concatenate([read_episode(path).visual_state for path in paths])  # type: ignore[arg-type]
    np.testing.assert_allclose(target["mean"], states.mean(axis=0), atol=1e-5)
