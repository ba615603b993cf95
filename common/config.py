"""Typed configs: YAML files loaded strictly into dataclasses, with command-line overrides.

A stage's config is a dataclass whose fields are section dataclasses
(``data``, ``model``, ``train``, ...), each field typed and defaulted::

    cfg = load_config(FlowTrainConfig, "configs/deflow_light.yaml", ["--train.n_iter", "200"])

Rules, so that a typo never trains the wrong model for hours:

* an unknown section or key is an error that suggests the closest valid key;
* a value of the wrong type is an error naming the field and the expected type
  (an int is accepted where a float is expected, nothing else is converted);
* overrides are ``--section.key value`` or ``--section.key=value``; the value
  is parsed according to the field's type (``--data.name 007`` stays a string);
* a numeric field's allowed values are declared next to it, in the section's
  ``RANGES`` (``">= 1"``, ``"> 0"``, ``"[0, 1)"``, ``"{2, 3, 4}"``), and a value
  outside them is an error naming the field, the value and the range.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from unpaired_sr.common.errors import ConfigError, UserError
from unpaired_sr.common.files import atomic_write_bytes

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~"}


def load_config(schema: type[T], source: str | Path | dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``schema`` from its defaults, then ``source``, then ``overrides``.

    Args:
        schema: a dataclass type whose fields all have defaults.
        source: a YAML file with a mapping of sections, the same as a dict
            (e.g. a checkpoint's saved config), or None for the defaults alone.
        overrides: command-line words such as ``["--train.lr", "1e-4", "--data.crop_size=64"]``.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or malformed override.
    """
    if source is None:
        tree: dict[str, Any] = {}
    elif isinstance(source, dict):
        tree = copy.deepcopy(source)
    else:
        tree = _read_yaml(Path(source))
    for dotted_key, raw_value in parse_overrides(overrides):
        field_type = _field_type(schema, dotted_key.split("."))
        node = tree
        *parents, leaf = dotted_key.split(".")
        for name in parents:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node[leaf] = _coerce(raw_value, field_type, dotted_key, text=True)
    return _build(schema, tree, prefix="")


