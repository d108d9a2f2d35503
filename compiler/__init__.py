"""The spec language and everything that turns a spec into objects (no training loop, no HTTP)."""

from .data import DataError, DataInfo
from .errors import Issue, SpecError
from .spec import Spec
from .validate import load_spec, load_spec_with_data

__all__ = ["DataError", "DataInfo", "Issue", "Spec", "SpecError", "load_spec", "load_spec_with_data"]
