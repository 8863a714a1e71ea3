"""torch.export archives (`model.pt2`, `torch.export.save`) served by knserve's runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_fixtures import iris
from runtime_fixtures import model_settings, serving

from knserve.runtime.formats import ModelFormatError, detect_format, load_predictor

torch = pytest.importorskip("torch")


class TwoHeads(torch.nn.Module):  # type: ignore[misc]
    """An MLP fitted on iris with a second output, the class index (INT64)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        )

    def forward(self, x: Any) -> Any:
        logits = self.body(x)
        return logits, logits.argmax(dim=1)


def export_model(folder: Path) -> tuple[Any, np.ndarray]:
    torch.manual_seed(0)
    x, y = iris()
    model = TwoHeads()
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(xt)[0], yt).backward()
        optimiser.step()
    model.eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (xt[:8],), dynamic_shapes={"x": {0: batch}})
    folder.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(folder / "model.pt2"))
    return model, x.astype(np.float32)


def test_an_exported_program_loads_with_its_recorded_tensor_metadata(tmp_path: Path) -> None:
    model, x = export_model(tmp_path)
    assert detect_format(tmp_path) == "pytorch"
    predictor = load_predictor(tmp_path)
    assert [(s.name, s.datatype, s.shape) for s in predictor.inputs] == [
        ("input-0", "FP32", (-1, 4))
    ]
    assert [(s.name, s.datatype, s.shape) for s in predictor.outputs] == [
        ("output-0", "FP32", (-1, 3)),
        ("output-1", "INT64", (-1,)),
    ]
    rows = x[::7]
    with torch.inference_mode():
        logits, classes = model(torch.from_numpy(rows))
    # float64 rows (as JSON decodes) are cast to the recorded FP32
    got_logits, got_classes = predictor.predict([rows.astype(np.float64)], ["output-0", "output-1"])
    np.testing.assert_allclose(got_logits, logits.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(got_classes, classes.numpy())


async def test_v1_and_v2_answers_equal_the_model_s_own(tmp_path: Path) -> None:
    model, x = export_model(tmp_path)
    rows = x[::10]
    with torch.inference_mode():
        logits, classes = model(torch.from_numpy(rows))
    async with serving(model_settings("flowers", tmp_path)) as (client, _):
        v1 = await client.post("/v1/models/flowers:predict", json={"instances": rows.tolist()})
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(np.asarray(v1.json()["predictions"]), logits.numpy(), rtol=1e-6)
        meta = (await client.get("/v2/models/flowers")).json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "output-1"}],
        }
        v2 = await client.post("/v2/models/flowers/infer", json=body)
        assert v2.status_code == 200, v2.text
        (out,) = v2.json()["outputs"]
        assert (out["name"], out["datatype"]) == ("output-1", "INT64")
        np.testing.assert_array_equal(out["data"], classes.numpy())


def test_a_corrupt_archive_says_how_to_save_one(tmp_path: Path) -> None:
    (tmp_path / "model.pt2").write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="save it with torch.export.save"):
        load_predictor(tmp_path)
