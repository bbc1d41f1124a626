"""Prints the chaos tables (fault matrix, crashes, concurrency) at the end of the session."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from tests.chaos import report

    for table, text in report.write_all():
        terminalreporter.section(f"orderops {table} (also in {report.REPORT_DIR / (table + '.txt')})")
        terminalreporter.write_line(text)
