"""`python -m nnspec` (used by torchrun) runs the CLI."""

from nnspec.cli import main

main()
