"""PyTorch TorchScript models (`model.pt`, saved with `torch.jit.save`).

TorchScript carries no tensor metadata, so the model is described as one FP32 input `input-0`
and one output `output-0` of any shape; several inputs are passed to `forward` in order, and a
tuple of outputs is served as `output-0`, `output-1`, …
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.base import TensorSpec


class TorchScriptPredictor:
    format = "pytorch"

    def __init__(self, module: Any) -> None:
        self.native = module
        self.inputs = [TensorSpec("input-0", "FP32", (-1, -1))]
        self.outputs = [TensorSpec("output-0", "FP32", (-1, -1))]
        self.default_outputs = ["output-0"]

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            # JSON numbers decode as float64; the model's weights are FP32 (its declared input).
            tensors = [
                torch.from_numpy(
                    np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else None)
                )
                for a in inputs
            ]
            result = self.native(*tensors)
        results = list(result) if isinstance(result, tuple | list) else [result]
        arrays = {f"output-{i}": r.detach().cpu().numpy() for i, r in enumerate(results)}
        names = list(outputs) if outputs else ["output-0"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ModelFormatError(
                f"the model returned {len(arrays)} output(s) ({', '.join(arrays)}); "
                f"{', '.join(missing)} does not exist"
            )
        return [arrays[n] for n in names]


def load(model_dir: Path) -> TorchScriptPredictor:
    import torch

    path = model_file(model_dir, ("model.pt", "model.pth"), "TorchScript")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelFormatError(
            f"cannot load TorchScript model {path} (save it with torch.jit.save): {exc}"
        ) from None
    module.eval()
    return TorchScriptPredictor(module)
