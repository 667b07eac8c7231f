"""The line under each generated table saying where its numbers came from, and the check that a table's rows
come from one model on one machine unless the table is a declared comparison across them."""

from __future__ import annotations

from typing import Any, Literal

Across = Literal["model", "machine"]


class ReportError(ValueError):
    pass


def model_identity(result: dict[str, Any]) -> str:
    """The model a result measured: its identity (what determines behaviour, docs/model-manifest.md)."""
    model = result["provenance"]["model"]
    return "none" if model is None else str(model["id"])


def machine_identity(result: dict[str, Any]) -> str:
    """What decides speed on a machine: CPU model, cores, instruction sets, GPUs, Jetson model and power mode."""
    machine = result["provenance"]["machine"]
    gpus = ", ".join(gpu["name"] for gpu in machine.get("gpus") or [])
    jetson = machine.get("jetson") or {}
    power = (jetson.get("power_mode") or {}).get("name")
    parts = [f"{machine.get('cpu_model')}, {machine.get('cpu_count')} cores",
             "+".join(flag for flag in machine.get("cpu_flags") or [] if "vnni" in flag or flag in ("avx2", "neon"))]
    parts += [gpus] if gpus else []
    parts += [f"{jetson.get('model')} ({power})"] if jetson else []
    return "; ".join(part for part in parts if part)


def check_alike(named: dict[str, dict[str, Any]], across: Across | None) -> None:
    """Refuse results of different models or machines in one table unless `across` declares that comparison."""
    for what, identify in (("model", model_identity), ("machine", machine_identity)):
        if across == what:
            continue
        found = {name: identify(result) for name, result in named.items()}
        if len(set(found.values())) > 1:
            listed = "; ".join(f"{name}: {value}" for name, value in found.items())
            raise ReportError(f"one table, results of different {what}s ({listed}): rerun them alike, or declare "
                              f"the table a comparison across {what}s (compare={what})")


def provenance_line(named: dict[str, dict[str, Any]], across: Across | None) -> str:
    """`Measured by …`: each result's command, then the model(s), machine(s), packages and commit."""
    results = list(named.values())
    first = results[0]["provenance"]
    commands = "; ".join(f"`{result['provenance']['command']}`" for result in results)
    models = list(dict.fromkeys(_describe_model(result) for result in results))
    machines = list(dict.fromkeys(machine_identity(result) for result in results))
    packages = first["packages"]
    versions = ", ".join(f"{name} {packages[name]}" for name in ("onnxruntime", "numpy", "mujoco", "torch")
                         if packages.get(name))
    commits = list(dict.fromkeys(_describe_commit(result) for result in results))
    days = sorted({result["provenance"]["utc"][:10] for result in results})
    loads = [result["provenance"].get("load_average", [None])[0] for result in results]
    spread = (f"{min(loads):.1f}" if f"{min(loads):.1f}" == f"{max(loads):.1f}"
              else f"{min(loads):.1f}–{max(loads):.1f}") if None not in loads else None
    load = f"load average {spread} on {first['machine'].get('cpu_count')} cores; " if spread is not None else ""
    label = f"Comparison across {across}s. " if across is not None else ""
    return (f"<sub>{label}Measured by {commands}. Model {' vs '.join(models)}; machine {' vs '.join(machines)}; "
            f"{versions}; {load}commit {', '.join(commits)}; {' to '.join(dict.fromkeys([days[0], days[-1]]))} UTC."
            f"</sub>")


def _describe_model(result: dict[str, Any]) -> str:
    model = result["provenance"]["model"]
    if model is None:
        return "none"
    return f"`{model_identity(result)[:12]}` ({model['name']}, {model['precision']})"


def _describe_commit(result: dict[str, Any]) -> str:
    git = result["provenance"]["git"]
    if git["commit"] is None:
        return "unknown"
    return f"`{git['commit'][:10]}`" + (" (uncommitted changes)" if git["dirty"] else "")