def parse_overrides(words: Sequence[str]) -> list[tuple[str, str]]:
    """Split ``["--a.b", "1", "--c.d=x"]`` into ``[("a.b", "1"), ("c.d", "x")]``."""
    pairs = []
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("--") or "." not in word.split("=", 1)[0]:
            raise ConfigError(f"unrecognized argument {word!r} (config overrides look like --section.key value)")
        if "=" in word:
            key, value = word[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(words):
                raise ConfigError(f"override {word} has no value")
            key, value = word[2:], words[index + 1]
            index += 2
        pairs.append((key, value))
    return pairs


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-friendly data (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error


def config_from_dict(schema: type[T], tree: dict[str, Any]) -> T:
    """Rebuild a config saved with ``config_to_dict`` (for example from a checkpoint)."""
    return _build(schema, tree, prefix="")


def describe_fields(schema: type, values: Any = None, prefix: str = "") -> list[str]:
    """One line per leaf field for ``--help``: ``--section.key (type, allowed values, default) what it is``.

    With ``values`` (a config of ``schema``: the one ``--config`` loads) each
    line gives the value in force instead of the dataclass default.
    """
    lines = []
    hints = get_type_hints(schema)
    ranges, comments = field_ranges(schema), _field_comments(schema)
    for field in dataclasses.fields(schema):
        name = f"{prefix}{field.name}"
        field_type = hints[field.name]
        value = getattr(values, field.name) if values is not None else None
        if dataclasses.is_dataclass(field_type):
            lines += describe_fields(field_type, value, prefix=f"{name}.")
            continue
        allowed = f", {ranges[field.name]}" if field.name in ranges else ""
        shown = f"value {value!r}" if values is not None else f"default {_default_of(field)!r}"
        line = f"--{name} ({_type_name(field_type)}{allowed}, {shown})"
        lines.append(f"{line}  {comments[field.name]}" if field.name in comments else line)
    return lines


def fields_help(schema: type, argv: Sequence[str]) -> str:
    """The ``--help`` epilog of a training command: every config field, with the values of ``--config`` if given."""
    words = list(argv)
    path = None
    for index, word in enumerate(words):
        if word == "--config" and index + 1 < len(words):
            path = words[index + 1]
        elif word.startswith("--config="):
            path = word.split("=", 1)[1]
    values = None
    if path is not None and ("-h" in words or "--help" in words):
        try:
            values = load_config(schema, path)
        except UserError:  # a broken config still gets help; the run itself will say what is wrong
            values = None
    title = f"config fields (values from {path})" if values is not None else "config fields"
    return f"{title}:\n  " + "\n  ".join(describe_fields(schema, values))


def _field_comments(schema: type) -> dict[str, str]:
    """Each field's comment in the source (on its line, or the comment lines above): the ``--help`` descriptions."""
    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # no source (a frozen build): help without descriptions
            continue
        above: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("# "))
                continue
            match = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", stripped)
            if match and not stripped.startswith(("def ", "class ", "RANGES")):
                comment = match.group(2) or " ".join(above)
                if comment:
                    comments[match.group(1)] = comment
            above = []
    return comments


# --------------------------------------------------------------------------- internals


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not a text file ({error.reason} at byte {error.start})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    return tree


def _build(schema: type[T], tree: dict[str, Any], prefix: str) -> T:
    hints = get_type_hints(schema)
    names = [field.name for field in dataclasses.fields(schema)]
    for key in tree:
        if key not in names:
            raise ConfigError(_unknown_key_message(schema, prefix, str(key)))
    values = {}
    for name in names:
        field_type = hints[name]
        where = f"{prefix}{name}"
        if dataclasses.is_dataclass(field_type):
            section = tree.get(name, {})
            if section is None:
                section = {}
            if not isinstance(section, dict):
                raise ConfigError(f"{where} must be a mapping of keys, got {section!r}")
            values[name] = _build(field_type, section, prefix=f"{where}.")
        elif name in tree:
            values[name] = _coerce(tree[name], field_type, where)
    built = schema(**values)
    for name, spec in field_ranges(schema).items():
        value = getattr(built, name)
        if in_range(value, spec):
            continue
        if isinstance(value, str):  # a set of names: say them, and the nearest one
            names = _set_items(spec)
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{prefix}{name} = {value!r} is not one of {', '.join(names)}{hint}")
        raise ConfigError(f"{prefix}{name} = {value!r} is out of range (allowed: {spec})")
    return built


def field_ranges(schema: type) -> dict[str, str]:
    """The ``RANGES`` of a section dataclass and of the classes it extends (the subclass wins)."""
    ranges: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        ranges.update(vars(cls).get("RANGES", {}))
    return ranges


def in_range(value: float, spec: str) -> bool:
    """Whether ``value`` satisfies ``">= a"``, ``"> a"``, ``"[a, b]"`` (any of ``[ ( ] )``) or ``"{a, b}"``."""
    spec = spec.strip()
    if spec.startswith("{") and isinstance(value, str):
        return value in _set_items(spec)
    if spec.startswith("{"):
        return value in {float(item) for item in _set_items(spec)}
    if spec[0] in "[(":
        low, high = (float(item) for item in spec[1:-1].split(","))
        above = low <= value if spec[0] == "[" else low < value
        below = value <= high if spec[-1] == "]" else value < high
        return above and below
    operator, bound = spec.split()
    return value >= float(bound) if operator == ">=" else value > float(bound)


def _set_items(spec: str) -> list[str]:
    """The items of a ``"{a, b, c}"`` range."""
    return [item.strip() for item in spec.strip()[1:-1].split(",")]


def _coerce(value: Any, expected: Any, where: str, text: bool = False) -> Any:
    """``value`` as a value of the field type ``expected``, or a ConfigError that says what was expected.

    Values from YAML must already have the type (only int -> float and list ->
    tuple are converted); with ``text`` the value is a command-line word and is
    parsed into the type (``true``/``no``, ``null``, ``2,3`` or ``[2, 3]``, ...).
    """
    origin = get_origin(expected)
    if expected is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(expected)
        says_none = value is None or (text and isinstance(value, str) and value.strip().lower() in _NONE)
        if type(None) in options and says_none:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where, text)
            except ConfigError:
                continue
        raise _type_error(where, expected, value)
    if origin is Literal:
        choices = get_args(expected)
        for choice in choices:
            if value == choice or (text and str(choice) == value):
                return choice
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if origin in (list, tuple):
        if text and isinstance(value, str):  # "[2, 3]" or "2,3"
            try:
                value = yaml.safe_load(value if value.strip().startswith("[") else f"[{value}]")
            except yaml.YAMLError:
                raise _type_error(where, expected, value) from None
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, expected, value)
        args = get_args(expected)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if expected is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _type_error(where, expected, value)
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise _type_error(where, expected, value)
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads "1e-4" (no dot) as a string; it is clearly meant as a number.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(where, expected, value)
    if expected is str:
        if isinstance(value, str):
            return value
        raise _type_error(where, expected, value)
    raise ConfigError(f"{where}: unsupported field type {expected!r}")  # a schema bug, said plainly


