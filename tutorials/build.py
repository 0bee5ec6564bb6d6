"""Build the tutorial notebooks from their sources in ``tutorials/_sources/*.py``.

A source is a Python file in "percent" format: ``# %%`` starts a code cell and
``# %% [markdown]`` a markdown cell whose lines are comments (``# `` prefix). Editing
the source and running ``python tutorials/build.py`` keeps source and notebook in step;
the test suite checks that they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "_sources"


def cells_from_source(text: str) -> list:
    cells, kind, buf = [], None, []

    def flush() -> None:
        body = "\n".join(buf).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "code" and body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            buf.append(line)
    flush()
    return cells


def build(source: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_from_source(source.read_text())
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding an unchanged source changes nothing
        cell.id = f"{source.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def notebook_path(source: Path) -> Path:
    return HERE / (source.stem + ".ipynb")


def main() -> int:
    for source in sorted(SOURCES.glob("[0-9]*.py")):
        nbformat.write(build(source), notebook_path(source))
        print("wrote", notebook_path(source).relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
