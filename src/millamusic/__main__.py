"""`python -m millamusic ...`: the same as the `millamusic` command."""

from millamusic.cli import main

main()
