"""What a record is, and how one is read from and written to the session store.

A record is a frozen dataclass with a class-level ``KEY``: the session store's key it lives
under. :meth:`Record.to_json` makes the JSON value stored there, field by field under the field's
name (or its ``key`` metadata), in field order; a field made with :func:`omitted` is left out
while it holds its default, so a record writes exactly the keys the lab has always written.
:meth:`Record.from_json` reads one back tolerantly: keys it does not know are ignored and a
missing field with a default takes it, but a missing required field or a value of the wrong
type is a :class:`RecordError` that names the key and the field — one line, not a ``KeyError``
deep inside a step.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from ...errors import InflabError
from ...session import Store


class RecordError(InflabError, ValueError):
    """A stored value that is not of its record's shape; the message names the key and the field."""


R = TypeVar("R", bound="Record")


def omitted(default: Any = None) -> Any:
    """A field left out of the JSON while it holds ``default`` (the lab writes the key only once it has a value)."""
    return dataclasses.field(default=default, metadata={"omit": True})


def omitted_map() -> Any:
    """An object field (``{}`` by default) left out of the JSON while it is empty."""
    return dataclasses.field(default_factory=dict, metadata={"omit": True})


def json_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """One value a step hands on through the session store, under :attr:`KEY`."""

    KEY: ClassVar[str] = ""
    #: the step that writes it: what to run again when the stored value is not usable
    WRITER: ClassVar[str] = ""

    def to_json(self) -> Any:
        """The value as it is stored."""
        return _plain(self)

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """The record from its stored value; :class:`RecordError` when the value is not of its shape."""
        return typing.cast(Self, _build(cls, value, cls.where()))

    @classmethod
    def where(cls) -> str:
        return f"the session's {cls.KEY!r} record"

    @classmethod
    def error(cls, problem: str) -> RecordError:
        """A :class:`RecordError` about this record's stored value, saying what to do."""
        again = f"run the {cls.WRITER} step again" if cls.WRITER else "run the step that writes it again"
        return RecordError(f"{problem} (written by another version of inflab, or edited): {again}")


# ------------------------------------------------------------------------- the store
def load(store: Store, session: str, cls: type[R]) -> R | None:
    """The session's ``cls`` record, or None when there is none."""
    value = store.get(session, cls.KEY)
    return None if value is None else cls.from_json(value)


def save(store: Store, session: str, record: Record) -> None:
    store.put(session, record.KEY, record.to_json())


def forget(store: Store, session: str, cls: type[Record]) -> None:
    store.delete(session, cls.KEY)


# ------------------------------------------------------------------------- conversion
def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return {
            json_key(f): _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit") and getattr(value, f.name) == _default(f))
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {json_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _owner(cls: type) -> type[Record] | None:
    return cls if isinstance(cls, type) and issubclass(cls, Record) else None


def fail(where: str, problem: str, owner: type[Record] | None) -> RecordError:
    line = f"{where}: {problem}"
    return owner.error(line) if owner else RecordError(line)


def _build(cls: type, data: Any, where: str, owner: type[Record] | None = None) -> Any:
    owner = owner or _owner(cls)
    if not isinstance(data, Mapping):
        raise fail(where, f"expected an object, got {_shown(data)}", owner)
    fields = dataclasses.fields(cls)
    missing = [json_key(f) for f in fields if _required(f) and json_key(f) not in data]
    if missing:
        raise fail(where, f"missing {'fields' if len(missing) > 1 else 'field'} {', '.join(map(repr, missing))}", owner)
    hints = _hints(cls)
    values = {
        f.name: convert(data[json_key(f)], hints[f.name], f"{where}, field {json_key(f)!r}", owner)
        for f in fields
        if f.init and json_key(f) in data
    }
    return cls(**values)


def convert(value: Any, hint: Any, where: str, owner: type[Record] | None = None) -> Any:
    """``value`` checked against the type ``hint``: ints taken as floats, lists as tuples, nested
    records built; anything else of the wrong type is a :class:`RecordError`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{where}: unions of several types are not supported ({hint})")
        return convert(value, inner[0], where, owner)
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where, owner)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):  # a NamedTuple: a JSON list
        fields = _hints(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(fields):
            raise fail(where, f"expected a list of {len(fields)} ({', '.join(fields)}), got {_shown(value)}", owner)
        return hint(*(convert(v, h, f"{where}[{i}]", owner) for i, (v, h) in enumerate(zip(value, fields.values()))))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(where, f"expected a list, got {_shown(value)}", owner)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{where}[{i}]", owner) for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(where, f"expected a list of {len(args)}, got {_shown(value)}", owner)
        return tuple(convert(v, h, f"{where}[{i}]", owner) for i, (v, h) in enumerate(zip(value, args)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise fail(where, f"expected an object, got {_shown(value)}", owner)
        item = args[1] if len(args) == 2 else Any
        return {str(k): convert(v, item, f"{where}[{k!r}]", owner) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint in (int, float) and isinstance(value, bool)):
        raise fail(where, f"expected {_name(hint)}, got {_shown(value)}", owner)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A class's annotations, resolved (once: every poll of a record reads them)."""
    return typing.get_type_hints(cls)


def _name(hint: Any) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
