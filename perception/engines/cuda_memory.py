"""Pinned host buffers, device buffers, one stream and CUDA graphs for the TensorRT backend, behind one interface.

pycuda is the project's stated choice; cuda-python (NVIDIA's own bindings, which TensorRT's samples moved to
in 10.13) is accepted as the alternative. `open_memory` takes the first that imports, pycuda first. Everything a
`CudaMemory` hands out belongs to the thread that opened it: that thread makes the device's primary context
current (the context the CUDA runtime, and so TensorRT, uses) and is the only one that may touch its buffers,
stream and graphs. Nothing here creates a context per call or uses `pycuda.autoinit`, which would tie the
context to whichever thread imported it first.
"""

from __future__ import annotations

import ctypes
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

BINDINGS = ("pycuda", "cuda-python")


class CudaError(RuntimeError):
    """A CUDA call that failed; the text names the call and CUDA's error name."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7" on Orin, "8.9" on an L4


class CudaMemory(ABC):
    """One device's buffers and one non-default stream, owned by the thread that opened them."""

    binding: ClassVar[str]
    stream_handle: int  # what TensorRT's execute_async_v3 takes

    @abstractmethod
    def pinned(self, count: int, dtype: np.dtype[Any]) -> np.ndarray:
        """A 1-D page-locked host array (asynchronous copies need page-locked memory), freed by `close`."""

    @abstractmethod
    def device(self, nbytes: int) -> int:
        """Address of a device allocation of `nbytes`, freed by `close`."""

    @abstractmethod
    def htod(self, device: int, host: np.ndarray) -> None:
        """Queue a copy of `host` (a contiguous view of a pinned array) to `device` on the stream."""

    @abstractmethod
    def dtoh(self, host: np.ndarray, device: int) -> None:
        """Queue a copy from `device` into `host` (a contiguous view of a pinned array) on the stream."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until everything queued on the stream has finished."""

    @abstractmethod
    def begin_capture(self) -> None:
        """Record the work queued on the stream from now on into a CUDA graph instead of running it."""

    @abstractmethod
    def end_capture(self) -> object:
        """Stop recording; returns the instantiated graph for `launch`."""

    @abstractmethod
    def launch(self, graph: object) -> None:
        """Queue a graph from `end_capture` on the stream."""

    @abstractmethod
    def close(self) -> None:
        """Free every buffer and graph, destroy the stream and release the context, on the owning thread."""


def binding_name() -> str | None:
    """The binding `open_memory` would use: 'pycuda', 'cuda-python', or None when neither imports."""
    try:
        import pycuda.driver  # noqa: F401
        return "pycuda"
    except (ImportError, OSError):  # OSError: pycuda installed, libcuda missing
        pass
    try:
        _cudart()
        return "cuda-python"
    except (ImportError, OSError):
        return None


def gpus() -> list[GpuInfo]:
    """CUDA devices visible to this process; empty without a binding, a driver or a device."""
    binding = binding_name()
    try:
        if binding == "pycuda":
            import pycuda.driver as cuda

            cuda.init()
            devices = [cuda.Device(i) for i in range(cuda.Device.count())]
            return [GpuInfo(d.name(), "{}.{}".format(*d.compute_capability())) for d in devices]
        if binding == "cuda-python":
            cudart = _cudart()
            properties = [_call(cudart, "cudaGetDeviceProperties", i)
                          for i in range(_call(cudart, "cudaGetDeviceCount"))]
            return [GpuInfo(_text(p.name), f"{p.major}.{p.minor}") for p in properties]
    except Exception:  # each binding raises its own error types when there is no driver or device
        return []
    return []


def open_memory(device: int = 0) -> CudaMemory:
    """Buffers and a stream on `device` through pycuda, else cuda-python; call on the thread that will use them."""
    binding = binding_name()
    if binding == "pycuda":
        return _PyCudaMemory(device)
    if binding == "cuda-python":
        return _CudaPythonMemory(device)
    raise CudaError("neither pycuda nor cuda-python imports: pip install pycuda (or cuda-python)")


