"""Tables the chaos, crash and concurrency tests print at the end of the session.

A test adds its rows (`add`); tests/conftest.py hands them over on the test's teardown report
(`user_properties`, which pytest-xdist carries from a worker to the main process), collects them
there (`receive`), prints them in pytest's terminal summary (shown with or without `-s`) and
writes them to state/test-reports/<table>.txt.
"""

from __future__ import annotations

from collections import defaultdict

from include.run.runconfig import STATE_DIR

PROPERTY = "orderops-table-row"
PENDING: list[tuple[str, dict]] = []  # the running test's rows
TABLES: dict[str, list[dict]] = defaultdict(list)  # finished tests' rows, where they are printed
REPORT_DIR = STATE_DIR / "test-reports"


def add(row: dict, table: str = "chaos-matrix") -> None:
    PENDING.append((table, row))


def hand_over(item) -> None:
    """Put the running test's rows on its reports (user properties travel with them)."""
    item.user_properties.extend((PROPERTY, entry) for entry in PENDING)
    PENDING.clear()


def receive(test_report) -> None:
    """Collect the rows a finished test handed over (once: on its teardown report)."""
    if test_report.when != "teardown":
        return
    for name, value in test_report.user_properties:
        if name == PROPERTY:
            table, row = value
            TABLES[table].append(row)


def render(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def write_all() -> list[tuple[str, str]]:
    out = []
    for table, rows in TABLES.items():
        if not rows:
            continue
        text = render(rows)
        try:
            REPORT_DIR.mkdir(parents=True, exist_ok=True)
            (REPORT_DIR / f"{table}.txt").write_text(text + "\n")
        except OSError:
            pass  # a read-only checkout still gets the terminal summary
        out.append((table, text))
    return out
