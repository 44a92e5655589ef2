"""``python -m modalign ...``: the command-line tool without its installed entry point."""

from modalign.cli import main

main()
