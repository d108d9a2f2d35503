"""The baseline: a FastAPI + onnxruntime endpoint the way users typically write it by hand.

A pydantic body, a plain `def` handler (FastAPI runs it in its threadpool), one
`session.run` per request, a dict response encoded by FastAPI.
"""

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel


class VectorBody(BaseModel):
    instances: list[list[float]]


class ImageBody(BaseModel):
    instances: list[list[list[list[float]]]]


def create_app(model_path: str, image: bool = False) -> FastAPI:
    """An app serving `POST /predict` for one ONNX model."""
    app = FastAPI()
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    Body = ImageBody if image else VectorBody

    @app.post("/predict")
    def predict(body: Body):
        x = np.asarray(body.instances, dtype=np.float32)
        probabilities, class_index = session.run(["probabilities", "class_index"], {"input": x})
        return {"predictions": [{"label": int(k), "probabilities": p.tolist()}
                                for k, p in zip(class_index, probabilities)]}

    return app
