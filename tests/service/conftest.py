"""Shared fixtures: torch-free model repositories (onnx.helper) and apps over them."""

import importlib.util
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nnspec.service.app import create_app
from nnspec.service.settings import Settings

_spec = importlib.util.spec_from_file_location("onnx_fixtures", Path(__file__).with_name("onnx_fixtures.py"))
fx = sys.modules.setdefault("onnx_fixtures", importlib.util.module_from_spec(_spec))
if not hasattr(fx, "build_repo"):
    _spec.loader.exec_module(fx)


@pytest.fixture(scope="session")
def fixtures():
    """The onnx_fixtures module (model builders and numpy references)."""
    return fx


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
