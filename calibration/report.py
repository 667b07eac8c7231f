"""Calibration reports: a JSON-ready summary with warnings, and the same as a few lines of text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from calibration.boards import Rejection
from calibration.camera_file import CameraCalibration
from calibration.handeye import HandEyeResult
from calibration.intrinsics import IntrinsicsResult

# What the warnings compare against (docs/calibration.md, "Reading the report").
GOOD_RMS_PX = 0.5  # typical of a good calibration with a printed board
HIGH_RMS_PX = 1.0
LOW_COVERAGE = 0.5
FEW_VIEWS = 10
OUTLIER_FACTOR = 3.0  # a view reprojecting this many times worse than the median


def _rejected(rejected: Sequence[tuple[str, Rejection]]) -> list[dict[str, str]]:
    return [{"name": name, "reason": r.reason, "detail": r.detail} for name, r in rejected]


def _intrinsics(calibration: CameraCalibration) -> dict[str, Any]:
    k = calibration.camera_matrix
    return {
        "model": calibration.model,
        "image_size": list(calibration.size),
        "fx": float(k[0, 0]), "fy": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2]),
        "dist_coeffs": calibration.dist_coeffs.tolist(),
        "camera_matrix": k.tolist(),
        "projection_matrix": calibration.projection_matrix.tolist(),
    }


def intrinsics_report(result: IntrinsicsResult, rejected: Sequence[tuple[str, Rejection]],
                      rejected_frames: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The JSON report; `rejected` names each refused image, `rejected_frames` counts refused live frames by reason
    (capture mode keeps no unusable frame, so they have no names)."""
    c = result.calibration
    by_reason = Counter(r.reason for _, r in rejected) + Counter(rejected_frames or {})
    assert c.rms_px is not None
    errors = np.array([v.rms_px for v in result.views])
    median = float(np.median(errors))
    warnings = []
    if c.rms_px > HIGH_RMS_PX:
        warnings.append(f"RMS reprojection error {c.rms_px:.2f} px is high (under {GOOD_RMS_PX} px is typical): "
                        "check the board spec's square size and flatness, and look at the worst views")
    if result.coverage < LOW_COVERAGE:
        warnings.append(f"the boards covered only {result.coverage:.0%} of the image: distortion near the edges "
                        "and corners is extrapolated; add views with the board near the image borders")
    if len(result.views) < FEW_VIEWS:
        warnings.append(f"only {len(result.views)} views were used; 15-30 from varied angles are recommended")
    outliers = [v.name for v in result.views if v.rms_px > max(OUTLIER_FACTOR * median, GOOD_RMS_PX)]
    if outliers:
        warnings.append(f"views reprojecting over {OUTLIER_FACTOR:g}x the median error ({median:.2f} px): "
                        f"{', '.join(outliers)}; remove them if the board moved or was bent")
    return {
        "kind": "intrinsics",
        "camera_name": c.camera_name,
        "board": c.board,
        **_intrinsics(c),
        "rms_px": c.rms_px,
        "coverage": result.coverage,
        "views_used": len(result.views),
        "views_rejected": sum(by_reason.values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "corners": result.corners,
        "views": [{"name": v.name, "rms_px": v.rms_px, "corners": v.corners} for v in result.views],
        "rejected": _rejected(rejected),
        "warnings": warnings,
    }


def extrinsics_report(result: HandEyeResult, rejected: Sequence[tuple[str, Rejection]],
                      names: Sequence[str]) -> dict[str, Any]:
    warnings = []
    if result.translation_rms_m > 0.005 or result.rotation_rms_deg > 0.5:
        warnings.append(f"the views disagree by {result.translation_rms_m * 1000:.1f} mm / "
                        f"{result.rotation_rms_deg:.2f} deg RMS: check that the poses file matches the images "
                        "(order, units in metres, quaternion order x y z w) and that the board is rigidly mounted")
    if len(names) < FEW_VIEWS:
        warnings.append(f"only {len(names)} views were used; 10-20 with varied gripper orientations are recommended")
    return {
        "kind": "extrinsics",
        "base_T_camera": result.base_T_camera.tolist(),
        "camera_position_m": result.base_T_camera[:3, 3].tolist(),
        "gripper_T_board": result.gripper_T_board.tolist(),
        "rotation_rms_deg": result.rotation_rms_deg,
        "translation_rms_m": result.translation_rms_m,
        "views_used": len(names),
        "views_rejected": len(rejected),
        "views": [{"name": n, "rotation_error_deg": float(r), "translation_error_m": float(t)}
                  for n, r, t in zip(names, result.rotation_errors_deg, result.translation_errors_m, strict=True)],
        "rejected": _rejected(rejected),
        "warnings": warnings,
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """A short human summary of either report."""
    lines = []
    if report["kind"] == "intrinsics":
        lines.append(f"{report['model']} model, {report['image_size'][0]}x{report['image_size'][1]}: "
                     f"fx {report['fx']:.2f} fy {report['fy']:.2f} cx {report['cx']:.2f} cy {report['cy']:.2f}")
        lines.append("distortion " + " ".join(f"{d:.5f}" for d in report["dist_coeffs"]))
        lines.append(f"RMS reprojection error {report['rms_px']:.3f} px over {report['views_used']} views "
                     f"({report['corners']} corners); image area covered {report['coverage']:.0%}")
        worst = sorted(report["views"], key=lambda v: -v["rms_px"])[:3]
        lines.append("worst views: " + ", ".join(f"{v['name']} {v['rms_px']:.3f} px" for v in worst))
    else:
        x, y, z = report["camera_position_m"]
        lines.append(f"camera in the base frame at x {x:.4f} y {y:.4f} z {z:.4f} m")
        lines.append(f"views agree to {report['translation_rms_m'] * 1000:.2f} mm / {report['rotation_rms_deg']:.3f} "
                     f"deg RMS over {report['views_used']} views")
    for item in report["rejected"]:
        lines.append(f"rejected {item['name']}: {item['reason']}: {item['detail']}")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return lines
