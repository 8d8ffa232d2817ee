"""Build of advface_fast.

The package is pure Python plus an optional pybind11 extension ``advface_fast._C`` built from
``csrc/``: its C++ part always (OpenMP), its CUDA part only when ``nvcc`` is found. The package
imports and works without the extension. Switches (environment variables):

    ADVFACE_SKIP_EXT=1        build no extension at all
    ADVFACE_SKIP_CUDA=1       build the extension without its CUDA part
    ADVFACE_CUDA_ARCHS="80;90"  SM architectures for nvcc (default "80;90": A100, H100/H200)
    ADVFACE_NVCC=/path/nvcc   nvcc to use (default: $CUDA_HOME/bin/nvcc, then nvcc on PATH)
    ADVFACE_REQUIRE_CUDA=1    fail the build instead of skipping the CUDA part
    ADVFACE_CUBLASLT_INCLUDE=/dir  folder holding cublasLt.h (default: the CUDA toolkit's include,
                              then the nvidia-cublas wheel's in site-packages); without the header
                              the CUDA protection loop (backend "cuda") is not built
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _say(msg: str) -> None:
    print(f"advface_fast build: {msg}", file=sys.stderr, flush=True)


def _find_nvcc() -> str | None:
    if os.environ.get("ADVFACE_NVCC"):
        return os.environ["ADVFACE_NVCC"]
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _cuda_root(nvcc: str) -> Path | None:
    """The toolkit folder holding ``lib64/libcudart_static.a`` (nvcc may be a wrapper script)."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(home)] if home else []
    candidates += [Path(os.path.realpath(nvcc)).parent.parent, Path("/usr/local/cuda")]
    for root in candidates:
        if any((root / lib / "libcudart_static.a").exists() for lib in ("lib64", "lib")):
            return root
    return None


