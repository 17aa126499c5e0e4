from pathlib import Path

from aini.catalog.docs import service_table, with_table

README = Path(__file__).parents[2] / "README.md"


def test_readme_service_table_is_generated_from_the_catalog():
    text = README.read_text()
    assert with_table(text) == text, "run: .venv/bin/python -m aini.catalog.docs README.md"
    assert "nickfedor/watchtower" in service_table()


def test_readme_names_the_commands_ci_runs():
    text = README.read_text()
    assert "./run demo" in text and "./run test" in text
    assert "./run test" in (README.parent / ".ci" / "run").read_text()
