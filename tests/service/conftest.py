"""Shared fixtures: torch-free model repositories (onnx.helper) and apps over them."""

import onnx_fixtures as fx
import pytest
from fastapi.testclient import TestClient

from nnspec.service.app import create_app
from nnspec.service.settings import Settings


@pytest.fixture(scope="session")
def shared_repo(tmp_path_factory):
    """A read-only repository with version 1 of every fixture model."""
    return fx.build_repo(tmp_path_factory.mktemp("models"))


@pytest.fixture
def repo(tmp_path):
    """A fresh repository that a test may change."""
    return fx.build_repo(tmp_path / "models")


def make_client(repo, **settings) -> TestClient:
    """A TestClient (use as a context manager so the lifespan loads the models)."""
    return TestClient(create_app(Settings(repository=repo, intra_op_threads=1, **settings)))


@pytest.fixture(scope="session")
def client_for():
    """`client_for(repo, **settings)`: a TestClient factory (use it as a context manager)."""
    return make_client


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A running app over a module-private repository with every fixture model."""
    repo = fx.build_repo(tmp_path_factory.mktemp("models"))
    with make_client(repo) as c:
        yield c


ADMIN_KEY = "admin-s3cret"


@pytest.fixture
def control_client_for(monkeypatch):
    """`control_client_for(repo, **settings)`: a TestClient with repository control on that sends the admin key."""
    monkeypatch.setenv("TEST_NNSPEC_ADMIN_KEY", ADMIN_KEY)

    def make(repo, **settings) -> TestClient:
        client = make_client(repo, **{"model_control": "explicit", "admin_key_env": "TEST_NNSPEC_ADMIN_KEY"} | settings)
        client.headers["authorization"] = f"Bearer {ADMIN_KEY}"
        return client

    return make
