"""Jinja2 templates from the top-level `templates/` (in the wheel: mcpgen/templates).

Templates receive input text only as data: JSON or `repr()` literals, never as code.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "templates"  # source checkout / editable install


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["pyrepr"] = repr
    return env


def render(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)
