"""The HTML pages' templates: Jinja2 with autoescape on, so every value from the warehouse or a
platform is text, never markup."""

from __future__ import annotations

from functools import cache

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("include.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )


def template(name: str) -> jinja2.Template:
    return _environment().get_template(name)
