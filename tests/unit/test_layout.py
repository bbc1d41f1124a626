"""The layout's rules (docs/architecture.md §8), read from the imports themselves: what Airflow's
workers run never imports the simulators, benchmarks or tests; the provider stands on its own; its
clients work without Airflow."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offending(folders: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            bad = sorted(m for m in imports(path) if m.split(".")[0] in forbidden)
            if bad:
                out[str(path.relative_to(REPO))] = bad
    return out


def test_what_workers_run_never_imports_the_sandbox_benchmarks_or_tests():
    assert offending(("include", "dags", "plugins", "orderops_provider"), ("sandbox", "bench", "tests")) == {}


def test_the_provider_stands_on_its_own():
    assert offending(("orderops_provider",), ("include", "dags", "plugins")) == {}


def test_the_platform_clients_work_without_airflow():
    clients = [p for p in (REPO / "orderops_provider").glob("*.py") if p.name not in ("hooks.py",)]
    assert clients and {str(p.name): sorted(m for m in imports(p) if m.startswith("airflow"))
                        for p in clients} == {str(p.name): [] for p in clients}


def test_the_sandbox_lives_outside_include():
    assert not (REPO / "include" / "sandbox").exists() and (REPO / "sandbox" / "__init__.py").exists()
