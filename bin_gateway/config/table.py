"""One TOML table being read: typed values out, every problem recorded, not raised.

A ``Table`` wraps one TOML table, hands out typed values, records a problem with its
dotted key path instead of raising, and afterwards reports every key nobody asked for (a
typo must never pass silently).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bin_gateway.config.values import parse_size

T = TypeVar("T")

_MISSING, _INVALID = object(), object()
_KIND = {str: "a string", bool: "true or false", int: "an integer", list: "a list", dict: "a table"}


def _kind(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "an integer"),
                       (float, "a number"), (list, "a list"), (dict, "a table")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "a date or time"


@dataclass
class Table:
    """One TOML table being read; problems go to the shared list, typed values come back."""

    raw: Mapping[str, object]
    path: str
    problems: list[str]
    base: Path
    children: list[Table] = field(default_factory=list)
    read: set[str] = field(default_factory=set)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def take(self, key: str, kind: type, required: bool) -> object:
        self.read.add(key)
        if key not in self.raw:
            if required:
                self.problem(key, "missing (required)")
            return _MISSING
        value = self.raw[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.problem(key, f"expected {_KIND[kind]}, got {_kind(value)}")
            return _INVALID
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.take(key, str, required=default is None)
        return value if isinstance(value, str) else (default or "")

    def parsed(self, key: str, parse: Callable[[str], T], default: str | None, fallback: T) -> T:
        value = self.take(key, str, required=default is None)
        value = default if value is _MISSING else value
        if not isinstance(value, str):
            return fallback
        try:
            return parse(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return fallback

    def parsed_list(
        self,
        key: str,
        parse: Callable[[str], T],
        default: tuple[str, ...] | None = None,
        nonempty: bool = False,
    ) -> tuple[T, ...]:
        value = self.take(key, list, required=default is None)
        items = list(default or ()) if value is _MISSING else value
        if nonempty and items == []:
            self.problem(key, "must not be empty")
        result: list[T] = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            try:
                if not isinstance(item, str):
                    raise ValueError(f"expected a string, got {_kind(item)}")
                result.append(parse(item))
            except ValueError as exc:
                self.problems.append(f"{self.at(key)}[{index}]: {exc}")
        return tuple(result)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.take(key, bool, required=False)
        return value if isinstance(value, bool) else default

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.take(key, int, required=False)
        if not isinstance(value, int):
            return default
        if not low <= value <= high:
            self.problem(key, f"{value} is outside {low}..{high}")
        return value

    def size(self, key: str, default: str) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            self.read.add(key)  # a bare TOML integer is a number of bytes
        else:
            value = self.parsed(key, parse_size, default, 1)
        if value <= 0:
            self.problem(key, "must be larger than zero")
        return value

    def table(self, key: str, required: bool = False) -> Table | None:
        value = self.take(key, dict, required=False)
        if value is _MISSING and required:
            value = {}  # each required key of the section reports itself
        return self._child(value, self.at(key)) if isinstance(value, dict) else None

    def tables(self, key: str) -> list[Table]:
        value = self.take(key, list, required=False)
        result: list[Table] = []
        for index, item in enumerate(value if isinstance(value, list) else []):
            if isinstance(item, dict):
                result.append(self._child(item, f"{self.at(key)}[{index}]"))
            else:
                self.problems.append(f"{self.at(key)}[{index}]: expected a table")
        return result

    def _child(self, raw: Mapping[str, object], path: str) -> Table:
        child = Table(raw, path, self.problems, self.base)
        self.children.append(child)
        return child

    def report_unknown_keys(self) -> None:
        self.problems.extend(
            f"{self.at(key)}: unknown key" for key in self.raw if key not in self.read
        )
        for child in self.children:
            child.report_unknown_keys()
