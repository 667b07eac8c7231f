"""Typed planner settings: the `planner` section of a run config (validated by pydantic).

Spreads, noise and bounds are in normalized action units, where [-1, 1] spans the model's action bounds;
pinned values are in the model's physical action units. docs/planner.md explains every knob.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Settings(BaseModel):
    # Every number must be finite: an infinite weight or spread would turn every cost or sample into nan.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class CemSettings(_Settings):
    elites: int = Field(16, ge=1, description="Lowest-cost samples that refit the sampling distribution.")
    momentum_mean: float = Field(
        0.0, ge=0, lt=1, description="Share of the previous mean kept at each refit (0: the elites' mean only)."
    )
    momentum_std: float = Field(
        0.0, ge=0, lt=1, description="Share of the previous spread kept at each refit (0: the elites' spread only)."
    )
    init_std: float = Field(0.5, gt=0, le=2.0, description="Spread each plan starts from.")
    min_std: float = Field(0.05, ge=0, le=2.0, description="Floor on the spread so the distribution never collapses.")


class IcemSettings(CemSettings):
    """iCEM (Pinneri et al. 2020): CEM with temporally correlated noise and elites carried over."""

    noise_beta: float = Field(
        2.0, ge=0, le=5.0, description="Colour of the sampling noise along the horizon: power spectrum 1/f^beta "
                                       "(0: white as in CEM; 2: smooth, low-frequency action sequences)."
    )
    keep_elites: float = Field(
        0.3, ge=0, le=1, description="Share of the elites carried into the next iteration's samples and, shifted "
                                     "by the executed steps, into the next plan's first iteration."
    )


class MppiSettings(_Settings):
    temperature: float = Field(
        0.5, gt=0, description="Softmin temperature, in units of the iteration's cost standard deviation."
    )
    noise_std: float = Field(0.3, gt=0, le=2.0, description="Fixed spread of the samples around the mean.")


class PredictiveSamplingSettings(_Settings):
    noise_std: float = Field(0.2, gt=0, le=2.0, description="Fixed spread of the samples around the nominal plan.")


class DistanceTerm(_Settings):
    distance: Literal["l1", "l2", "cosine"] = Field("l1", description="Distance between predicted and goal latent.")
    steps: Literal["all", "last"] = Field("all", description="Sum over every horizon step, or score the last only.")
    weight: float = Field(1.0, ge=0, description="Weight of this term in the total cost.")


class StateGoalTerm(DistanceTerm):
    # Last step by default: the goal state is held still, so scoring every step would also penalize the
    # velocity needed to get there, and the planner would prefer to stay put.
    steps: Literal["all", "last"] = Field("last", description="Sum over every horizon step, or score the last only.")


class WeightTerm(_Settings):
    weight: float = Field(0.0, ge=0, description="Weight of this term in the total cost (0: off).")


class CostSettings(_Settings):
    goal: DistanceTerm = Field(default_factory=DistanceTerm, description="Visual latent against the goal's.")
    state_goal: StateGoalTerm = Field(
        default_factory=StateGoalTerm, description="Proprio part of the latent against a state goal, when one is set."
    )
    action_magnitude: WeightTerm = Field(
        default_factory=WeightTerm, description="Sum of squared normalized distances from the hold-still action."
    )
    action_rate: WeightTerm = Field(
        default_factory=WeightTerm,
        description="Sum of squared normalized changes between steps, starting from the previous command.",
    )
    bounds: WeightTerm = Field(
        default_factory=WeightTerm, description="Sum of how far samples reached beyond [-1, 1] before clipping."
    )


class PlannerSettings(_Settings):
    optimizer: Literal["cem", "icem", "mppi", "predictive_sampling"] = Field(
        "cem", description="Sampling optimizer.")
    samples: int = Field(256, ge=4, le=100_000, description="Action sequences per iteration (N).")
    horizon: int = Field(5, ge=1, le=100, description="Planned actions per sequence (H), each held for action_block "
                                                       "control periods.")
    action_block: int = Field(1, ge=1, le=50, description="Control periods (model steps) each planned action is held: "
                                                          "the plan looks horizon x action_block periods ahead.")
    iterations: int = Field(3, ge=1, le=100, description="Most optimizer iterations per plan (K).")
    seed: int = Field(0, ge=0, description="Sampling seed.")
    deadline_ms: float | None = Field(
        None, gt=0, description="Time budget per plan; iterating stops when the next iteration would overrun it."
    )
    execute_steps: int = Field(
        1, ge=1, description="Control periods executed per plan (an action chunk); 1 replans every tick."
    )
    pinned: dict[int, float] = Field(
        default_factory=dict, description="Action dimension -> value held in every sample (physical units)."
    )
    cem: CemSettings = Field(default_factory=CemSettings)
    icem: IcemSettings = Field(default_factory=IcemSettings)
    mppi: MppiSettings = Field(default_factory=MppiSettings)
    predictive_sampling: PredictiveSamplingSettings = Field(default_factory=PredictiveSamplingSettings)
    cost: CostSettings = Field(default_factory=CostSettings)

    @property
    def icem_kept_elites(self) -> int:
        """Elites iCEM carries between iterations and plans."""
        return round(self.icem.keep_elites * self.icem.elites)

    @model_validator(mode="after")
    def _consistent(self) -> PlannerSettings:
        for name, section in (("cem", self.cem), ("icem", self.icem)):
            if self.optimizer == name and section.elites > self.samples:
                raise ValueError(f"{name}.elites ({section.elites}) must not exceed samples ({self.samples})")
        if self.optimizer == "icem" and 2 + self.icem_kept_elites > self.samples:
            raise ValueError(f"icem: {self.icem_kept_elites} kept elites (icem.keep_elites x icem.elites) and the "
                             f"planner's 2 candidates must fit in samples ({self.samples})")
        if self.execute_steps > self.horizon * self.action_block:
            raise ValueError(f"execute_steps ({self.execute_steps}) must not exceed horizon x action_block "
                             f"({self.horizon * self.action_block})")
        negative = [dim for dim in self.pinned if dim < 0]
        if negative:
            raise ValueError(f"pinned: action dimensions are indices from 0, not {negative}")
        return self
