"""A plan's arithmetic against this machine's floor: the predictor's multiply-adds per plan, and the sustained
GEMM throughput at the predictor's own layer shapes, measured in the same run (`edgeloop bench planner`;
docs/benchmarks.md, Efficiency).

Two floors, on float32 matrices of the plan's batch through each layer in turn, as the predictor runs them:
plain NumPy in a child process whose BLAS is held to the engine's thread count (OpenBLAS and MKL read it only
at start-up), and ONNX Runtime running nothing but those matrix products. The faster of the two is the floor.
Only the matrix products count as arithmetic: the GELUs, bias adds and the residual are a few percent of it
and are what an engine fuses around the products.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from perception.manifest import load_manifest

# The child's whole program: time the layer chain, report the best median of several rounds.
_FLOOR_PROGRAM = """
import json, sys, time
import numpy as np
layers, batch, repeats = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
weights = [rng.standard_normal((n_in, n_out)).astype(np.float32) for n_in, n_out in layers]
inputs = [rng.standard_normal((batch, n_in)).astype(np.float32) for n_in, _ in layers]
outputs = [np.empty((batch, n_out), np.float32) for _, n_out in layers]
def chain():
    for x, w, out in zip(inputs, weights, outputs):
        np.matmul(x, w, out=out)
for _ in range(20):
    chain()
rounds = []
for _ in range(5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chain()
        times.append(time.perf_counter() - start)
    rounds.append(sorted(times)[len(times) // 2])
print(json.dumps(min(rounds)))
"""
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class EfficiencyError(RuntimeError):
    pass


def predictor_layers(manifest_path: str | Path) -> list[tuple[int, int]]:
    """(inputs, outputs) of each matrix product in the predictor, in graph order, from its ONNX weights."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise EfficiencyError("counting the predictor's arithmetic needs the onnx package (the train extra)") from exc
    manifest = load_manifest(manifest_path)
    graph = onnx.load(str(manifest.path_of(manifest.predictor))).graph
    weights = {tensor.name: numpy_helper.to_array(tensor).shape for tensor in graph.initializer}
    # An INT8 Q/DQ model feeds each weight through a DequantizeLinear: its shape is the quantized initializer's.
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    layers = []
    for node in graph.node:
        if node.op_type not in ("Gemm", "MatMul"):
            continue
        shape = next((weights[name] for name in node.input[1:2] if name in weights), None)
        if shape is None or len(shape) != 2:
            raise EfficiencyError(f"{manifest.predictor.file}: {node.op_type} {node.name!r} has no 2-D weight")
        transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute)
        layers.append((int(shape[1]), int(shape[0])) if transposed else (int(shape[0]), int(shape[1])))
    if not layers:
        raise EfficiencyError(f"{manifest.predictor.file}: no Gemm or MatMul to count")
    return layers


def flops_per_sample_step(layers: list[tuple[int, int]]) -> int:
    """Multiply-adds count two floating-point operations each."""
    return sum(2 * n_in * n_out for n_in, n_out in layers)


def gemm_floor(layers: list[tuple[int, int]], batch: int, threads: int, repeats: int = 200) -> dict[str, Any]:
    """NumPy's sustained GFLOP/s through the layer chain at `batch` rows, on `threads` BLAS threads."""
    env = {**os.environ, **dict.fromkeys(_BLAS_THREADS, str(threads))}
    done = subprocess.run([sys.executable, "-c", _FLOOR_PROGRAM, json.dumps([layers, batch, repeats])],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise EfficiencyError(f"the GEMM floor measurement failed: {done.stderr.strip()[-500:]}")
    seconds = float(json.loads(done.stdout))
    flops = flops_per_sample_step(layers) * batch
    return {"batch": batch, "threads": threads, "chain_ms": seconds * 1e3, "gflops": flops / seconds / 1e9}


def engine_gemm_floor(layers: list[tuple[int, int]], batch: int, threads: int, repeats: int = 200) -> dict[str, Any]:
    """ONNX Runtime's sustained GFLOP/s on a graph of only the predictor's matrix products, on `threads` threads."""
    import time

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights = [], [], [], []
    for index, (n_in, n_out) in enumerate(layers):
        weights.append(numpy_helper.from_array(rng.standard_normal((n_in, n_out)).astype(np.float32), f"w{index}"))
        inputs.append(helper.make_tensor_value_info(f"x{index}", TensorProto.FLOAT, [batch, n_in]))
        outputs.append(helper.make_tensor_value_info(f"y{index}", TensorProto.FLOAT, [batch, n_out]))
        nodes.append(helper.make_node("MatMul", [f"x{index}", f"w{index}"], [f"y{index}"]))
    model = helper.make_model(helper.make_graph(nodes, "gemm_floor", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {f"x{index}": rng.standard_normal((batch, n_in)).astype(np.float32)
             for index, (n_in, _) in enumerate(layers)}
    for _ in range(20):
        session.run(None, feeds)
    rounds = []
    for _ in range(5):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        rounds.append(float(np.median(times)))
    seconds = min(rounds)
    flops = flops_per_sample_step(layers) * batch
    return {"batch": batch, "threads": threads, "chain_ms": seconds * 1e3, "gflops": flops / seconds / 1e9}


def plan_efficiency(flops_per_step: int, samples: int, horizon: int, iterations: float, plan_ms: float,
                    floor_gflops: float) -> dict[str, float]:
    """One plan's predictor arithmetic, its achieved rate, the fraction of the floor, and plan time over the time
    that arithmetic takes at the floor (1.0 would be a plan that is nothing but GEMMs at NumPy's speed)."""
    flops = flops_per_step * samples * horizon * iterations
    arithmetic_ms = flops / (floor_gflops * 1e9) * 1e3
    return {"gflop_per_plan": flops / 1e9, "achieved_gflops": flops / (plan_ms * 1e-3) / 1e9,
            "fraction_of_floor": arithmetic_ms / plan_ms, "plan_over_arithmetic": plan_ms / arithmetic_ms,
            "arithmetic_ms_at_floor": arithmetic_ms}