def _field_type(schema: type, path: list[str]) -> Any:
    """The declared type of the field at ``path``, or a ConfigError suggesting a valid key."""
    node: Any = schema
    for depth, name in enumerate(path):
        prefix = ".".join(path[:depth])
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"{prefix} is a value, not a section: cannot set {'.'.join(path)}")
        hints = get_type_hints(node)
        if name not in hints:
            raise ConfigError(_unknown_key_message(node, f"{prefix}." if prefix else "", name))
        node = hints[name]
    if dataclasses.is_dataclass(node):
        raise ConfigError(f"{'.'.join(path)} is a section; override one of its keys, e.g. --{'.'.join(path)}.KEY")
    return node


def _unknown_key_message(schema: type, prefix: str, key: str) -> str:
    valid = [field.name for field in dataclasses.fields(schema)]
    where = f"{prefix}{key}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return f"unknown config key {where!r}: did you mean '{prefix}{close[0]}'?"
    return f"unknown config key {where!r}; valid keys here: {', '.join(prefix + name for name in valid)}"


def _type_error(where: str, expected: Any, value: Any) -> ConfigError:
    return ConfigError(f"{where} must be {_type_name(expected)}, got {value!r}")


def _type_name(expected: Any) -> str:
    origin = get_origin(expected)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(expected))
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in get_args(expected))
    if origin in (list, tuple):
        args = [a for a in get_args(expected) if a is not Ellipsis]
        return f"a list of {_type_name(args[0])}" if args else "a list"
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclasses.dataclass
class CropDataConfig:
    """The ``data`` fields every training loop reads (crops and their loading); each stage extends it."""

    RANGES: ClassVar[dict[str, str]] = {
        "scale": "{2, 3, 4}",
        "crop_size": ">= 4",
        "num_workers": ">= 0",
        "seed": ">= 0",
    }

    scale: int = 4  # super-resolution factor: HR size = LR size * scale
    crop_size: int = 32  # LR crop size; the HR crop is crop_size * scale
    num_workers: int = 2  # DataLoader worker processes (0: load in the training process)
    storage: Literal["auto", "memory", "memmap"] = "auto"  # memmap: decoded once to ~/.cache, mapped
    seed: int = 0  # the crops drawn and the noise sampled for them


@dataclasses.dataclass
class TrainLoopConfig:
    """The ``train`` fields every training loop reads; each stage extends it."""

    RANGES: ClassVar[dict[str, str]] = {
        "n_iter": ">= 1",
        "batch_size": ">= 1",
        "lr": "> 0",
        "warmup_iter": ">= 0",
        "gamma": "> 0",
        "grad_clip": "> 0",
        "save_every": ">= 1",
        "log_every": ">= 1",
        "keep_last": ">= 0",
        "max_bad_steps": ">= 1",
        "seed": ">= 0",
        "cpu_threads": ">= 0",
    }

    n_iter: int = 20000  # training steps in all (a resume continues to this step)
    batch_size: int = 16  # crops per step (per process under torchrun)
    lr: float = 2e-4  # peak learning rate (Adam)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_iter: int = 100  # steps of linear warmup to the peak rate
    milestones: list[int] = dataclasses.field(default_factory=list)  # multistep: steps where the rate drops
    gamma: float = 0.5  # multistep: the factor of each drop
    grad_clip: float = 10.0  # gradient norm clipped to this
    save_every: int = 1000  # steps between checkpoints (and one at the end)
    log_every: int = 100  # steps between log lines and TensorBoard points
    keep_last: int = 3  # numbered checkpoints kept besides last.pt (0: last.pt only)
    max_bad_steps: int = 20  # non-finite steps in a row that stop the run
    seed: int = 0  # weights' initialisation and the global RNG
    device: str = "auto"  # auto (CUDA when there is one), cpu or cuda
    cpu_threads: int = 0  # on the CPU: intra-op threads (0: the cores split between the trainings running)
    amp: bool = False  # bf16 autocast where it is numerically safe (CUDA, and CPUs with bf16 instructions)
    compile: bool = False  # torch.compile the model (the first steps are slow while it compiles)
