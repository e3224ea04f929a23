"""`python -m mcpgen` runs the command line."""

from mcpgen.cli import main

main()
