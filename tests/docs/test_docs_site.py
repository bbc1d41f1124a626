"""The documentation site (docs/, mkdocs.yml): it builds in strict mode, every relative link in
README.md and docs/ points to a file that exists, and the measured figures' tables come from the
result files in docs/results/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"
# [text](target) outside code: the target up to a space, a closing parenthesis or a fragment
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s#]*)(#[^)\s]*)?\)")


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def without_code(text: str) -> str:
    """The text outside fenced blocks and inline code, where a link is a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_site_builds_in_strict_mode(tmp_path):
    """A broken link or anchor, a page left out of the nav or a nav entry without its file fails it."""
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
    performance = (tmp_path / "site" / "performance.html").read_text()
    assert "<!-- table:" not in performance and "quota-bound lower bound" in performance


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file(page):
    broken = []
    for target, _ in LINK.findall(without_code(page.read_text())):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # an anchor on the page, or a URL
            continue
        path = (page.parent / target).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to missing files: {broken}"


def test_the_link_check_sees_links():
    """The pattern finds the links it must check, and not the ones inside code."""
    text = "see [a](b.md#x) and [c](../d/e.md), `[f](g.md)`, ![img](h.png), [web](https://x.org)"
    assert [t for t, _ in LINK.findall(without_code(text))] == ["b.md", "../d/e.md", "https://x.org"]


def test_every_table_marker_is_known_and_every_table_is_shown():
    module = hooks()
    used = set()
    for page in DOCS.rglob("*.md"):
        used |= set(module.MARKER.findall(page.read_text()))
    assert used == set(module.TABLES)


@pytest.mark.parametrize("name", sorted(p.name for p in (DOCS / "results").glob("*.json")))
def test_each_result_file_says_where_its_figures_come_from(name):
    doc = json.loads((DOCS / "results" / name).read_text())
    prov = doc["provenance"]
    assert prov["command"].startswith("make ") and prov["date"] and prov["machine"]


def test_a_new_bench_result_file_renders(tmp_path, monkeypatch):
    """A file in the shape `make bench` writes (bench/results/pipeline-latest.json), without provenance,
    renders its table with the file's own time and revision."""
    module = hooks()
    result = json.loads((DOCS / "results" / "pipeline.json").read_text())
    doc = {
        "when": "20270102T030405Z",
        "revision": "abc1234",
        "python": "3.11.9",
        "results": result["results"][:1],
        "dag_parse": None,
    }
    (tmp_path / "pipeline.json").write_text(json.dumps(doc))
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    text = module.render("bench-pipeline")
    assert "| wall time | 34 s |" in text and "commit abc1234, 2027-01-02" in text
    assert "no DAG parse times" in module.render("bench-dag-parse")


def test_the_readme_is_short_and_types_no_measured_figure():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    assert not re.search(r"\b\d[\d,]* tests\b|about \d+(\.\d+)? minutes", text)


def test_the_readmes_week_table_is_the_result_files():
    """The README's table of a shop's week is rendered from docs/results (docs/hooks.py readme_week):
    a new measurement that is not pasted into the README fails here, with the table to paste."""
    table = hooks().readme_week()
    assert table in (REPO / "README.md").read_text(), f"paste into README.md:\n{table}"
