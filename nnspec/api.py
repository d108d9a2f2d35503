"""The public API, in pipeline order: load_spec -> compile_model -> train -> export -> serve.

    spec = load_spec("specs/digits_cnn.yaml")
    result = train(spec)                      # runs/<name>/<stamp>/
    model = export(result.run_dir, "models")  # models/<name>/<version>/
"""

from __future__ import annotations

from pathlib import Path

from nnspec.compiler import SpecError, load_spec

__all__ = ["SpecError", "load_spec", "compile_model", "train", "export", "create_app"]


def compile_model(spec):
    """The spec's network as a torch module taking (batch, *model input shape)."""
    from nnspec.compiler.compile import compile_model as build

    return build(spec, spec.data.describe(Path.cwd(), spec.task))


def train(spec, **options):
    """Train the spec and write its run directory; see nnspec.runtime.train.train for options."""
    from nnspec.runtime.train import train as run

    return run(spec, **options)


def export(run_dir, repo="models", version=None, overwrite=False):
    """Export a run to ONNX, check parity, and publish it as models/<name>/<version>/."""
    from nnspec.runtime.export import export_run

    return export_run(run_dir, repo, version=version, overwrite=overwrite)


def create_app(repository="models", **settings):
    """The FastAPI serving app over a model repository (torch-free)."""
    from nnspec.service.app import create_app as make
    from nnspec.service.settings import Settings

    return make(Settings(repository=repository, **settings))
