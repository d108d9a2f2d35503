"""nnspec: one YAML spec -> validated, trained, exported and served neural network."""

__version__ = "0.1.0"
