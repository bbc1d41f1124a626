"""The data dictionary (docs/reference/data-dictionary.md) is the warehouse's schema: every table and
column of include/store/warehouse.py documented with its type, key and nullability, and nothing
documented that the schema does not have."""

from __future__ import annotations

import re

from sqlalchemy.dialects import postgresql

from include.store.warehouse import metadata
from tests.conftest import REPO

PAGE = REPO / "docs" / "reference" / "data-dictionary.md"
TABLE = re.compile(r"^### `(\w+)`$")
COLUMN = re.compile(r"^\| `(\w+)` \| ([^|]+?) \| (PK)? *\| (yes|no) \| (.*) \|$")


def documented() -> dict[str, dict[str, tuple[str, bool, bool, str]]]:
    """{table: {column: (type, in the primary key, nullable, meaning)}} as the page has them."""
    tables: dict[str, dict[str, tuple[str, bool, bool, str]]] = {}
    current = None
    for line in PAGE.read_text().splitlines():
        heading = TABLE.match(line)
        if heading:
            assert heading.group(1) not in tables, f"{heading.group(1)} documented twice"
            current = tables.setdefault(heading.group(1), {})
        elif line.startswith("| `"):
            row = COLUMN.match(line)
            assert row and current is not None, f"not a column row under a table: {line}"
            name, kind, key, null, meaning = row.groups()
            assert name not in current, f"column {name} documented twice"
            current[name] = (kind, key == "PK", null == "yes", meaning.strip())
    return tables


def schema_facts(column) -> tuple[str, bool, bool]:
    """A column's type (as PostgreSQL spells it), whether it is in the primary key, whether it may be null."""
    return column.type.compile(dialect=postgresql.dialect()).lower(), bool(column.primary_key), bool(column.nullable)


def row(name: str, kind: str, key: bool, null: bool, meaning: str = "...") -> str:
    """A column's row as the page writes it."""
    return f"| `{name}` | {kind} | {'PK' if key else ''} | {'yes' if null else 'no'} | {meaning} |"


def test_every_table_of_the_schema_is_documented_and_nothing_else():
    pages, tables = set(documented()), set(metadata.tables)
    assert (sorted(tables - pages), sorted(pages - tables)) == ([], []), "(not documented, not in the schema)"


def test_every_column_is_documented_as_the_schema_has_it():
    """A failure names each row to add or correct, as the page must have it."""
    pages = documented()
    wrong = []
    for name, table in sorted(metadata.tables.items()):
        page = pages.get(name, {})
        for column in table.columns:
            facts, shown = schema_facts(column), page.get(column.name)
            if shown is None:
                wrong.append(f"{name}: missing {row(column.name, *facts)}")
            elif shown[:3] != facts:
                wrong.append(f"{name}: {row(column.name, *shown)} should be {row(column.name, *facts, shown[3])}")
            elif not shown[3]:
                wrong.append(f"{name}.{column.name}: no meaning")
        wrong += [f"{name}.{extra}: documented, not in the schema" for extra in sorted(set(page) - set(table.c.keys()))]
    assert wrong == [], "\n".join(wrong)
