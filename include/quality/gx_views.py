"""Data Docs page views: pages that need nothing from outside the page's own server, compiled once
per process.

GX's pages load their scripts, styles, icons and logo from public CDNs: without internet the index
(a table its scripts draw) is blank and the other pages are unstyled. Each page here is GX's HTML
with every script and every outside asset taken out and orderops' own stylesheet
(`data_docs/data_docs_custom_styles.css`, GX's hook for a site's styles) in it; the index is
orderops' own page, a plain list of the validation results GX's index would list. Nothing in them
runs a script.

GX makes a new Jinja environment for every page view, so each validation compiled the same
templates again: about half of a validation's time (bench/quality_bench.py). The views here share
one in-memory bytecode cache; Jinja still reads each template's source and recompiles it when the
source changed. Imported by GX itself, from the Data Docs site's configuration (include.quality.checkpoints).
"""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache

STYLES_DIR = Path(__file__).resolve().parent / "data_docs"
# What makes a browser fetch something: scripts (all of them: GX's inline ones need the CDN's
# jQuery), stylesheets and images from another host, and CSS backgrounds from one.
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.S | re.I)
OUTSIDE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
OUTSIDE_IMAGE = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
OUTSIDE_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.I)
# GX's brand logo stands in the navigation bar; the site's name takes its place.
BRAND = '<span class="orderops-brand">orderops data quality</span>'


class _CompiledTemplates(BytecodeCache):
    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored when the source's checksum differs

    def dump_bytecode(self, bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code


COMPILED = _CompiledTemplates()


def offline(html: str) -> str:
    """A Data Docs page with nothing a browser would fetch from another host and no script."""
    html = SCRIPT.sub("", html)
    html = OUTSIDE_LINK.sub("", html)
    html = OUTSIDE_IMAGE.sub(BRAND, html)
    return OUTSIDE_URL.sub("none", html)


@cache
def _index_template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(STYLES_DIR), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template("index.html")


def _tab_rows(document: dict, name: str) -> list[dict]:
    """The rows of the index document's tab `name` (GX's index keeps them as a table's data)."""
    for section in document.get("sections") or []:
        for block in section.get("content_blocks") or []:
            for tab in block.get("tabs") or []:
                if tab.get("tab_name") == name:
                    return list((tab.get("tab_content") or {}).get("table_data") or [])
    return []


def index_entries(document: dict) -> tuple[list[dict], list[dict]]:
    """The validation results (newest first) and suites GX's index document lists, as plain rows."""
    results = [
        {
            "batch": row.get("asset_name") or row.get("_expectation_suite_name_sort") or "",
            "run": row.get("run_name") or "",
            "run_time": row.get("run_time") or "",
            "success": row.get("_validation_success_text") == "Success",
            "page": row.get("_table_row_link_path") or "",
            "order": row.get("_run_time_sort") or 0,
        }
        for row in _tab_rows(document, "Validation Results")
    ]
    results.sort(key=lambda r: (r["order"], r["page"]), reverse=True)
    suites = [
        {"suite": row.get("expectation_suite_name") or "", "page": row.get("_table_row_link_path") or ""}
        for row in _tab_rows(document, "Expectation Suites")
    ]
    return results, sorted(suites, key=lambda s: s["suite"])


def render_index(document: dict) -> str:
    results, suites = index_entries(document)
    return _index_template().render(results=results, suites=suites)


class PageView(DefaultJinjaPageView):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "custom_styles_directory": str(STYLES_DIR)})
        self.env.bytecode_cache = COMPILED

    def render(self, document, template=None, **kwargs) -> str:
        return offline(super().render(document, template, **kwargs))


class IndexPageView(DefaultJinjaIndexPageView):
    """orderops' index: GX's is a table its CDN scripts draw, blank without them."""

    def render(self, document, template=None, **kwargs) -> str:
        self._validate_document(document)
        return render_index(document.to_json_dict() if hasattr(document, "to_json_dict") else document)
