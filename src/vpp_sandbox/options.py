"""Every setting declared once: a dataclass field whose metadata is its `Option`.

From one declaration come the command-line flag (`add_arguments`), the `VPP_` environment
variable (`from_env`, whose errors name the variable) and the README's table
(`markdown_table`). `mock_server.settings.Settings` (the server) and the CLI's option classes
for `test` and `proxy` are declared this way. A leaf module: it imports nothing of ours.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

__all__ = [
    "Option",
    "add_arguments",
    "boolean",
    "choice",
    "from_env",
    "given",
    "markdown_table",
    "options_of",
    "positive_float",
    "positive_int",
    "setting",
    "text",
    "whole",
]


class _NoSwitch:
    """The `switch` of an option that takes a value."""

    def __repr__(self) -> str:
        return "NO_SWITCH"


NO_SWITCH: Any = _NoSwitch()


@dataclass(frozen=True)
class Option:
    """How one setting is given: its flag, its variable, what it means and how it is read."""

    flag: str | None  # "--max-body-bytes"; None: a variable only
    env: str | None  # "VPP_MAX_BODY_BYTES"; None: a flag only
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    switch: Any = NO_SWITCH  # a flag without a value, setting this (--no-autopilot: False)
    repeat: bool = False  # the flag may be repeated; the variable is comma-separated
    default_text: str | None = None  # the README's default where the value says too little
    required: bool = False  # the run cannot start without it (flag or variable)
    secret: bool = False  # a key: better in the variable than on the command line
    # An empty variable is a value (handed to `parse` and to the setting), not "unset": for a
    # key whose absence opens something up, `VPP_ADMIN_KEY=""` must not mean "no key".
    empty_is_given: bool = False


def setting(default: Any = MISSING, *, option: Option, factory: Any = MISSING) -> Any:
    """A dataclass field declared with its option."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"option": option})
    return field(default=default, metadata={"option": option})


def options_of(cls: type) -> Iterator[tuple[str, Option, Any]]:
    """(field name, option, default) of every declared setting of a dataclass, in order."""
    for item in dataclasses.fields(cls):
        option = item.metadata.get("option")
        if option is None:
            continue
        default = item.default
        if default is MISSING and item.default_factory is not MISSING:
            default = item.default_factory()
        yield item.name, option, default


# -- reading a value ----------------------------------------------------------------------------


def text(value: str) -> str:
    return value


def whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def positive_int(value: str) -> int:
    number = whole(value)
    if number < 1:
        raise ValueError(f"{value!r} must be a whole number of at least 1")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number > 0:
        raise ValueError(f"{value!r} must be greater than 0")
    return number


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{value!r} is not one of 1/0, true/false, yes/no, on/off")


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return word

    return parse


# -- the environment ----------------------------------------------------------------------------


def from_env(cls: type, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings of `cls` that `VPP_` variables give; a bad value is a ValueError that
    names the variable and says what it must be."""
    values: dict[str, Any] = {}
    for name, option, _ in options_of(cls):
        if option.env is None:
            continue
        raw = environ.get(option.env)
        blank = raw is not None and raw.strip() == "" and not option.empty_is_given
        if raw is None or (blank and option.switch is NO_SWITCH):
            continue
        try:
            if option.repeat:
                values[name] = tuple(
                    option.parse(part.strip()) for part in raw.split(",") if part.strip()
                )
            elif option.switch is not NO_SWITCH:
                # A switch's variable says whether the switch is on (VPP_AUTOPILOT=0 is
                # --no-autopilot): the setting is the switch's value then, else its default.
                on = boolean(raw) if raw.strip() else False
                values[name] = on if isinstance(option.switch, bool) else option.switch
            else:
                values[name] = option.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{option.env}={raw!r}: {exc}") from None
    return values


# -- the command line ---------------------------------------------------------------------------


def _argument_type(option: Option) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            return option.parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag for every setting of `cls` that has one (its default stays the dataclass's: a
    flag not given is None, so variables and defaults apply in `given`); the settings that are
    variables only are listed after the flags."""
    only = [f"{o.env}: {o.help}" for _, o, _ in options_of(cls) if o.flag is None and o.env]
    if only:
        parser.epilog = "Set by a variable only: " + "; ".join(only) + "."
    for name, option, default in options_of(cls):
        if option.flag is None:
            continue
        where = f"env {option.env}" if option.env else ""
        shown = option.default_text or ("" if default in (None, MISSING, ()) else f"{default}")
        details = "; ".join(part for part in (f"default {shown}" if shown else "", where) if part)
        help_text = option.help + (f" ({details})" if details else "")
        if option.switch is not NO_SWITCH:
            parser.add_argument(
                option.flag, dest=name, action="store_const", const=option.switch, help=help_text
            )
        elif option.repeat:
            parser.add_argument(
                option.flag,
                dest=name,
                action="append",
                type=_argument_type(option),
                metavar=option.metavar,
                help=help_text,
            )
        else:
            parser.add_argument(
                option.flag,
                dest=name,
                type=_argument_type(option),
                metavar=option.metavar,
                help=help_text,
            )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` given as flags (repeated flags as a tuple)."""
    values: dict[str, Any] = {}
    for name, option, _ in options_of(cls):
        value = getattr(args, name, None)
        if value is None:
            continue
        values[name] = tuple(value) if option.repeat else value
    return values


def markdown_table(cls: type) -> str:
    """The README's table of the settings of `cls`: flag, variable, default, meaning."""
    rows = ["| Flag | Variable | Default | What it does |", "|---|---|---|---|"]
    for _, option, default in options_of(cls):
        flag = f"`{option.flag}`" if option.flag else ""
        if option.flag and option.metavar:
            flag = f"`{option.flag} {option.metavar}`"
        env = f"`{option.env}`" if option.env else ""
        if option.env and option.repeat:
            env += " (comma-separated)"
        if option.default_text is not None:
            shown = option.default_text
        elif option.required:
            shown = "required"
        elif default in (None, MISSING, ()):
            shown = "none"
        else:
            shown = f"`{default}`"
        cells = (flag, env, shown, option.help)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)
