"""What the per-format renderers share: the Jinja2 environment and the quoting filters."""

from __future__ import annotations

import functools
import json
import shlex
import textwrap
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import jinja2

from imagekit.model import Catalog, Image
from imagekit.render.plan import (
    CA_PATH,
    HOME_SEED,
    PYC_CACHE,
    UV_CACHE,
    WHEELHOUSE,
    RecipePlan,
    plan,
)
from imagekit.schema import Platform


def _sh(value: object) -> str:
    return shlex.quote(str(value))


def _sh_words(values: Any) -> str:
    return " ".join(shlex.quote(str(v)) for v in values)


def _json(value: object) -> str:
    return json.dumps(value)


def _dq(value: str) -> str:
    """A double-quoted string whose $VAR references still expand (env files, Dockerfile ENV).

    Values were validated to hold no quote, backslash, backtick or `$(`.
    """
    return f'"{value}"'


def _continued(lines: Any, indent: int) -> str:
    """Items joined as Dockerfile continuation lines."""
    return (" \\\n" + " " * indent).join(str(line) for line in lines)


def _wrap(text: str, width: int = 88) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width)


@functools.cache
def _environment() -> jinja2.Environment:
    """One environment per process: it compiles each template once, not once per image."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("imagekit.render", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(sh=_sh, sh_words=_sh_words, json=_json, dq=_dq, wrap=_wrap,
                       continued=_continued)
    return env


class Renderer(ABC):
    """One output format. Subclasses name their template and add format-specific context."""

    template: ClassVar[str]
    filename: ClassVar[str]

    def __init__(self) -> None:
        self.env = _environment()

    def render(self, catalog: Catalog, image: Image,
               platform: Platform | None = None) -> dict[str, str]:
        """This format's files for the image, by path relative to its recipe folder."""
        recipe = plan(catalog, image, platform)
        context: dict[str, Any] = {
            "p": recipe,
            "CA_PATH": CA_PATH,
            "WHEELHOUSE": WHEELHOUSE,
            "HOME_SEED": HOME_SEED,
            "UV_CACHE": UV_CACHE,
            "PYC_CACHE": PYC_CACHE,
        }
        context.update(self.extra_context(catalog, recipe))
        text = self.env.get_template(self.template).render(**context)
        return {self.filename: text, **self.companions(recipe)}

    def companions(self, recipe: RecipePlan) -> dict[str, str]:
        """Files the main recipe refers to (none by default)."""
        return {}

    @abstractmethod
    def extra_context(self, catalog: Catalog, recipe: RecipePlan) -> dict[str, Any]:
        """Format-specific values the template needs."""
