"""MkDocs hook: links to a page listed in PENDING_PAGES that does not exist yet are shown as plain text."""
from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).parent
# Pages announced but not written yet: a link to one stays text until the file lands.
PENDING_PAGES = ("preflight.md",)


def unlink_pending(markdown: str) -> str:
    for pending in PENDING_PAGES:
        if (DOCS / pending).exists():
            continue
        markdown = re.sub(r"\[([^\]]+)\]\((?:\.\./)*" + re.escape(pending) + r"(#[^)]*)?\)",
                          r"\1 (`" + pending + "`, not written yet)", markdown)
    return markdown


def on_page_markdown(markdown, page, config, files):  # MkDocs hook
    return unlink_pending(markdown)
