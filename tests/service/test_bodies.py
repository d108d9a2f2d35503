"""Request bodies and images: stalled uploads (408), clients that go away (499), compressed bodies,
image decoding off the event loop and the per-request pixel budget."""

import asyncio
import base64
import functools
import gzip
import json
import logging
import struct
import zlib

import httpx
import numpy as np
import onnx_fixtures as fx
import pytest

import nnspec.runtime.session as session_module
from nnspec.service.app import create_app
from nnspec.service.errors import ApiError
from nnspec.service.settings import Settings

HOUSING = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
BOUND = 5  # seconds any wait below may take before the test fails


class Upload:
    """A POST straight to the ASGI app whose client sends the first bytes of its body, then stalls until
    `leave()` is called, then goes away (as a server reports a closed connection)."""

    def __init__(self, app, path: str, body: bytes):
        self.app, self.path, self.body = app, path, body
        self.asked_for_more = asyncio.Event()
        self.gone = asyncio.Event()
        self.sent: list[dict] = []
        self._first = True

    def leave(self) -> None:
        self.gone.set()

    async def _receive(self) -> dict:
        if self._first:
            self._first = False
            return {"type": "http.request", "body": self.body[:10], "more_body": True}
        self.asked_for_more.set()
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        self.sent.append(message)

    async def run(self) -> list[dict]:
        """Call the app; return the ASGI messages it sent."""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": self.path, "raw_path": self.path.encode(), "root_path": "",
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80)}
        await self.app(scope, self._receive, self._send)
        return self.sent


def statuses(app) -> dict[str, float]:
    """Requests counted by the app's metrics, by status."""
    counts: dict[str, float] = {}
    for metric in app.state.serving.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "nnspec_requests_total":
                counts[sample.labels["status"]] = counts.get(sample.labels["status"], 0) + sample.value
    return counts


def serve_log(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("nnspec")]


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_client_that_goes_away_mid_body_is_a_499_with_one_log_line(shared_repo, fast_path, caplog):
    app = create_app(Settings(repository=shared_repo, intra_op_threads=1), fast_path=fast_path)

    async def main():
        async with app.router.lifespan_context(app):
            caplog.clear()  # the models' loading
            upload = Upload(app, "/v2/models/housing/infer", json.dumps(HOUSING).encode())
            upload.leave()
            sent = await asyncio.wait_for(upload.run(), BOUND)  # no exception escapes the app
            return sent, statuses(app)

    with caplog.at_level(logging.INFO):
        sent, counted = asyncio.run(main())
    assert counted == {"499": 1.0}
    assert not [m for m in sent if m["type"] == "http.response.start" and m["status"] >= 500]
    (record,) = serve_log(caplog)
    assert record.exc_info is None and "went away" in record.getMessage()


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_stalled_upload_gets_408_with_one_log_line(shared_repo, fast_path, caplog):
    app = create_app(Settings(repository=shared_repo, intra_op_threads=1, body_timeout=0.2), fast_path=fast_path)

    async def main():
        async with app.router.lifespan_context(app):
            caplog.clear()  # the models' loading
            sent = await asyncio.wait_for(Upload(app, "/v2/models/housing/infer", json.dumps(HOUSING).encode()).run(),
                                          BOUND)
            return sent, statuses(app)

    with caplog.at_level(logging.INFO):
        sent, counted = asyncio.run(main())
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert "within 0.2 s" in json.loads(sent[1]["body"])["error"]
    assert counted == {"408": 1.0}
    (record,) = serve_log(caplog)
    assert record.exc_info is None and "408" in record.getMessage()


def test_a_stalled_upload_does_not_hold_back_other_requests(tmp_path):
    """The batcher waits for announced requests; one whose body has not arrived must not count."""
    repo = fx.build_repo(tmp_path / "models", names=("housing",), max_queue_delay_ms=10_000)
    app = create_app(Settings(repository=repo, intra_op_threads=1))

    async def main():
        async with app.router.lifespan_context(app):
            upload = Upload(app, "/v2/models/housing/infer", json.dumps(HOUSING).encode())
            stalled = asyncio.ensure_future(upload.run())
            await asyncio.wait_for(upload.asked_for_more.wait(), BOUND)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                # Were the stalled upload counted as coming, the batcher would wait 10 s for it.
                answer = await asyncio.wait_for(client.post("/v2/models/housing/infer", json=HOUSING), BOUND)
            upload.leave()
            await asyncio.wait_for(stalled, BOUND)
            return answer

    assert asyncio.run(main()).status_code == 200


# --- compressed bodies ---------------------------------------------------------------------------

