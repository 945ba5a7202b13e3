"""docs/reliability.md: every test that a row names exists, so every row is a test
that runs in the suite."""

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
REFERENCE = re.compile(r"`(tests/test_\w+\.py)::(test_\w+)(?:\[[^\]`]*\])?`")


def test_every_row_of_the_reliability_table_names_existing_tests():
    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| bad input") and "---" not in line
    ]
    assert len(rows) >= 30
    for row in rows:
        references = REFERENCE.findall(row)
        assert references, f"a row without a test: {row}"
        for path, name in references:
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} missing"


def test_every_test_the_readme_names_exists():
    """The feature table's claims are tests that run in the suite."""
    references = REFERENCE.findall((ROOT / "README.md").read_text())
    assert len(references) >= 9
    for path, name in references:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} missing"


LINK = re.compile(r"\]\(((?!https?://|#)[^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_of_the_readme_and_docs_points_at_a_file():
    for page in (ROOT / "README.md", *(ROOT / "docs").glob("*.md")):
        for target in LINK.findall(page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def load_api_maker():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_is_what_the_docstrings_say():
    expected = load_api_maker().render()
    assert (ROOT / "docs" / "api.md").read_text() == expected, "run python docs/make_api.py"


def test_the_public_api_has_docstrings_and_type_hints():
    make_api = load_api_maker()
    missing = []
    for name in make_api.MODULES:
        for member, value in make_api.public_members(importlib.import_module(name)):
            if not inspect.getdoc(value):
                missing.append(f"{name}.{member}: no docstring")
            if inspect.isfunction(value):
                parameters = inspect.signature(value).parameters.values()
                if inspect.signature(value).return_annotation is inspect.Signature.empty:
                    missing.append(f"{name}.{member}: no return annotation")
                missing += [
                    f"{name}.{member}({p.name}): no annotation"
                    for p in parameters
                    if p.annotation is inspect.Parameter.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                ]
    assert not missing, "\n".join(missing)
