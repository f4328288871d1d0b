"""Flatten and unflatten functions generated once per functor class.

``@ff.functor`` calls :func:`generate` when it registers a class. The class's
declaration (its children, its trainable children, where its instances keep
their fields) is known then, so the two functions every tree walk calls on its
objects can be written out as straight-line Python, one attribute read or one
store per child, and compiled once. Nothing is generated while a program runs,
and nothing is cached per object: a walk over a model calls these functions and
nothing else (Equinox's ``_module/_flatten.py`` does the same for its Modules).

The generated source keeps the class's name in its function names and in the
file name of its code object (``<generated flatten for Dense>``), so a traceback
or a profile names the class it walked; ``fn.__source__`` holds the source.

What a functor object flattens to:

- children: a tuple, one entry per child name, in the declared order;
- aux: ``(child names, configuration)``, where configuration is a dict
  ``{field name: value}`` of every other field. Two objects of a class have
  equal structure when their configurations are equal (``==``).

Unflatten makes the object with ``object.__new__`` (``__init__`` does not run),
stores the configuration and then the children, bypassing any ``__setattr__``
(layers refuse changes once built).
"""
from __future__ import annotations

import dataclasses
import keyword
from typing import Any, Callable, Final, NamedTuple

__all__ = ["FunctorClass", "generate"]

MISSING: Final = object()  # a slot that was never set: skipped when rebuilding

#: The flatten function of a class whose child names are declared.
FLATTEN_NAMED: Final = '''
def flatten_{name}(obj):
    """Generated flatten for {qualname}: children {children}; other fields are configuration."""
    try:
        children = ({child_reads})
    except AttributeError:
        raise missing_child(obj) from None
{config}    return children, (CHILDREN, config)
'''

#: The flatten function of a class declared with bare ``@functor``: every field is a child,
#: and the field names are read from each object (a plain class declares none).
FLATTEN_EVERY_FIELD: Final = '''
def flatten_{name}(obj):
    """Generated flatten for {qualname}: every field is a child."""
    names = {names}
    return tuple([getattr(obj, n) for n in names]), (names, {{}})
'''

#: Configuration of an object with a ``__dict__``: a copy of it without the children (a
#: copy and a few deletions cost a third of a filtering loop; a walk does this per layer).
CONFIG_FROM_DICT: Final = "    config = obj.__dict__.copy()\n"
DROP_CHILD: Final = "    config.pop({child!r}, None)\n"
#: Configuration of an object without a ``__dict__``: its slots (``MISSING`` for one unset).
CONFIG_FROM_SLOTS: Final = "    config = {{{slot_reads}}}\n"
#: ... and of one with both.
CONFIG_ADD_SLOTS: Final = "    config.update({{{slot_reads}}})\n"

#: The unflatten function: a new object, its configuration, then its children.
UNFLATTEN: Final = '''
def unflatten_{name}(aux, children):
    """Generated unflatten for {qualname}: configuration from aux, then children."""
    obj = new(cls)
{body}    return obj
'''

STORE_CONFIG_IN_DICT: Final = "    d = obj.__dict__\n    d.update(aux[1])\n"
STORE_CONFIG_ANYWHERE: Final = ("    for k, v in aux[1].items():\n"
                                "        if v is not MISSING:\n"
                                "            setattr_(obj, k, v)\n")
STORE_CHILD_IN_DICT: Final = "    d[{child!r}] = children[{i}]\n"
STORE_CHILD_IN_SLOT: Final = "    setattr_(obj, {child!r}, children[{i}])\n"
STORE_EVERY_FIELD_IN_DICT: Final = "    obj.__dict__.update(zip(aux[0], children))\n"
STORE_EVERY_FIELD_ANYWHERE: Final = ("    for k, v in zip(aux[0], children):\n"
                                     "        setattr_(obj, k, v)\n")

MISSING_CHILD: Final = ("{cls} is a functor with children {children}, but the object has no "
                        "field {name!r}: set every child in __init__, or name the children in "
                        "@ff.functor(...).")


class FunctorClass(NamedTuple):
    """A functor class's declaration and the functions generated from it."""

    cls: type
    children: tuple[str, ...] | None  # None: every field is a child
    trainable: frozenset[str] | None  # None: every child is trainable
    flatten: Callable[[Any], tuple[tuple, tuple]]
    unflatten: Callable[[tuple, Any], Any]


