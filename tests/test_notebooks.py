"""The notebooks, run end to end as a reader would, on their quick settings.

Every notebook reads `TFVAE_NOTEBOOK_QUICK=1` in its first code cell to shrink
epochs and sample counts; the cells are the same, and the outputs kept in the
files are those of the full settings. Skip them locally with `-m "not notebook"`.
"""

import ast
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tfvae import startup

NOTEBOOK_DIR = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# TensorFlow's notes (tfvae.startup hides them) and its C++ log lines.
NOISE = re.compile(startup.START_UP_NOTES.pattern + r"|^[IWE]\d{4} \d\d:\d\d:")
# Its cells define networks: the user's code the notebook is about.
DEFINES_NETWORKS = {"custom_networks"}


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_keeps_its_outputs_and_defines_no_library_logic(path):
    cells = code_cells(path)
    assert "TFVAE_NOTEBOOK_QUICK" in cells[0].source, "the first code cell sets QUICK"
    assert all(cell.execution_count is not None for cell in cells), "run it before committing"
    streams = [o.text for c in cells for o in c.outputs if o.output_type == "stream"]
    noise = [line for text in streams for line in text.splitlines() if NOISE.search(line)]
    assert not noise, f"TensorFlow's start-up notes in the outputs (import tfvae first): {noise}"
    for cell in cells:
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        tree = ast.parse(source)
        # A notebook about networks defines them (classes, their methods); no other code.
        nodes = tree.body if path.stem in DEFINES_NETWORKS else list(ast.walk(tree))
        defined = [
            node.name
            for node in nodes
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            or (isinstance(node, ast.ClassDef) and path.stem not in DEFINES_NETWORKS)
        ]
        assert not defined, f"{defined} belong in tfvae, not in a cell"


def test_the_notebooks_the_readme_promises_are_there():
    names = {path.stem for path in NOTEBOOKS}
    wanted = {
        "01_quickstart_frey_face",
        "02_mnist_likelihood",
        "03_latent_space",
        "04_families",
        "05_deploy_tflite",
    }
    assert wanted <= names


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path, data_dir):
    notebook = nbformat.read(path, as_version=4)
    env = {**os.environ, "TFVAE_NOTEBOOK_QUICK": "1", "TFVAE_DATA_DIR": str(data_dir)}
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=env)  # Raises CellExecutionError, with the cell and its traceback.
