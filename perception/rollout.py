"""The rollout model: the single-step predictor unrolled over a whole action sequence in one ONNX graph.

`write_rollout` wraps a predictor file's graph, unchanged, as the body of an ONNX `Scan` over the horizon
axis of `actions`: the latent is the loop state, each step's action is the scanned input, and every step's
next latent is stacked into `latents`. So the rollout computes exactly what stepping the same predictor file
does (same nodes, same weights: an FP32, FP16 or Q/DQ INT8 predictor gives its own rollout), for any batch
and any horizon (both axes are dynamic), in one engine call:

    latent  [batch, latent_dim], actions [batch, horizon, action_dim]  ->  latents [batch, horizon, latent_dim]

latents[:, t] is the latent after actions[:, 0..t]. Needs `onnx` (the `train` extra), only to write the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception.manifest import (
    ROLLOUT_ACTIONS,
    ROLLOUT_LATENT,
    ROLLOUT_LATENTS,
    ModelFile,
    TensorSpec,
    file_sha256,
)
from perception.onnx_clean import strip_metadata

BATCH_AXIS, HORIZON_AXIS = "batch", "horizon"
_STEP = "step/"  # prefix of the body's own value names: a subgraph may not reuse its outer graph's names


def rollout_file(path: Path, latent_dim: int, action_dim: int) -> ModelFile:
    """The manifest entry of a rollout file written by `write_rollout`."""
    return ModelFile(
        file=path.name, sha256=file_sha256(path),
        inputs=[TensorSpec(name=ROLLOUT_LATENT, shape=[BATCH_AXIS, latent_dim], dtype="float32"),
                TensorSpec(name=ROLLOUT_ACTIONS, shape=[BATCH_AXIS, HORIZON_AXIS, action_dim], dtype="float32")],
        outputs=[TensorSpec(name=ROLLOUT_LATENTS, shape=[BATCH_AXIS, HORIZON_AXIS, latent_dim], dtype="float32")],
    )


def write_rollout(predictor: str | Path, target: str | Path, latent_dim: int, action_dim: int) -> ModelFile:
    """Write the rollout of the predictor file `predictor` to `target`; returns its manifest entry."""
    import onnx
    from onnx import TensorProto, helper

    step = onnx.load(str(predictor))
    graph = step.graph
    # The predictor's (latent, action) -> next_latent, in the manifest's order (checked when it loaded).
    (latent_in, action_in), [latent_out] = ([_STEP + value.name for value in graph.input],
                                            [_STEP + value.name for value in graph.output])
    outer = {init.name for init in graph.initializer}
    body_nodes = _sorted([_renamed(node, outer) for node in graph.node], {latent_in, action_in, *outer})
    # The state goes out as the next state; a copy of it is the step's scanned output.
    body_nodes.append(helper.make_node("Identity", [latent_out], [_STEP + "scanned"], name="step/out"))
    body = helper.make_graph(
        body_nodes, "predictor_step",
        [helper.make_tensor_value_info(latent_in, TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
         helper.make_tensor_value_info(action_in, TensorProto.FLOAT, [BATCH_AXIS, action_dim])],
        [helper.make_tensor_value_info(latent_out, TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
         helper.make_tensor_value_info(_STEP + "scanned", TensorProto.FLOAT, [BATCH_AXIS, latent_dim])],
    )
    scan = helper.make_node("Scan", [ROLLOUT_LATENT, ROLLOUT_ACTIONS], ["final_latent", ROLLOUT_LATENTS],
                            name="rollout", body=body, num_scan_inputs=1, scan_input_axes=[1],
                            scan_output_axes=[1])
    main = helper.make_graph(
        [scan], "rollout",
        [helper.make_tensor_value_info(ROLLOUT_LATENT, TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
         helper.make_tensor_value_info(ROLLOUT_ACTIONS, TensorProto.FLOAT, [BATCH_AXIS, HORIZON_AXIS, action_dim])],
        [helper.make_tensor_value_info(ROLLOUT_LATENTS, TensorProto.FLOAT,
                                       [BATCH_AXIS, HORIZON_AXIS, latent_dim])],
        initializer=list(graph.initializer),  # the weights stay in the outer graph; the body reads them there
    )
    model = helper.make_model(main, producer_name=step.producer_name, producer_version=step.producer_version)
    del model.opset_import[:]
    model.opset_import.extend(step.opset_import)
    model.ir_version = step.ir_version
    strip_metadata(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return rollout_file(Path(target), latent_dim, action_dim)


def _renamed(node: Any, outer: set[str]) -> Any:
    """`node` with every value name it defines or reads prefixed, except the outer graph's weights."""
    copy = type(node)()
    copy.CopyFrom(node)
    copy.name = _STEP + node.name
    copy.input[:] = [name if not name or name in outer else _STEP + name for name in node.input]
    copy.output[:] = [name if not name else _STEP + name for name in node.output]
    return copy


def _sorted(nodes: list[Any], known: set[str]) -> list[Any]:
    """`nodes` in an order where each comes after the nodes that make its inputs, which a subgraph must have
    (ONNX Runtime's FP16 converter appends its input Casts after the nodes that read them)."""
    ordered, pending, known = [], list(nodes), set(known) | {""}
    while pending:
        ready = [node for node in pending if all(name in known for name in node.input)]
        if not ready:
            raise ValueError(f"predictor graph: nodes {[node.name for node in pending][:5]} read values nothing makes")
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        pending = [node for node in pending if node not in ready]
    return ordered
