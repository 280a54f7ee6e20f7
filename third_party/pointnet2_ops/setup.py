"""Build script for ``pointnet2_ops``.

Builds ``pointnet2_ops._C`` (C++ CPU kernels, plus CUDA kernels when a CUDA toolkit and a
CUDA build of torch are present) against the installed torch, so install it without build
isolation::

    pip install --no-build-isolation -e third_party/pointnet2_ops

Environment:
    POINTNET2_OPS_NO_CUDA=1   build the CPU kernels only.
    TORCH_CUDA_ARCH_LIST      GPU architectures; defaults to ``8.0;9.0+PTX`` when no GPU is visible.
    MAX_JOBS                  parallel compile jobs (ninja).

If compilation fails, the install still succeeds with the pure-PyTorch reference ops only.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

PACKAGE = "pointnet2_ops"
CSRC = os.path.join(PACKAGE, "csrc")
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def _warn(message: str) -> None:
    bar = "=" * 78
    print(f"\n{bar}\nWARNING (pointnet2_ops): {message}\n{bar}\n", file=sys.stderr)


def _sources(folder: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(CSRC, folder, pattern)))


def _locate_cuda_home() -> None:
    """Point CUDA_HOME at a toolkit that has headers when torch's own guess would not.

    torch guesses CUDA_HOME from the location of ``nvcc``; a wrapper script such as
    ``/usr/local/bin/nvcc`` makes that guess ``/usr/local``, which has no CUDA headers.
    Must run before ``torch.utils.cpp_extension`` is imported (it reads CUDA_HOME once).
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += sorted(glob.glob("/usr/local/cuda*"))
    for home in candidates:
        has_headers = os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))
        if has_headers and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = home
            return


def _extension_setup() -> dict:
    """Return the ``ext_modules``/``cmdclass`` keywords, or ``{}`` when torch is unavailable."""
    try:
        import torch
    except ImportError:
        _warn(
            "torch is not importable in the build environment, so the native ops are not "
            "built. Install torch first and use `pip install --no-build-isolation ...`."
        )
        return {}
    _locate_cuda_home()
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    with_cuda = bool(
        os.environ.get("POINTNET2_OPS_NO_CUDA", "0") != "1" and torch.version.cuda and CUDA_HOME
    )
    cuda_hint = (
        " If only the CUDA part fails, set POINTNET2_OPS_NO_CUDA=1 to build the CPU kernels alone."
        if with_cuda
        else ""
    )

    class OptionalBuildExt(BuildExtension):
        """Builds the extension but degrades to a pure-Python install when compiling fails."""

        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # any compiler/toolchain failure must not fail the install
                _warn(
                    f"building the native extension failed ({type(exc).__name__}: {exc}). "
                    "Installing the pure-PyTorch reference ops only; they are slow. "
                    f"Fix the toolchain and re-run `make install`.{cuda_hint}"
                )

    sources = _sources(".", "*.cpp") + _sources("cpu", "*.cpp")
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]  # OpenMP makes at::parallel_for parallel
    link_flags = ["-fopenmp"]
    if with_cuda:
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        extension = CUDAExtension(
            name=f"{PACKAGE}._C",
            sources=sources + _sources("cuda", "*.cpp") + _sources("cuda", "*.cu"),
            define_macros=[("WITH_CUDA", None)],
            # --fmad=false keeps distances bit-identical to the CPU kernels (no FMA contraction).
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--fmad=false"]},
            extra_link_args=link_flags,
        )
    else:
        extension = CppExtension(
            name=f"{PACKAGE}._C",
            sources=sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": OptionalBuildExt}}


setup(
    name="pointnet2_ops",
    version="0.2.0",
    description="PointNet++ point-cloud ops (FPS, ball query, grouping, interpolation, kNN) "
    "with C++/CUDA kernels and a pure-PyTorch reference.",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    python_requires=">=3.9",
    install_requires=["torch"],
    zip_safe=False,
    **_extension_setup(),
)
