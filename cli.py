#!/usr/bin/env python
"""Entry point: ``python cli.py --help``. The commands live in ``minialex/cli.py``; the installed
``minialex`` console script runs the same click group."""

from minialex.cli import main

if __name__ == "__main__":
    main()
