"""Serving engines the local plane cannot run, told before a replica tries.

Some runtimes' images have no local equivalent: NVIDIA's Triton (and with it TensorRT engines),
TensorFlow Serving, vLLM, OpenVINO, KServe's paddle, PMML and Hugging Face servers, and
TorchServe's KServe image (knserve.knative.supervisor.images.UNAVAILABLE_IMAGES). On a
cluster they run as their images; on the plane an InferenceService whose predictor needs one is
`Ready=False` with reason `EngineUnavailable` and a message that says what to use instead,
rather than a replica that fails to start. `knserve export --target kube` still exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knserve.knative.supervisor.images import UNAVAILABLE_IMAGES, image_name

ONNX_INSTEAD = "export the model to ONNX and name runtime knserve-onnxruntime"
# image name (registry and tag dropped) -> (engine, what to use instead)
_NOT_HERE: dict[str, tuple[str, str]] = {
    "nvidia/tritonserver": (
        "NVIDIA Triton Inference Server (and TensorRT)",
        "for onnx models the runtime knserve-onnxruntime, for pytorch knserve-pytorch "
        "(TorchScript or torch.export .pt2); a TensorRT engine has no local equivalent: "
        + ONNX_INSTEAD,
    ),
    "tensorflow/serving": (
        "TensorFlow Serving",
        "convert the SavedModel (tf2onnx) and " + ONNX_INSTEAD,
    ),
    "vllm/vllm-openai": ("vLLM", "serve the model on a cluster with a GPU"),
    "openvino/model_server": ("OpenVINO Model Server", ONNX_INSTEAD),
    "kserve/paddleserver": (
        "KServe's PaddlePaddle server",
        "convert it (paddle2onnx) and " + ONNX_INSTEAD,
    ),
    "kserve/pmmlserver": (
        "KServe's PMML server (Java)",
        "train the model with scikit-learn, xgboost or lightgbm",
    ),
    "kserve/huggingfaceserver": (
        "KServe's Hugging Face server",
        "a custom model (knserve func create) that loads it with transformers",
    ),
}


def local_engine_problem(container: Mapping[str, Any]) -> str | None:
    """Why the local plane cannot run `container`'s engine (and what to use instead), or None."""
    image = container.get("image") or ""
    if image and image_name(image) in UNAVAILABLE_IMAGES:  # the supervisor would refuse it too
        return UNAVAILABLE_IMAGES[image_name(image)]
    found = _NOT_HERE.get(image_name(image)) if image else None
    if found is None:
        return None
    engine, instead = found
    return (
        f"{engine} (image {image}) cannot run on the local plane, which runs no containers; use "
        f"{instead}. `knserve export --target kube` exports it for a cluster"
    )
