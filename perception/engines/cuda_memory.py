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
import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

BINDINGS = ("pycuda", "cuda-python")
BINDING_VARIABLE = "EDGELOOP_CUDA_BINDING"  # pick one binding where both are installed


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

    _graphs: _StreamGraphs  # set by each binding once its stream exists

    def begin_capture(self) -> None:
        """Record the work queued on the stream from now on into a CUDA graph instead of running it."""
        self._graphs.begin_capture()

    def end_capture(self) -> object:
        """Stop recording; returns the instantiated graph for `launch`."""
        return self._graphs.end_capture()

    def launch(self, graph: object) -> None:
        """Queue a graph from `end_capture` on the stream."""
        self._graphs.launch(graph)

    @abstractmethod
    def close(self) -> None:
        """Free every buffer and graph, destroy the stream and release the context, on the owning thread."""


def binding_name() -> str | None:
    """The binding `open_memory` would use: the one $EDGELOOP_CUDA_BINDING names, else pycuda, else cuda-python;
    None when that one (or neither) imports, or the variable names no binding."""
    chosen = os.environ.get(BINDING_VARIABLE, "").strip()
    for name in (chosen,) if chosen else BINDINGS:
        try:
            if name == "pycuda":
                import pycuda.driver  # noqa: F401
            elif name == "cuda-python":
                _cudart()
            else:
                return None
            return name
        except (ImportError, OSError):  # OSError: the binding is installed, libcuda is not
            continue
    return None


def missing_binding() -> str | None:
    """Why no CUDA binding can be used, naming $EDGELOOP_CUDA_BINDING when it is set; None when one can."""
    if binding_name() is not None:
        return None
    chosen = os.environ.get(BINDING_VARIABLE, "").strip()
    if not chosen:
        return "neither pycuda nor cuda-python imports (device memory needs one)"
    if chosen not in BINDINGS:
        return f"{BINDING_VARIABLE}={chosen!r} is not one of {', '.join(BINDINGS)}"
    return f"{BINDING_VARIABLE}={chosen}, and {chosen} does not import"


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
    raise CudaError(f"{missing_binding()}: pip install pycuda (or cuda-python)")


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
        self._graphs = _StreamGraphs(self.stream_handle)

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

    def close(self) -> None:
        self._stream.synchronize()
        self._graphs.close()
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
        self._graphs = _StreamGraphs(self.stream_handle)

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

    def close(self) -> None:
        self.synchronize()
        self._graphs.close()
        for address in self._device:
            _call(self._cudart, "cudaFree", address)
        for address in self._pinned:
            _call(self._cudart, "cudaFreeHost", address)
        _call(self._cudart, "cudaStreamDestroy", self._stream)
        self._device, self._pinned = [], []


class _StreamGraphs:
    """CUDA graphs captured from one stream, through the CUDA driver API (libcuda) for either binding.

    pycuda wraps no stream capture or graph calls at all (checked against pycuda 2026.1's sources), so both
    bindings capture through the driver library that every CUDA process has loaded; a runtime-API stream
    handle is a driver-API stream handle.
    """

    _THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: other threads' CUDA calls cannot break a capture

    def __init__(self, stream_handle: int) -> None:
        self._cuda = _driver_library()
        self._stream = ctypes.c_void_p(stream_handle)
        self._owned: list[tuple[ctypes.c_void_p, ctypes.c_void_p]] = []  # (executable, graph), freed by close

    def begin_capture(self) -> None:
        self._check("cuStreamBeginCapture_v2", self._stream, ctypes.c_int(self._THREAD_LOCAL))

    def end_capture(self) -> object:
        graph, executable = ctypes.c_void_p(), ctypes.c_void_p()
        self._check("cuStreamEndCapture", self._stream, ctypes.byref(graph))
        try:
            self._check("cuGraphInstantiateWithFlags", ctypes.byref(executable), graph, ctypes.c_ulonglong(0))
        except CudaError:
            self._check("cuGraphDestroy", graph)
            raise
        self._owned.append((executable, graph))
        return executable

    def launch(self, graph: object) -> None:
        self._check("cuGraphLaunch", graph, self._stream)

    def close(self) -> None:
        """Destroy every graph; call after the stream has finished with them."""
        for executable, graph in self._owned:
            self._check("cuGraphExecDestroy", executable)
            self._check("cuGraphDestroy", graph)
        self._owned = []

    def _check(self, name: str, *args: Any) -> None:
        result = getattr(self._cuda, name)(*args)
        if result != 0:  # CUDA_SUCCESS
            text = ctypes.c_char_p()
            self._cuda.cuGetErrorName(result, ctypes.byref(text))
            raise CudaError(f"{name}: {_text(text.value or f'CUresult {result}'.encode())}")


@functools.cache
def _driver_library() -> Any:
    """libcuda with the prototypes `_StreamGraphs` calls (every function returns a CUresult)."""
    library = ctypes.CDLL("libcuda.so.1")
    pointer, handle_out = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    prototypes: dict[str, list[Any]] = {
        "cuStreamBeginCapture_v2": [pointer, ctypes.c_int],
        "cuStreamEndCapture": [pointer, handle_out],
        "cuGraphInstantiateWithFlags": [handle_out, pointer, ctypes.c_ulonglong],
        "cuGraphLaunch": [pointer, pointer],
        "cuGraphExecDestroy": [pointer],
        "cuGraphDestroy": [pointer],
        "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
    }
    for name, argtypes in prototypes.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return library


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
