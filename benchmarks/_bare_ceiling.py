"""The bare-uvicorn + predict ceiling, V1 and V2: an ASGI callable with no framework.

V1 is the shared harness's `ceiling_app:raw` route as it is (stdlib json, `model.predict`);
V2 does the least the Open Inference Protocol asks (one FP32 input read into an array of its
shape, one output written with its name, datatype and shape), so knserve's V2 is set against a
server doing the same protocol's work rather than V1's smaller bodies. Imports only NumPy and
joblib, so it runs under the harness's ceiling venv or knserve's own:

    MODEL_PATH=…/model.joblib python -m uvicorn _bare_ceiling:app --port P --no-access-log
"""

import json
import os

import joblib
import numpy as np

model = joblib.load(os.environ["MODEL_PATH"])
_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _read_body(receive):
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def _send(send, status, payload):
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _v2(body):
    tensor = body["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    y = model.predict(x)
    output = {"name": "output-0", "datatype": "INT64", "shape": list(y.shape), "data": y.tolist()}
    return {"model_name": "iris", "outputs": [output]}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/v1/models/iris:predict" and scope["method"] == "POST":
        body = json.loads(await _read_body(receive))
        y = model.predict(np.asarray(body["instances"], dtype=np.float64))
        await _send(send, 200, json.dumps({"predictions": y.tolist()}).encode())
    elif path == "/v2/models/iris/infer" and scope["method"] == "POST":
        body = json.loads(await _read_body(receive))
        await _send(send, 200, json.dumps(_v2(body)).encode())
    else:
        await _send(send, 404, b'{"error":"not found"}')
