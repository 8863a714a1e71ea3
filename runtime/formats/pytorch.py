"""PyTorch models: TorchScript (`model.pt`, `torch.jit.save`) and torch.export archives
(`model.pt2`, `torch.export.save`).

TorchScript carries no tensor metadata, so the model is described as one FP32 input `input-0`
and one output `output-0` of any shape; several inputs are passed to `forward` in order, and a
tuple of outputs is served as `output-0`, `output-1`, …

A torch.export archive records its inputs' and outputs' dtypes and shapes (a dimension exported
as dynamic, `torch.export.Dim`, is -1), so its V2 metadata is exact: the inputs are `input-0`,
`input-1`, … in `forward`'s order, each request array cast to its recorded dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knserve.runtime.datatypes import TO_NUMPY, datatype_of
from knserve.runtime.errors import InvalidInput
from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.base import TensorSpec


class TorchScriptPredictor:
    format = "pytorch"

    def __init__(
        self,
        module: Any,
        inputs: list[TensorSpec] | None = None,
        outputs: list[TensorSpec] | None = None,
    ) -> None:
        self.native = module
        self.inputs = inputs or [TensorSpec("input-0", "FP32", (-1, -1))]
        self.outputs = outputs or [TensorSpec("output-0", "FP32", (-1, -1))]
        self.default_outputs = ["output-0"]
        # the dtype each input is cast to (a .pt2's recorded one; FP32 for TorchScript floats)
        self._dtypes = [TO_NUMPY.get(spec.datatype) for spec in self.inputs] if inputs else []

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            # JSON numbers decode as float64; the model's weights are FP32 (its declared input).
            tensors = [
                torch.from_numpy(np.ascontiguousarray(a, dtype=self._dtype(i, a)))
                for i, a in enumerate(inputs)
            ]
            try:
                result = self.native(*tensors)
            except RuntimeError as exc:
                # TorchScript records no input shapes to check a request against, so a tensor
                # the model cannot take (a wrong width) fails inside forward: the request's fault
                shapes = ", ".join(str(list(a.shape)) for a in inputs)
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                reason = lines[-1].removeprefix("RuntimeError: ") if lines else type(exc).__name__
                raise InvalidInput(
                    f"the model cannot take inputs of shape {shapes}: {reason}"
                ) from None
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

    def _dtype(self, index: int, array: np.ndarray) -> np.dtype | None:
        if index < len(self._dtypes) and self._dtypes[index] is not None:
            return self._dtypes[index]
        return np.dtype(np.float32) if array.dtype.kind == "f" else None


def _specs(values: Sequence[Any], prefix: str) -> list[TensorSpec]:
    """TensorSpecs of an exported program's placeholder or output values (FakeTensors)."""
    import torch

    specs = []
    for index, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            raise ModelFormatError(f"{prefix}-{index} of the exported program is not a tensor")
        dtype = np.dtype(str(value.dtype).removeprefix("torch."))
        shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
        specs.append(TensorSpec(f"{prefix}-{index}", datatype_of(dtype), shape))
    return specs


def load_exported(path: Path) -> TorchScriptPredictor:
    """A torch.export archive (`torch.export.save`) as a Predictor with its recorded metadata."""
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelFormatError(
            f"cannot load torch.export archive {path} (save it with torch.export.save): {exc}"
        ) from None
    graph = program.graph
    user_inputs = set(program.graph_signature.user_inputs)
    placeholders = [n for n in graph.nodes if n.op == "placeholder" and n.name in user_inputs]
    output = next(n for n in graph.nodes if n.op == "output")
    results = output.args[0] if isinstance(output.args[0], tuple | list) else [output.args[0]]
    user_outputs = len(program.graph_signature.user_outputs)
    inputs = _specs([n.meta.get("val") for n in placeholders], "input")
    outputs = _specs([n.meta.get("val") for n in results[-user_outputs:]], "output")
    return TorchScriptPredictor(program.module(), inputs, outputs)


def load(model_dir: Path) -> TorchScriptPredictor:
    import torch

    exported = Path(model_dir) / "model.pt2"
    if exported.is_file():
        return load_exported(exported)
    path = model_file(model_dir, ("model.pt", "model.pth"), "TorchScript")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelFormatError(
            f"cannot load TorchScript model {path} (save it with torch.jit.save, or "
            f"torch.export.save as model.pt2): {exc}"
        ) from None
    module.eval()
    return TorchScriptPredictor(module)
