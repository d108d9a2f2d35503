"""The limit: a bare ASGI + onnxruntime endpoint, no framework at all.

orjson parses the body, one `session.run` per request on the event loop (no thread hand-off, no
batching), orjson encodes the answer, which is the hand-written endpoint's. Nothing is checked
beyond what numpy and onnxruntime refuse on their own: this is what serving costs when a server
does nothing else.
"""

import numpy as np
import onnxruntime as ort
import orjson

_HEADERS = [(b"content-type", b"application/json")]


def create_app(model_path: str):
    """An ASGI app answering every HTTP request as `POST /predict` for one ONNX model."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    outputs = ["probabilities", "class_index"]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        x = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
        probabilities, class_index = session.run(outputs, {"input": x})
        answer = orjson.dumps({"predictions": [{"label": int(k), "probabilities": p.tolist()}
                                               for k, p in zip(class_index, probabilities)]})
        await send({"type": "http.response.start", "status": 200,
                    "headers": _HEADERS + [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app