def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        own = klass.__dict__.get("__slots__", ())
        for s in ((own,) if isinstance(own, str) else own):
            if s not in ("__dict__", "__weakref__") and s not in names:
                names.append(s)
    return tuple(names)


def _identifier(cls: type) -> str:
    return "".join(c if c.isalnum() else "_" for c in cls.__qualname__)


def _compile(src: str, what: str, cls: type, namespace: dict) -> Callable:
    code = compile(src, f"<generated {what} for {cls.__qualname__}>", "exec")
    exec(code, namespace)
    fn = namespace[f"{what}_{_identifier(cls)}"]
    fn.__module__ = cls.__module__
    fn.__source__ = src
    return fn


def generate(cls: type, children: tuple[str, ...] | None,
             trainable: tuple[str, ...] | None) -> FunctorClass:
    """Write and compile ``cls``'s flatten and unflatten functions (once, at registration).

    >>> class Box:
    ...     def __init__(self, w, tag): self.w, self.tag = w, tag
    >>> fc = generate(Box, ("w",), None)
    >>> fc.flatten(Box(1.0, "a"))
    ((1.0,), (('w',), {'tag': 'a'}))
    >>> fc.unflatten(*reversed(fc.flatten(Box(1.0, "a")))).tag
    'a'
    >>> print(fc.unflatten.__source__.strip().splitlines()[0])
    def unflatten_Box(aux, children):
    """
    has_dict = cls.__dictoffset__ != 0  # instances keep fields in a __dict__
    slots = _slots(cls)
    name, qualname = _identifier(cls), cls.__qualname__
    ns: dict[str, Any] = {"cls": cls, "new": object.__new__, "setattr_": object.__setattr__,
                          "MISSING": MISSING}
    if children is None:
        if dataclasses.is_dataclass(cls):
            names_src = repr(tuple(f.name for f in dataclasses.fields(cls)))
        else:
            parts = ["tuple(obj.__dict__)"] if has_dict else []
            if slots:
                parts.append(f"tuple([s for s in {slots!r} if hasattr(obj, s)])")
            names_src = " + ".join(parts) or "()"
        flat_src = FLATTEN_EVERY_FIELD.format(name=name, qualname=qualname, names=names_src)
        body = STORE_EVERY_FIELD_IN_DICT if has_dict and not slots else STORE_EVERY_FIELD_ANYWHERE
    else:
        config_slots = [s for s in slots if s not in children]
        slot_reads = "".join(f"{s!r}: getattr(obj, {s!r}, MISSING), " for s in config_slots)
        if has_dict:
            config = CONFIG_FROM_DICT + "".join(DROP_CHILD.format(child=c) for c in children)
            if config_slots:
                config += CONFIG_ADD_SLOTS.format(slot_reads=slot_reads)
        else:
            config = CONFIG_FROM_SLOTS.format(slot_reads=slot_reads)
        ns.update(CHILDREN=children, missing_child=lambda obj: _missing_child(obj, children))
        flat_src = FLATTEN_NAMED.format(
            name=name, qualname=qualname, children=children,
            child_reads="".join(_read(c) for c in children), config=config)
        body = STORE_CONFIG_IN_DICT if has_dict and not config_slots else STORE_CONFIG_ANYWHERE
        if has_dict and config_slots and any(c not in slots for c in children):
            body += "    d = obj.__dict__\n"
        for i, c in enumerate(children):
            in_slot = c in slots or not has_dict
            body += (STORE_CHILD_IN_SLOT if in_slot else STORE_CHILD_IN_DICT).format(
                child=c, i=i)
    flatten = _compile(flat_src, "flatten", cls, ns)
    unflatten = _compile(UNFLATTEN.format(name=name, qualname=qualname, body=body),
                         "unflatten", cls, ns)
    return FunctorClass(cls, children, None if trainable is None else frozenset(trainable),
                        flatten, unflatten)


def _read(name: str) -> str:
    """Source reading the field ``name`` of ``obj``: ``obj.weight``, or ``getattr`` for a
    name that is not a plain identifier."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"obj.{name}, "
    return f"getattr(obj, {name!r}), "


def _missing_child(obj: Any, children: tuple[str, ...]) -> AttributeError:
    missing = next(c for c in children if not hasattr(obj, c))
    return AttributeError(MISSING_CHILD.format(cls=type(obj).__name__, children=children,
                                               name=missing))
