"""User-facing errors and warnings.

A `UserError` is bad input (a file that does not compile, an unknown config key, ...): the CLI
prints it as `file:line: message` plus a hint and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
                if self.column:
                    where += f":{self.column}"
            where += ": "
        return where + self.message


class UserError(Exception):
    """Input the user must fix. Carries one or more problems and a hint on what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.hint = hint
        self.problems = problems or []

    def render(self) -> str:
        head = str(Problem(self.message, self.file, self.line))
        lines = [f"error: {head}"]
        lines += [f"  {p}" for p in self.problems]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


@dataclass(slots=True)
class Warnings:
    """Warnings collected by the stages of one build, printed once by the CLI."""

    items: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)


EXIT_USER_ERROR = 1
EXIT_INTERNAL = 70


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError into a readable message and exit 1; hide tracebacks of internal errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            click.echo(exc.render(), err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `mcpgen tools --json | head`: the reader left, as with SIGPIPE
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(128 + 13)
        except Exception as exc:  # a bug in mcpgen, not in the input
            if os.environ.get("MCPGEN_DEBUG"):
                traceback.print_exc()
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "hint: this is a bug in mcpgen; rerun with MCPGEN_DEBUG=1 for details "
                "and report it",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


_USERINFO = re.compile(r"//[^/@]*@")


def without_credentials(address: str) -> str:
    """`address` without its `user:password@` part: what messages and logs may show."""
    return _USERINFO.sub("//", address)
