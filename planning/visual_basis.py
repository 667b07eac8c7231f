"""The fixed embedding z_visual is trained to equal: basis @ normalized visual state (docs/training.md).

Apart from training because the oracle (runtime/evaluation/oracle.py) builds the same latent without torch.
"""

from __future__ import annotations

import numpy as np


def visual_basis(visual_dim: int, state_dim: int = 2) -> np.ndarray:
    """(visual_dim, state_dim): a harmonic tight frame, unit rows with basis.T @ basis = visual_dim/state_dim I.

    z_visual = basis @ normalized state gives every latent axis unit variance, and the L2 distance between
    two such latents is exactly proportional to the Euclidean distance in normalized state space. Two
    dimensions take rows evenly spread over half a turn, whose L1 distance is proportional too (within
    0.3 %); three or more take the columns cos/sin(k · 2πi/visual_dim), k = 1, 2, ... (an odd last one
    alternating ±1/√2), whose L1 distance varies by up to ±20 % with the direction: plan with `distance: l2`
    there (docs/training.md).
    """
    if not 1 <= state_dim <= visual_dim:
        raise ValueError(f"the visual state has {state_dim} values; visual_dim ({visual_dim}) must be at least that")
    if state_dim == 1:
        return np.ones((visual_dim, 1), dtype=np.float32)
    if state_dim == 2:
        angles = np.pi * np.arange(visual_dim) / visual_dim
        return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    if 2 * (state_dim // 2) >= visual_dim or (state_dim % 2 and visual_dim % 2):
        # cos/sin pairs need frequencies below visual_dim / 2; the alternating column, an even visual_dim
        raise ValueError(f"a visual state of {state_dim} values needs an even visual_dim above {state_dim} "
                         f"(found {visual_dim})")
    angles = 2 * np.pi * np.arange(visual_dim) / visual_dim
    columns = []
    for k in range(1, state_dim // 2 + 1):
        columns += [np.cos(k * angles), np.sin(k * angles)]
    if state_dim % 2:
        columns.append((-1.0) ** np.arange(visual_dim) / np.sqrt(2.0))
    return (np.stack(columns, axis=1) * np.sqrt(2.0 / state_dim)).astype(np.float32)
