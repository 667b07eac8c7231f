"""TensorRT backend: one engine deserialized once, run by the one thread that owns everything CUDA.

A worker thread per engine opens the device memory (making the device's primary context current there),
deserializes the engine, creates its single execution context, allocates pinned host and device buffers for
the profile's largest batch and points the context's tensors at them once. Each `run` hands the feeds to
that thread, which copies them in, sets the input shapes (only when they change: the batch, and the rollout
model's horizon), enqueues `execute_async_v3` on its non-default stream, copies the outputs back and waits
for the stream. With `cuda_graph`, the enqueue of each set of shapes is captured once into a CUDA graph and
replayed after that. The rollout model's whole horizon is one enqueue (TensorRT runs its loop on the GPU).

Engines come from `perception.trt_build` (build, cache, check against ONNX Runtime); this module only runs
them, and imports tensorrt and the CUDA binding inside the worker so it imports on any machine.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from perception.engines.base import Engine, EngineError
from perception.manifest import ROLLOUT_ACTIONS, ModelFile, TensorSpec


class EngineLoadError(EngineError):
    """TensorRT refused the engine file (another TensorRT version or GPU, or damaged bytes): rebuild it."""


def tensorrt_unavailable() -> str | None:
    """Why the TensorRT backend cannot run here (every missing piece), or None when it can."""
    from perception.engines.cuda_memory import gpus, missing_binding

    missing = []
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: the wheel is there, libnvinfer is not
        missing.append(f"tensorrt does not import ({exc})")
    binding_problem = missing_binding()
    if binding_problem is not None:
        missing.append(binding_problem)
    elif not gpus():
        missing.append("no CUDA GPU is visible")
    return "; ".join(missing) or None


@functools.cache
def trt_logger() -> Any:
    """One TensorRT logger per process (TensorRT keeps the first one it is given)."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, spec: ModelFile, name: str, *, cuda_graph: bool = False,
                 device: int = 0) -> None:
        super().__init__(name, spec.inputs, spec.outputs)
        session = _Session(name, spec, cuda_graph, device)
        worker = _Worker(f"tensorrt {name}")
        try:
            self.batch_limits: dict[str, tuple[int, int]] = worker.call(session.open, Path(engine_path).read_bytes())
        except BaseException:
            worker.stop(session.close)
            raise
        self._session, self._worker = session, worker
        self.max_batch = min(high for _low, high in self.batch_limits.values())
        actions = session.largest.get(ROLLOUT_ACTIONS)  # a rollout model's [batch, steps, action]
        self.max_steps = actions[1] if actions is not None and len(actions) == 3 else None
        # Close on the owning thread when the engine is dropped or the interpreter exits, whichever comes first.
        self._finalizer = weakref.finalize(self, worker.stop, session.close)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for spec in self.inputs:
            batch = feeds[spec.name].shape[0]
            low, high = self.batch_limits[spec.name]
            if not low <= batch <= high:
                raise EngineError(f"{self.name} ({self.backend}): input '{spec.name}' has batch {batch}; this "
                                  f"engine's optimization profile takes {low} to {high}: rebuild it for that batch "
                                  f"(edgeloop build-engine MANIFEST --samples {batch})")
        result: dict[str, np.ndarray] = self._worker.call(self._session.run, feeds)
        return result

    def close(self) -> None:
        """Free the buffers, stream, execution context and engine now (also done when the engine is dropped)."""
        self._finalizer()


