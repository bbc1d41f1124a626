"""The layout's rules (docs/architecture.md §8), read from the imports themselves: what Airflow's
workers run never imports the simulators, benchmarks or tests; the provider stands on its own; its
clients work without Airflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert clients and {str(p.name): sorted(m for m in imports(p) if m.startswith("airflow")) for p in clients} == {
        str(p.name): [] for p in clients
    }


def test_the_sandbox_lives_outside_include():
    assert not (REPO / "include" / "sandbox").exists() and (REPO / "sandbox" / "__init__.py").exists()


# include/ by concern: decide (the pure core), extract, act, store, events, report, quality, run (a
# run's settings, steps and orchestration), airflow (what the DAG files need), cli.
FOLDERS = ("decide", "extract", "act", "store", "events", "report", "quality", "run", "airflow")


def include_modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (REPO / "include").rglob("*.py")
        if "migrations" not in p.parts
    }


def test_include_is_folders_by_concern():
    loose = sorted(
        p.name for p in (REPO / "include").glob("*.py") if p.name not in ("__init__.py", "cli.py", "preflight.py")
    )
    assert loose == [] and all((REPO / "include" / folder / "__init__.py").exists() for folder in FOLDERS)


def test_the_decision_core_is_pure():
    """decide/ (model, vocabularies, policy, carriers, join, rules) stands on the standard library
    and the provider's rules for where a TikTok order id lives: no database, no platform client, no
    Airflow."""
    allowed = ("include.decide", "orderops_provider.tiktok_order_id")
    for name, path in include_modules().items():
        if name.startswith("include.decide."):
            outside = sorted(
                m
                for m in imports(path)
                if m.split(".")[0] in ("include", "orderops_provider", "airflow", "sqlalchemy", "pandas", "httpx")
                and not m.startswith(allowed)
            )
            assert outside == [], name
    assert {m.split(".")[0] for m in imports(REPO / "orderops_provider" / "tiktok_order_id.py")} <= {
        "__future__",
        "re",
        "dataclasses",
        "typing",
        "collections",
        "orderops_provider",
    }


def test_extraction_never_acts_and_the_lower_rooms_never_import_airflow():
    assert offending(("include/extract",), ()) == {}
    acting = {
        str(p.relative_to(REPO)): sorted(m for m in imports(p) if m.startswith("include.act"))
        for p in (REPO / "include" / "extract").rglob("*.py")
    }
    assert all(found == [] for found in acting.values()), acting
    assert offending(("include/decide", "include/extract", "include/act", "include/store"), ("airflow",)) == {}


def test_no_import_cycles_in_include():
    modules = include_modules()
    graph = {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        seen[name] = 1
        for nxt in sorted(graph[name]):
            assert seen.get(nxt) != 1, " -> ".join(path + [name, nxt])
            if nxt not in seen:
                visit(nxt, path + [name])
        seen[name] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [])


def test_nothing_imports_the_command_line():
    users = {name for name, path in include_modules().items() if "include.cli" in imports(path)}
    assert users == set()


# the venv's own ruff, at the pin in requirements.txt (the config is pyproject.toml's)
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.skipif(not RUFF.exists(), reason=f"no ruff next to {sys.executable}: `make venv` installs it")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_passes_on_the_repository(command):
    done = subprocess.run([str(RUFF), *command, str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
