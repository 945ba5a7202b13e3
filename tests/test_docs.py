"""docs/reliability.md: every test that a row names exists, so every row is a test
that runs in the suite."""

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
