"""`python -m emocloak` runs the command line, as the `emocloak` script does."""

from emocloak.cli.main import main

main()
