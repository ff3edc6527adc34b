"""Build the lesson notebooks from their Python sources, with jupytext.

The lessons are written as plain Python files in ``lessons/src/`` in jupytext's "percent" format
(a line ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines begin with
``# ``). Plain files diff and review well; this script turns each into the numbered ``.ipynb``
next to it, with no outputs (the outputs policy, see README.md), the kernel named, and stable
cell ids, so that rebuilding an unchanged source gives an identical file.

    python lessons/_build.py           # rebuild every notebook
    python lessons/_build.py --check   # exit 1 if a notebook differs from its source

tests/test_lessons.py runs the check too, so a notebook can never drift from its source.
"""

from __future__ import annotations

import pathlib
import sys

import jupytext
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"


def build(source: pathlib.Path) -> nbformat.NotebookNode:
    nb = jupytext.reads(source.read_text(), fmt="py:percent")
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                  "language": "python"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem[:2]}-{i:02d}"
        cell.metadata = {}
    return nb


def main(argv) -> int:
    check = "--check" in argv
    stale = []
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        text = nbformat.writes(build(source)) + "\n"
        out = HERE / (source.stem + ".ipynb")
        if check:
            if not out.exists() or out.read_text() != text:
                stale.append(out.name)
        else:
            out.write_text(text)
            print(f"wrote {out.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python lessons/_build.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
