"""Model formats: find which framework saved a model folder and load it as a `Predictor`.

Detection looks at the file names (and, for `model.bst`, the content) as KServe's built-in
servers do. Each format lives in its own module and imports its framework only when a model of
that format is loaded, so `import knserve.runtime` stays cheap and a missing framework is
reported with the extra to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from knserve.runtime.formats.base import Predictor, TensorSpec

__all__ = [
    "FORMATS",
    "ModelFormatError",
    "Predictor",
    "TensorSpec",
    "detect_format",
    "load_predictor",
]

# format -> (module, pip extra)
FORMATS: dict[str, tuple[str, str]] = {
    "sklearn": ("knserve.runtime.formats.sklearn", "sklearn"),
    "xgboost": ("knserve.runtime.formats.xgboost", "xgboost"),
    "lightgbm": ("knserve.runtime.formats.lightgbm", "lightgbm"),
    "onnx": ("knserve.runtime.formats.onnx", "onnx"),
    "pytorch": ("knserve.runtime.formats.pytorch", "torch"),
}
ALIASES = {
    "scikit-learn": "sklearn",
    "xgb": "xgboost",
    "lgbm": "lightgbm",
    "torch": "pytorch",
    "torchscript": "pytorch",
    "onnxruntime": "onnx",
}

# file name -> format; model.bst is told apart by content (see _bst_format).
_BY_FILE = {
    "model.joblib": "sklearn",
    "model.pkl": "sklearn",
    "model.pickle": "sklearn",
    "model.json": "xgboost",
    "model.ubj": "xgboost",
    "model.txt": "lightgbm",
    "model.onnx": "onnx",
    "model.pt": "pytorch",
    "model.pth": "pytorch",
    "model.pt2": "pytorch",  # a torch.export archive
    "model.py": "custom",
}


class ModelFormatError(Exception):
    """A model folder cannot be recognised or loaded; the message names the file and the reason."""


def normalize_format(model_format: str) -> str:
    name = model_format.strip().lower()
    name = ALIASES.get(name, name)
    if name not in FORMATS and name != "custom":
        known = ", ".join([*FORMATS, "custom"])
        raise ModelFormatError(f"unknown model format {model_format!r}; known formats: {known}")
    return name


def detect_format(model_dir: Path) -> str:
    """The format of the model saved in `model_dir`, from its files."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFormatError(f"model folder {model_dir} does not exist or is not a folder")
    names = sorted(p.name for p in model_dir.iterdir() if p.is_file())
    found: dict[str, list[str]] = {}
    for name in names:
        fmt = _BY_FILE.get(name)
        if name == "model.bst":
            fmt = _bst_format(model_dir / name)
        if fmt:
            found.setdefault(fmt, []).append(name)
    if "custom" in found:
        return "custom"  # a model.py decides for itself how to load whatever else is there
    if len(found) == 1:
        return next(iter(found))
    expected = ", ".join([*sorted(_BY_FILE), "model.bst"])
    if not found:
        listing = ", ".join(names) or "no files"
        raise ModelFormatError(
            f"no model file in {model_dir} (found: {listing}); expected one of: {expected}, "
            "or pass --model-format"
        )
    clash = "; ".join(f"{fmt}: {', '.join(files)}" for fmt, files in sorted(found.items()))
    raise ModelFormatError(
        f"{model_dir} holds model files of several formats ({clash}); keep one or pass --model-format"
    )


def _bst_format(path: Path) -> str:
    # LightGBM's model files are text that starts with "tree"; XGBoost's .bst is binary/UBJSON.
    with path.open("rb") as fh:
        head = fh.read(64)
    return "lightgbm" if head.lstrip().startswith(b"tree") else "xgboost"


def load_predictor(model_dir: Path, model_format: str | None = None) -> Predictor:
    """Load the model in `model_dir` (format detected when not given) as a Predictor."""
    model_dir = Path(model_dir)
    fmt = normalize_format(model_format) if model_format else detect_format(model_dir)
    if fmt == "custom":
        raise ModelFormatError(
            f"{model_dir} holds a custom model (model.py); it is loaded as a Model, not a Predictor"
        )
    module_name, extra = FORMATS[fmt]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelFormatError(
            f"the {fmt} format needs its framework: pip install 'knserve[{extra}]' ({exc})"
        ) from None
    return module.load(model_dir)


def model_file(model_dir: Path, candidates: tuple[str, ...], fmt: str) -> Path:
    """The first of `candidates` present in `model_dir` (formats call this)."""
    for name in candidates:
        path = Path(model_dir) / name
        if path.is_file():
            return path
    raise ModelFormatError(
        f"no {fmt} model file in {model_dir}; expected one of: {', '.join(candidates)}"
    )