class _PyCudaMemory(CudaMemory):
    binding = "pycuda"

    def __init__(self, device: int) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda
        cuda.init()
        self._context = cuda.Device(device).retain_primary_context()
        self._context.push()
        self._stream = cuda.Stream()
        self.stream_handle = int(self._stream.handle)
        self._device: list[Any] = []
        self._pinned: list[np.ndarray] = []

    def pinned(self, count: int, dtype: np.dtype[Any]) -> np.ndarray:
        array: np.ndarray = self._cuda.pagelocked_empty(count, dtype)
        self._pinned.append(array)
        return array

    def device(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._device.append(allocation)
        return int(allocation)

    def htod(self, device: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(device, host, self._stream)

    def dtoh(self, host: np.ndarray, device: int) -> None:
        self._cuda.memcpy_dtoh_async(host, device, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def begin_capture(self) -> None:
        self._stream.begin_capture()

    def end_capture(self) -> object:
        return self._stream.end_capture().instantiate()

    def launch(self, graph: object) -> None:
        graph.launch(self._stream)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stream.synchronize()
        for allocation in self._device:
            allocation.free()
        for array in self._pinned:
            array.base.free()  # type: ignore[union-attr]  # pycuda's pagelocked allocation behind the array
        self._device, self._pinned = [], []
        self._context.pop()
        self._context.detach()


class _CudaPythonMemory(CudaMemory):
    binding = "cuda-python"

    def __init__(self, device: int) -> None:
        self._cudart = cudart = _cudart()
        _call(cudart, "cudaSetDevice", device)  # the runtime API makes the primary context current on this thread
        self._stream = _call(cudart, "cudaStreamCreate")
        self.stream_handle = int(self._stream)
        self._device: list[int] = []
        self._pinned: list[int] = []
        self._graphs: list[tuple[Any, Any]] = []

    def pinned(self, count: int, dtype: np.dtype[Any]) -> np.ndarray:
        dtype = np.dtype(dtype)
        address = _call(self._cudart, "cudaMallocHost", count * dtype.itemsize)
        self._pinned.append(address)
        # Through bytes, not a typed ctypes pointer: ctypes has no float16.
        raw = (ctypes.c_byte * (count * dtype.itemsize)).from_address(int(address))
        return np.frombuffer(memoryview(raw), dtype=dtype, count=count)

    def device(self, nbytes: int) -> int:
        address = int(_call(self._cudart, "cudaMalloc", nbytes))
        self._device.append(address)
        return address

    def htod(self, device: int, host: np.ndarray) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _call(self._cudart, "cudaMemcpyAsync", device, host.ctypes.data, host.nbytes, kind, self._stream)

    def dtoh(self, host: np.ndarray, device: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _call(self._cudart, "cudaMemcpyAsync", host.ctypes.data, device, host.nbytes, kind, self._stream)

    def synchronize(self) -> None:
        _call(self._cudart, "cudaStreamSynchronize", self._stream)

    def begin_capture(self) -> None:
        # Thread-local: CUDA calls other threads make meanwhile (another engine's) do not invalidate this capture.
        mode = self._cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _call(self._cudart, "cudaStreamBeginCapture", self._stream, mode)

    def end_capture(self) -> object:
        graph = _call(self._cudart, "cudaStreamEndCapture", self._stream)
        executable = _call(self._cudart, "cudaGraphInstantiate", graph, 0)
        self._graphs.append((executable, graph))
        return executable

    def launch(self, graph: object) -> None:
        _call(self._cudart, "cudaGraphLaunch", graph, self._stream)

    def close(self) -> None:
        self.synchronize()
        for executable, graph in self._graphs:
            _call(self._cudart, "cudaGraphExecDestroy", executable)
            _call(self._cudart, "cudaGraphDestroy", graph)
        for address in self._device:
            _call(self._cudart, "cudaFree", address)
        for address in self._pinned:
            _call(self._cudart, "cudaFreeHost", address)
        _call(self._cudart, "cudaStreamDestroy", self._stream)
        self._graphs, self._device, self._pinned = [], [], []


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python 12.6 and later
    except ImportError:
        from cuda import cudart as runtime  # earlier cuda-python (JetPack 6's pip wheels)
    return runtime


def _call(cudart: Any, name: str, *args: Any) -> Any:
    """cuda-python returns (error, *results): raise on an error, else return the one result (or None)."""
    error, *results = getattr(cudart, name)(*args)
    if error != cudart.cudaError_t.cudaSuccess:
        raise CudaError(f"{name}: {_text(cudart.cudaGetErrorName(error)[1])}")
    return results[0] if len(results) == 1 else None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace").rstrip("\0") if isinstance(value, bytes) else value