def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_gzip_and_deflate_bodies_are_accepted(client):
    plain = client.post("/v2/models/housing/infer", json=HOUSING)
    body = json.dumps(HOUSING).encode()
    # "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate: both are accepted
    for encoding, packed in [("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                             ("deflate", raw_deflate(body))]:
        r = client.post("/v2/models/housing/infer", content=packed,
                        headers={"content-type": "application/json", "content-encoding": encoding})
        assert r.status_code == 200 and r.json() == plain.json(), (encoding, r.text)
    v1 = client.post("/v1/models/iris:predict", content=gzip.compress(b'{"instances": [[1, 2, 3, 4]]}'),
                     headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert v1.status_code == 200 and len(v1.json()["predictions"]) == 1


def test_gzip_with_the_binary_tensor_extension(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    r = client.post("/v2/models/housing/infer", content=gzip.compress(header + x.tobytes()),
                    headers={"Inference-Header-Content-Length": str(len(header)), "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    values = np.array(r.json()["outputs"][0]["data"]).reshape(2, 2)
    np.testing.assert_allclose(values, fx.reference("housing", x)["values"], rtol=1e-5)


def test_compressed_body_errors(shared_repo, client_for):
    with client_for(shared_repo, max_body_mb=0.01) as c:  # ~10 KB
        bomb = gzip.compress(b'{"instances": [' + b" " * 1_000_000 + b"]}")  # ~1 KB that inflates to 1 MB
        r = c.post("/v1/models/iris:predict", content=bomb, headers={"content-encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["error"]
        r = c.post("/v2/models/iris/infer", content=b"not gzip", headers={"content-encoding": "gzip"})
        assert r.status_code == 400 and "gzip" in r.json()["error"]
        r = c.post("/v2/models/iris/infer", content=b"{}", headers={"content-encoding": "br"})
        assert r.status_code == 415 and "br" in r.json()["error"]


def test_decompression_stops_at_the_limit():
    from nnspec.service.payloads import decompress

    bomb = gzip.compress(bytes(16 * 1024 * 1024))  # 16 MB of zeros in ~16 KB
    with pytest.raises(ApiError) as caught:
        decompress(bomb, "gzip", 1000)
    assert caught.value.status == 413 and "1000 bytes" in caught.value.message
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 4) == b"abcd"  # two gzip members
    with pytest.raises(ApiError, match="truncated"):
        decompress(gzip.compress(b"abcdef")[:-10], "gzip", 100)


# --- images ---------------------------------------------------------------------------------------

def loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def decodes(monkeypatch):
    """Each image decode the sessions make: True when it ran on an event loop."""
    calls, decode = [], session_module.decode_image

    def spy(*args, **kwargs):
        calls.append(loop_is_running())
        return decode(*args, **kwargs)

    monkeypatch.setattr(session_module, "decode_image", spy)
    return calls


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_small_base64_images_are_decoded_off_the_event_loop(client, decodes):
    image = fx.png(np.arange(64).reshape(8, 8))
    r = client.post("/v1/models/digits8:predict", json={"instances": [b64(image)] * 2})
    assert r.status_code == 200
    files = client.post("/v1/models/digits8:classify", files=[("files", ("a.png", image))])
    assert files.status_code == 200
    assert decodes == [False] * 3


@functools.lru_cache
def bomb_png(width: int, height: int) -> bytes:
    """A grayscale PNG of zeros: a few KB of file, width x height pixels once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(bytes((width + 1) * height), 9)  # each row: filter byte 0, then the pixels
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_the_pixel_budget_is_checked_from_the_headers_before_decoding(client, decodes):
    bomb = bomb_png(8000, 5000)  # 40 MP; two of them exceed the default budget of 64 MP per request
    assert len(bomb) < 100_000
    r = client.post("/v1/models/digits8:predict", json={"instances": [b64(bomb), b64(bomb)]})
    assert r.status_code == 413 and "64000000 pixels" in r.json()["error"], r.text
    r = client.post("/v1/models/digits8:classify", files=[("files", ("a.png", bomb)), ("files", ("b.png", bomb))])
    assert r.status_code == 413 and r.json()["error"].startswith("files[1]: ")
    assert decodes == []


def test_the_pixel_budget_sums_the_images_of_a_request(shared_repo, client_for):
    image = b64(fx.png(np.zeros((8, 8))))
    with client_for(shared_repo, max_pixels=100) as c:
        assert c.post("/v1/models/digits8:predict", json={"instances": [image]}).status_code == 200
        r = c.post("/v1/models/digits8:predict", json={"instances": [image, image]})
        assert r.status_code == 413 and r.json()["error"].startswith("instances[1]: ") and "100 pixels" in r.text