class BuildExt(build_ext):
    """Compiles the ``.cu`` sources with nvcc into objects linked into ``_C`` (cudart static)."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name != "advface_fast._C":
            return super().build_extension(ext)
        plain = (
            list(ext.extra_objects),
            list(ext.define_macros),
            list(ext.include_dirs),
            list(ext.library_dirs),
            list(ext.libraries),
        )
        if not self._add_cuda(ext):
            return super().build_extension(ext)
        try:
            return super().build_extension(ext)
        except Exception as exc:  # setuptools raises CompileError/LinkError and friends
            if _flag("ADVFACE_REQUIRE_CUDA"):
                raise
            _say(f"linking the CUDA part failed ({exc}): building advface_fast._C without it")
            ext.extra_objects, ext.define_macros, ext.include_dirs, ext.library_dirs, ext.libraries = plain
            return super().build_extension(ext)

    def _add_cuda(self, ext: Extension) -> bool:
        """Compile the .cu files and add them to ``ext``; False (with a message) when skipped."""
        if _flag("ADVFACE_SKIP_CUDA"):
            _say("ADVFACE_SKIP_CUDA is set: building advface_fast._C without its CUDA part")
            return False
        nvcc = _find_nvcc()
        root = _cuda_root(nvcc) if nvcc else None
        if nvcc is None or root is None:
            what = "nvcc not found" if nvcc is None else "libcudart_static.a not found (set CUDA_HOME)"
            msg = f"{what}: building advface_fast._C without its CUDA part (the cuda backend will be unavailable)"
            if _flag("ADVFACE_REQUIRE_CUDA"):
                raise RuntimeError(msg)
            _say(msg)
            return False
        archs = [
            a.strip() for a in os.environ.get("ADVFACE_CUDA_ARCHS", "80;90").replace(",", ";").split(";") if a.strip()
        ]
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        lt_include = _cublaslt_include(root)
        loop_flags = [] if lt_include is None else ["-DADVFACE_WITH_CUBLASLT", f"-I{lt_include}"]
        if lt_include is None:
            _say("cublasLt.h not found (set ADVFACE_CUBLASLT_INCLUDE): the CUDA protection loop is not built")
        else:
            _say(f"cublasLt.h from {lt_include}: building the CUDA protection loop")
        out_dir = Path(self.build_temp) / "cuda"
        out_dir.mkdir(parents=True, exist_ok=True)
        objects = []
        try:
            for cu in sorted(CSRC.glob("*.cu")):
                obj = out_dir / (cu.stem + ".o")
                cmd = [
                    nvcc,
                    "-c",
                    str(cu),
                    "-o",
                    str(obj),
                    "-O3",
                    "-std=c++17",
                    "-Xcompiler",
                    "-fPIC",
                    f"-I{CSRC}",
                    *loop_flags,
                    *gencode,
                ]
                _say(" ".join(cmd))
                subprocess.run(cmd, check=True)
                objects.append(str(obj))
        except (subprocess.CalledProcessError, OSError) as exc:
            if _flag("ADVFACE_REQUIRE_CUDA"):
                raise
            _say(f"nvcc failed ({exc}): building advface_fast._C without its CUDA part")
            return False
        ext.extra_objects = [*ext.extra_objects, *objects]
        ext.define_macros = [
            *ext.define_macros,
            ("ADVFACE_WITH_CUDA", "1"),
            ("ADVFACE_CUDA_ARCHS", f'"{";".join(archs)}"'),
            *([("ADVFACE_WITH_CUBLASLT", "1")] if lt_include is not None else []),
        ]
        ext.include_dirs = [*ext.include_dirs, str(root / "include")]
        ext.library_dirs = [*ext.library_dirs, str(root / "lib64"), str(root / "lib")]
        # Static cudart: the module needs no libcudart.so at run time and imports on machines
        # without a GPU (CUDA calls then return an error code instead of crashing).
        ext.libraries = [*ext.libraries, "cudart_static", "rt", "pthread", "dl"]
        return True


def _cublaslt_include(cuda_root: Path) -> Path | None:
    """The folder of cublasLt.h: env, CUDA toolkit, or an nvidia-cublas wheel (CUDA 13 or 12 layout).
    Only the header is needed at build time: libcublasLt is opened at run time (dlopen)."""
    env = os.environ.get("ADVFACE_CUBLASLT_INCLUDE")
    candidates = [Path(env)] if env else []
    candidates.append(cuda_root / "include")
    # site-packages of this interpreter, also under pip's build isolation (purelib is the target env's)
    roots = {Path(p) for p in sys.path if p} | {Path(sysconfig.get_paths()["purelib"])}
    for root in sorted(roots):
        candidates += [root / "nvidia" / "cu13" / "include", root / "nvidia" / "cublas" / "include"]
    return next((c for c in candidates if (c / "cublasLt.h").is_file()), None)


def _extensions() -> list[Extension]:
    if _flag("ADVFACE_SKIP_EXT"):
        _say("ADVFACE_SKIP_EXT is set: no compiled extension (pure-Python install)")
        return []
    import pybind11

    return [
        Extension(
            "advface_fast._C",
            sources=[
                "csrc/bindings.cpp",
                "csrc/amx_gemm_cpu.cpp",
                "csrc/clipped_sign_step_cpu.cpp",
                "csrc/epilogues_cpu.cpp",
                "csrc/seeding_cpu.cpp",
            ],
            # headers: a changed header must rebuild (setuptools otherwise calls the module up to date)
            depends=sorted(str(h.relative_to(ROOT)) for h in CSRC.glob("*.h*")),
            include_dirs=[pybind11.get_include(), "csrc"],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp", "-fvisibility=hidden"],
            extra_link_args=["-fopenmp"],
            language="c++",
            optional=True,  # a failed build leaves a working pure-Python package
        )
    ]


setup(
    # every sub-package of advface_fast/ (found, so a new one cannot be left out of the wheel), plus
    # the two top-level folders that ship inside it, and the default models' data folder
    packages=[
        *find_packages(include=["advface_fast", "advface_fast.*"]),
        "advface_fast.kernels",
        "advface_fast._csrc",
        "advface_fast.assets",
    ],
    # csrc/ ships inside the package as advface_fast/_csrc: the CUDA kernels' source for the
    # NVRTC fallback of the cuda backend (advface_fast/engines/nvrtc_kernels.py) on installs without nvcc
    package_dir={"advface_fast": "advface_fast", "advface_fast.kernels": "kernels", "advface_fast._csrc": "csrc"},
    package_data={
        "advface_fast.assets": ["*.safetensors", "*.json"],
        "advface_fast._csrc": ["cuda_kernels.cuh", "epilogues.h"],
    },
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExt},
)