class _Session:
    """The engine's TensorRT and CUDA objects; every method runs on the worker thread."""

    def __init__(self, name: str, spec: ModelFile, cuda_graph: bool, device: int) -> None:
        self._name, self._spec, self._cuda_graph, self._device_index = name, spec, cuda_graph, device
        self._memory: Any = None
        self._trt: list[Any] = []  # runtime, engine, context: released in reverse order
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._shapes: tuple[tuple[int, ...], ...] = ()  # the input shapes set in the context
        self._output_shapes: dict[str, tuple[int, ...]] = {}
        self.largest: dict[str, tuple[int, ...]] = {}  # each input's largest profile shape, once opened
        self._graphs: dict[tuple[tuple[int, ...], ...], object] = {}  # per input shapes; only the current kept

    def open(self, engine_bytes: bytes) -> dict[str, tuple[int, int]]:
        import tensorrt as trt

        from perception.engines.cuda_memory import open_memory

        self._memory = memory = open_memory(self._device_index)
        runtime = trt.Runtime(trt_logger())
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise EngineLoadError(f"{self._name}: TensorRT {trt.__version__} cannot deserialize this engine (built "
                                  "by another TensorRT version or for another GPU, or damaged)")
        context = engine.create_execution_context()
        self._trt = [runtime, engine, context]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        self._check_io("inputs", self._spec.inputs, inputs, engine, trt)
        self._check_io("outputs", self._spec.outputs, outputs, engine, trt)
        limits = {}
        for name in inputs:
            low, _opt, high = engine.get_tensor_profile_shape(name, 0)
            limits[name] = (int(low[0]), int(high[0]))
            self.largest[name] = tuple(int(size) for size in high)
            # Largest shapes, so every output's largest shape is known.
            if not context.set_input_shape(name, high):
                raise EngineLoadError(f"{self._name}: TensorRT refused the profile's largest shape {tuple(high)} "
                                      f"for input '{name}'")
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            count = math.prod(context.get_tensor_shape(name))
            self._host[name] = memory.pinned(count, dtype)
            self._device[name] = memory.device(count * dtype.itemsize)
            context.set_tensor_address(name, self._device[name])  # fixed for the engine's life
        return limits

    def _check_io(self, kind: str, specs: list[TensorSpec], found: list[str], engine: Any, trt: Any) -> None:
        expected = [spec.name for spec in specs]
        if sorted(expected) != sorted(found):
            raise EngineLoadError(f"{self._name}: engine {kind} are {found}, the manifest says {expected}")
        for spec in specs:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(spec.name)))
            if dtype != np.dtype(spec.dtype):
                raise EngineLoadError(f"{self._name}: engine tensor '{spec.name}' is {dtype}, the manifest says "
                                      f"{spec.dtype}")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        memory, context = self._memory, self._trt[2]
        shapes = tuple(feeds[spec.name].shape for spec in self._spec.inputs)
        if shapes != self._shapes:  # input shapes persist in the context; set them only when they change
            for spec in self._spec.inputs:
                if not context.set_input_shape(spec.name, feeds[spec.name].shape):
                    raise EngineError(f"{self._name} (tensorrt): shape {feeds[spec.name].shape} of input "
                                      f"'{spec.name}' is outside the engine's profile")
            self._output_shapes = {spec.name: tuple(context.get_tensor_shape(spec.name)) for spec in self._spec.outputs}
            self._shapes = shapes
            # A graph holds the shapes it was captured with; after a shape change it must be captured anew.
            self._graphs.clear()
        for spec in self._spec.inputs:
            array = feeds[spec.name]
            staged = self._host[spec.name][:array.size].reshape(array.shape)
            np.copyto(staged, array)
            memory.htod(self._device[spec.name], staged)
        if self._cuda_graph:
            graph = self._graphs.get(shapes)
            if graph is None:
                graph = self._graphs[shapes] = self._capture()
            memory.launch(graph)
        else:
            self._execute()
        results = {}
        for name, shape in self._output_shapes.items():
            results[name] = self._host[name][:math.prod(shape)].reshape(shape)
            memory.dtoh(results[name], self._device[name])
        memory.synchronize()
        return {name: array.copy() for name, array in results.items()}  # the pinned buffers are reused next call

    def _execute(self) -> None:
        if not self._trt[2].execute_async_v3(self._memory.stream_handle):
            raise EngineError(f"{self._name} (tensorrt): execute_async_v3 failed (see TensorRT's log above)")

    def _capture(self) -> object:
        # The first enqueue after a shape change does setup work that cannot be captured (TensorRT's CUDA graph
        # notes): run it once outside the capture, then record the same enqueue. Buffers never move, so the graph
        # stays valid for every later call with this batch.
        self._execute()
        self._memory.begin_capture()
        try:
            self._execute()
        finally:
            graph = self._memory.end_capture()
        return graph

    def close(self) -> None:
        self._graphs.clear()  # graph executables go before the memory and context they refer to
        while self._trt:  # execution context, then engine, then runtime, while the context is still current
            self._trt.pop()
        if self._memory is not None:
            self._memory.close()
            self._memory = None


class _Worker:
    """Runs calls one at a time on its own thread: the only thread that touches one engine's CUDA state.

    Not a `ThreadPoolExecutor(max_workers=1)`, which would also keep one owner thread: its workers are joined
    at interpreter exit before `atexit` handlers run, so an engine still open then could no longer be closed on
    the thread that owns its context (submitting raises "cannot schedule new futures after shutdown").
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        # Daemon: an engine nobody closed must not keep the process alive (its finalizer still runs at exit).
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        future: Future[Any] = Future()
        self._jobs.put((functools.partial(function, *args), future))
        return future.result()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, future = job
            try:
                future.set_result(function())
            except BaseException as exc:  # handed to the caller's thread, which raises it
                future.set_exception(exc)

    def stop(self, last: Callable[[], None]) -> None:
        """Run `last` on the thread, then end it."""
        if self._thread.is_alive():
            try:
                self.call(last)
            finally:
                self._jobs.put(None)
                self._thread.join()
