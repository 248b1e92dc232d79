"""The few CUDA runtime calls the device backends need, through ctypes (no cupy / pycuda dependency).

The CUDA runtime (libcudart) is already in the process whenever onnxruntime-gpu's CUDA provider or TensorRT is:
both link it. Loading it again by its soname returns that same library, so device pointers made by ONNX Runtime
(OrtValue on "cuda") can be copied here. What is used:

- device facts: how many devices, a device's name and compute capability (plan checks, error messages);
- copies: host <-> device and device <-> device, flat (`copy`) and strided (`copy_2d`, the KV slot copies:
  `heads` rows of `length * head_dim` elements with the slot's pitch), on the legacy default stream followed by
  `synchronize()` so ONNX Runtime's or TensorRT's stream sees them (they are between steps, never inside one).

Nothing here has run on a GPU (the development machines have none); loading the library and the "no device"
errors are tested where a libcudart exists.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError

# cudaMemcpyKind and cudaDeviceAttr values (driver_types.h, stable since CUDA 4 / 5).
HOST_TO_DEVICE = 1
DEVICE_TO_HOST = 2
DEVICE_TO_DEVICE = 3
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76
_PROP_BYTES = 16384  # larger than cudaDeviceProp of any CUDA version; `name` (char[256]) is its first field

# Sonames, newest first; plus the folders where CUDA toolkits and NVIDIA's pip wheels put libcudart.
_SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")
_INSTALL_HINT = ("install a CUDA runtime (onnxruntime-gpu's nvidia-cuda-runtime wheel, a CUDA toolkit, or JetPack "
                 "on Jetson) or set CUDA_HOME to the toolkit folder")


def _candidates() -> list[str]:
    names = list(_SONAMES)
    folders = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    for folder in filter(None, folders):
        for lib in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/aarch64-linux/lib"):
            names += [str(Path(folder) / lib / so) for so in _SONAMES]
    try:
        import nvidia.cuda_runtime  # type: ignore[import-not-found]  # NVIDIA's pip wheel (onnxruntime-gpu, tensorrt)

        for root in nvidia.cuda_runtime.__path__:
            names += [str(Path(root) / "lib" / so) for so in _SONAMES]
    except ImportError:
        pass
    return names


@dataclass(frozen=True)
class DeviceFacts:
    """A GPU as a TensorRT plan depends on it."""

    name: str  # e.g. "NVIDIA A10G", "Orin"
    compute_capability: str  # "major.minor", e.g. "8.7" for Jetson Orin


class CudaRuntime:
    """libcudart through ctypes. Construction loads the library; every call raises BundleError on a CUDA error."""

    def __init__(self, library: str | None = None) -> None:
        self.lib: ctypes.CDLL | None = None
        for name in [library] if library else _candidates():
            try:
                self.lib = ctypes.CDLL(name)
                self.path = name
                break
            except OSError:
                continue
        if self.lib is None:
            raise BundleError(f"the CUDA runtime (libcudart) cannot be loaded; {_INSTALL_HINT}")
        lib = self.lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        size, ptr, kind = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
        lib.cudaMemcpy.argtypes = [ptr, ptr, size, kind]
        lib.cudaMemcpy2DAsync.argtypes = [ptr, size, ptr, size, size, size, kind, ptr]
        lib.cudaStreamSynchronize.argtypes = [ptr]
        lib.cudaMemset.argtypes = [ptr, ctypes.c_int, size]
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), size]
        lib.cudaFree.argtypes = [ptr]
        lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cudaGetDeviceCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]
        # CUDA 12 exports the current struct layout as cudaGetDeviceProperties_v2, CUDA 13 under the plain name.
        self._get_properties = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._get_properties.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            message = self.lib.cudaGetErrorString(status).decode(errors="replace")
            raise BundleError(f"CUDA {what} failed: {message} (error {status})")

    def device_count(self) -> int:
        """Number of CUDA devices; 0 when there is no device or no driver (never raises for that)."""
        count = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if status == 0 else 0

    def require_device(self, device: int = 0) -> None:
        """Raises one line when CUDA device `device` does not exist (no GPU, no driver)."""
        count = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        if status != 0:
            message = self.lib.cudaGetErrorString(status).decode(errors="replace")
            raise BundleError(f"no CUDA device is usable here ({message}); run on a machine with an NVIDIA GPU and "
                              "its driver, or use the bundle's ONNX graph on the CPU")
        if device >= count.value:
            raise BundleError(f"CUDA device {device} does not exist (this machine has {count.value})")

    def device_facts(self, device: int = 0) -> DeviceFacts:
        """Name and compute capability of `device`."""
        self.require_device(device)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, device), "attribute query")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, device), "attribute query")
        prop = ctypes.create_string_buffer(_PROP_BYTES)
        self._check(self._get_properties(prop, device), "device properties query")
        name = prop.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
        return DeviceFacts(name=name, compute_capability=f"{major.value}.{minor.value}")

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        """cudaMemcpy of `nbytes` (synchronous)."""
        if nbytes:
            self._check(self.lib.cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy")

    def copy_2d(self, dst: int, dst_pitch: int, src: int, src_pitch: int, width: int, height: int, kind: int) -> None:
        """cudaMemcpy2DAsync on the default stream: `height` rows of `width` bytes (call `synchronize` after)."""
        if width and height:
            self._check(self.lib.cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height, kind, None),
                        "cudaMemcpy2DAsync")

    def synchronize(self) -> None:
        """Waits for the default stream (the copies above)."""
        self._check(self.lib.cudaStreamSynchronize(None), "cudaStreamSynchronize")

    def malloc(self, nbytes: int) -> int:
        """cudaMalloc: a device pointer to `nbytes` (release it with `free`)."""
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), max(nbytes, 1)), f"cudaMalloc of {nbytes >> 20} MiB")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        """cudaFree."""
        self._check(self.lib.cudaFree(ptr), "cudaFree")

    def new_stream(self) -> int:
        """cudaStreamCreate: a stream handle (kept for the process's life by its user)."""
        stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        """Waits for `stream`."""
        self._check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def memset(self, ptr: int, nbytes: int) -> None:
        """Zero-fills `nbytes` of device memory."""
        if nbytes:
            self._check(self.lib.cudaMemset(ptr, 0, nbytes), "cudaMemset")
