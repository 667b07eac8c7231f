"""Result files: every `edgeloop bench` and `edgeloop eval` run writes its result JSON, provenance included, to
`--out` or to `<runs_dir>/results/<kind>-<UTC time>.json`; `edgeloop bench report` reads them back."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from runtime.config import RunConfig
from runtime.evaluation.provenance import provenance

RESULTS_FOLDER = "results"


class ResultError(ValueError):
    pass


def default_result_path(kind: str, runs_dir: Path) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return runs_dir / RESULTS_FOLDER / f"{kind}-{stamp}.json"


def write_result(result: dict[str, Any], kind: str, config: RunConfig | None, out: Path | None, *,
                 manifest: Path | None = None, runs_dir: Path = Path("runs")) -> Path:
    """Stamp `result` with its kind and provenance and write it (to `out`, else under the results folder)."""
    result["kind"] = kind
    result["provenance"] = provenance(config, manifest=manifest)
    path = out if out is not None else default_result_path(kind, config.runs_dir if config is not None else runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def read_result(path: Path) -> dict[str, Any]:
    """A result file, refused with its path unless it is a JSON object carrying `kind` and `provenance`."""
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ResultError(f"{path}: no such result file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(f"{path}: not a result JSON ({exc})") from exc
    if not isinstance(result, dict):
        raise ResultError(f"{path}: a result is a JSON object, found {type(result).__name__}")
    for key in ("kind", "provenance"):
        if key not in result:
            raise ResultError(f"{path}: no `{key}` key: written before results carried provenance, or not by "
                              f"edgeloop bench/eval; run its command again")
    return result
