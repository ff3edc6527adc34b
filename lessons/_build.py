"""Build the lesson notebooks from their Python sources.

The lessons are written as plain Python files in ``lessons/src/`` (one per lesson, "percent"
format: a line ``# %%`` starts a code cell, ``# %% [markdown]`` starts a markdown cell whose lines
begin with ``# ``). Plain files diff and review well; this script turns each into the numbered
``.ipynb`` next to it, with no outputs (the outputs policy, see README.md).

    python lessons/_build.py           # rebuild every notebook
    python lessons/_build.py --check   # exit 1 if a notebook differs from its source

tests/test_lessons.py runs the check too, so a notebook can never drift from its source.
"""

from __future__ import annotations

import pathlib
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"


def parse(text: str):
    """Split a percent-format source into [(kind, source)] with kind 'code' or 'markdown'."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if body:
                cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
            continue
        if kind is None:  # text before the first marker (a module docstring) is not a cell
            continue
        if kind == "markdown":
            if line.startswith("# "):
                line = line[2:]
            elif line.strip() == "#":
                line = ""
        lines.append(line)
    flush()
    return cells


def build(source: pathlib.Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, body) in enumerate(parse(source.read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(body)
        cell["id"] = f"{source.stem[:2]}-{i:02d}"  # stable ids: rebuilding gives identical files
        nb.cells.append(cell)
    return nb


def target(source: pathlib.Path) -> pathlib.Path:
    return HERE / (source.stem + ".ipynb")


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv) -> int:
    check = "--check" in argv
    stale = []
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        text = render(build(source))
        out = target(source)
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
