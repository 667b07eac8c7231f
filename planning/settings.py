"""Typed planner settings: the `planner` section of a run config (validated by pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CostSettings(_Settings):
    distance: Literal["l1", "l2"] = Field("l1", description="Distance between predicted and goal visual latents.")
    steps: Literal["all", "last"] = Field("all", description="Score every horizon step or only the last one.")


class PlannerSettings(_Settings):
    optimizer: Literal["cem"] = Field("cem", description="Sampling optimizer.")
    samples: int = Field(256, ge=2, le=100_000, description="Action sequences per iteration (N).")
    horizon: int = Field(5, ge=1, le=100, description="Steps per action sequence (H).")
    iterations: int = Field(3, ge=1, le=100, description="Optimizer iterations per plan (K).")
    elites: int = Field(16, ge=1, description="Lowest-cost samples that refit the sampling distribution.")
    init_std: float = Field(
        0.5, gt=0, le=2.0, description="Initial spread in normalized action units ([-1, 1] spans the bounds)."
    )
    min_std: float = Field(0.05, ge=0, le=2.0, description="Floor on the spread so the distribution never collapses.")
    seed: int = Field(0, description="Sampling seed.")
    cost: CostSettings = Field(default_factory=CostSettings)

    @model_validator(mode="after")
    def _elites_fit(self) -> PlannerSettings:
        if self.elites > self.samples:
            raise ValueError(f"elites ({self.elites}) must not exceed samples ({self.samples})")
        return self
