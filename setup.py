"""Build and install llasa-rt: one `llasa_rt` namespace from four source folders plus a CMake-built extension.

    python/llasa_rt  -> llasa_rt               (runtime API, bundle module, backends, CLI; no torch)
    export/          -> llasa_rt.export        (HF checkpoint -> ONNX; torch/transformers as extras)
    engines/         -> llasa_rt.engines       (ONNX -> TensorRT plans: `llasa-rt build-engine`)
    calibration/     -> llasa_rt.calibration   (quantisation calibration; reserved)
    runtime/ + csrc/ -> llasa_rt._core         (C++ decode core + pybind11 bindings, built by CMake)

The extension is configured by CMakeLists.txt (the CPU core; with LLASA_RT_CMAKE_ARGS=-DLLASA_RT_WITH_TENSORRT=ON
also the TensorRT backend, when TensorRT and CUDA are found). Set
LLASA_RT_CMAKE_ARGS to pass extra arguments to CMake, LLASA_RT_BUILD_TYPE to choose the build type
(default Release).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def read_version() -> str:
    text = (ROOT / "python" / "llasa_rt" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise RuntimeError("python/llasa_rt/_version.py has no __version__ line")
    return match.group(1)


class CMakeExtension(Extension):
    """An extension whose sources are built by CMake rather than by setuptools."""

    def __init__(self, name: str, source_dir: Path) -> None:
        super().__init__(name, sources=[])
        self.source_dir = str(source_dir)


class CMakeBuild(build_ext):
    """Runs CMake for each CMakeExtension and puts the built module where setuptools expects it."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        build_type = os.environ.get("LLASA_RT_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DLLASA_RT_MODULE_OUTPUT_DIR={out_dir}",
            f"-DLLASA_RT_MODULE_SUFFIX={Path(self.get_ext_filename(ext.name)).name[len('_core'):]}",
        ]
        args += shlex.split(os.environ.get("LLASA_RT_CMAKE_ARGS", ""))
        subprocess.run(["cmake", "-S", ext.source_dir, "-B", str(build_temp), *args], check=True)
        jobs = str(max(1, os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", str(build_temp), "--config", build_type, "-j", jobs], check=True)


# Source folder of each top-level part of the namespace; their sub-packages are found automatically.
PACKAGE_ROOTS = {
    "llasa_rt": "python/llasa_rt",
    "llasa_rt.export": "export",
    "llasa_rt.engines": "engines",
    "llasa_rt.calibration": "calibration",
}


def packages_and_dirs() -> tuple[list[str], dict[str, str]]:
    packages, dirs = [], {}
    for name, folder in PACKAGE_ROOTS.items():
        for pkg in [name, *(f"{name}.{sub}" for sub in find_packages(where=str(ROOT / folder)))]:
            packages.append(pkg)
            dirs[pkg] = folder + pkg[len(name):].replace(".", "/")
    return packages, dirs


PACKAGES, PACKAGE_DIRS = packages_and_dirs()

RUNTIME_DEPS = ["numpy>=1.24", "onnxruntime>=1.20", "tokenizers>=0.19", "soundfile>=0.12"]
EXPORT_DEPS = [
    "torch>=2.4",
    "transformers>=4.46",
    "safetensors>=0.4",
    "onnx>=1.16",
    "huggingface_hub>=0.24",
    "jinja2>=3.1",
]
SERVER_DEPS = ["starlette>=0.37", "uvicorn>=0.30"]
# Verifier extras: resemblyzer ships the trained GE2E speaker encoder (its webrtcvad dependency imports
# pkg_resources, gone from setuptools 81); pocketsphinx ships a trained English acoustic model (forced alignment).
RESEMBLYZER_DEPS = ["resemblyzer>=0.1.4", "setuptools<81"]
POCKETSPHINX_DEPS = ["pocketsphinx>=5.0"]
# Tests also compare WER with jiwer and score real English speech shipped in the moonshine-voice wheel.
TEST_DEPS = ["pytest>=8", "ruff>=0.6", "httpx>=0.27", "jiwer>=3.0", "moonshine-voice>=0.1.5", *RESEMBLYZER_DEPS,
             *POCKETSPHINX_DEPS]

setup(
    name="llasa-rt",
    version=read_version(),
    description="Run Llasa text-to-speech (Llama-3 + X-Codec2) on CPUs and edge devices with ONNX Runtime.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIRS,
    package_data={"llasa_rt.export": ["data/*"], "llasa_rt.evaluation": ["data/*"]},
    ext_modules=[CMakeExtension("llasa_rt._core", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=RUNTIME_DEPS,
    extras_require={"export": EXPORT_DEPS, "server": SERVER_DEPS, "resemblyzer": RESEMBLYZER_DEPS,
                    "pocketsphinx": POCKETSPHINX_DEPS, "test": TEST_DEPS + EXPORT_DEPS + SERVER_DEPS},
    entry_points={"console_scripts": ["llasa-rt=llasa_rt.cli:main"]},
    zip_safe=False,
)
