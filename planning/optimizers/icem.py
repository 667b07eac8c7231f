"""iCEM (Pinneri et al. 2020): CEM that samples coloured noise and keeps a share of its elites.

- Noise along the horizon has a power spectrum of 1/f^beta: white noise times a fixed (H, H) colouring
  matrix (the Cholesky factor of that process's covariance, scaled to unit variance per step), one matrix
  product per iteration. beta 0 is CEM's white noise; larger beta gives smoother, low-frequency sequences.
- After each refit, the best `keep_elites` x `elites` samples join the next iteration's samples (rows 2 on,
  after the planner's own candidates), so a good sequence is never lost to resampling.
- Between plans, the last iteration's kept elites are shifted by the steps executed since (the last action
  held, as for the warm start) and join the next plan's first iteration; a new goal or a stop drops them.
- The refit is CEM's (elite mean and spread, momentum, spread floor). Left out from the paper: shrinking the
  population each iteration (the sample buffer and the engine's batch stay fixed).
"""

from __future__ import annotations

import numpy as np

from planning.optimizers.cem import CrossEntropyMethod
from planning.settings import PlannerSettings


def colouring_matrix(horizon: int, beta: float) -> np.ndarray:
    """L (H, H): L @ white noise along H steps has power spectrum 1/f^beta and unit variance at every step.

    The spectrum is the one of the FFT method (Timmer and König 1995, as in the `colorednoise` package: the
    zero frequency gets the amplitude of the lowest one); its covariance is circulant, computed exactly.
    """
    if horizon == 1 or beta == 0:
        return np.eye(horizon, dtype=np.float32)
    frequencies = np.fft.rfftfreq(horizon)
    frequencies[0] = frequencies[1]
    power = frequencies ** -beta  # squared amplitude per frequency
    # irfft adds each frequency between zero and Nyquist twice (with its conjugate), zero and Nyquist once:
    # twice the amplitude, four times the power.
    multiplicity = np.full(power.size, 4.0)
    multiplicity[0] = 1.0
    if horizon % 2 == 0:
        multiplicity[-1] = 1.0
    lags = np.arange(horizon)
    autocovariance = (multiplicity[:, None] * power[:, None]
                      * np.cos(2 * np.pi * np.arange(power.size)[:, None] * lags[None, :] / horizon)).sum(axis=0)
    covariance = autocovariance[np.abs(lags[:, None] - lags[None, :])]
    covariance /= covariance[0, 0]
    return np.linalg.cholesky(covariance).astype(np.float32)


class ImprovedCrossEntropyMethod(CrossEntropyMethod):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        super().__init__(settings, action_dim, rng, settings.icem)
        self._colour = colouring_matrix(settings.horizon, settings.icem.noise_beta)
        self._white = np.zeros((settings.samples, *self.shape), dtype=np.float32)
        self._kept = np.zeros((settings.icem_kept_elites, *self.shape), dtype=np.float32)
        self._kept_count = 0  # rows of _kept that hold elites (none before the first refit)

    def reset(self, mean: np.ndarray, shift: int | None) -> None:
        super().reset(mean, shift)
        horizon = self.shape[0]
        if shift is None or shift >= horizon:
            self._kept_count = 0
        elif shift > 0:
            kept = self._kept[: self._kept_count]
            kept[:, : horizon - shift] = kept[:, shift:]
            kept[:, horizon - shift :] = kept[:, horizon - shift - 1 : horizon - shift]

    def sample(self, out: np.ndarray) -> None:
        self.rng.standard_normal(dtype=np.float32, out=self._white)
        np.matmul(self._colour, self._white, out=out)  # (H, H) @ (N, H, A): each sample's steps correlated
        out *= self.std
        out += self.mean
        out[0] = self.mean
        out[2 : 2 + self._kept_count] = self._kept[: self._kept_count]

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        super().update(samples, costs)
        self._keep(samples, costs)

    def finish(self, samples: np.ndarray, costs: np.ndarray) -> None:
        self._keep(samples, costs)

    def _keep(self, samples: np.ndarray, costs: np.ndarray) -> None:
        finite = np.flatnonzero(np.isfinite(costs))
        count = min(len(self._kept), finite.size)
        if count == 0:
            return  # nothing finite this iteration: the elites kept so far stay
        best = finite[np.argsort(costs[finite], kind="stable")[:count]]
        self._kept[:count] = samples[best]
        self._kept_count = count
