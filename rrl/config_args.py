"""Config dataclasses as command lines: every flag is a config field, its docstring is the help.

One convention for every `rrl train` subcommand (CleanRL's, with nesting):

    --eval-episodes 50                   a field of the config (underscores become dashes)
    --learner.policy-lr 3e-4             a field of a nested config dataclass
    --frames 60000                       ... or of a flattened one (`flatten=("train",)`: train.frames)
    --residual / --no-residual           a bool field
    --hidden 256 256                     a tuple field
    --expert-variant none                an optional field set to None
    --config run.yaml                    a YAML file of fields (nested mappings for nested configs)

Precedence: the dataclass defaults, then the `--config` file, then the flags given. Only the flags
actually given override (their argparse defaults are suppressed), and the result is built by the
config class itself, so its `__post_init__` validates the whole. A required field (no default)
must come from the file or a flag; a YAML key that is no field is refused with its name and the
closest known ones.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Mapping

NONE_WORDS = ("none", "null", "None")


class ConfigError(ValueError):
    """A configuration that cannot be built (unknown key, wrong type, invalid value); the message says which."""


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal right after each field), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant) \
                    and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap_optional(tp) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar(tp, text: str, optional: bool, flag: str):
    if optional and text in NONE_WORDS:
        return None
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"{flag}: expected true or false, got {text!r}")
    try:
        return tp(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{flag}: expected {getattr(tp, '__name__', tp)}, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                         skip: tuple[str, ...] = (), flatten: tuple[str, ...] = (), _flag_prefix: str | None = None) -> None:
    """Add one flag per field of dataclass `cls` (recursively for nested dataclasses); see the module docstring.

    `flatten` names nested config fields (dotted from `cls`: `train`, `train.learner`) whose fields get
    flags without the nesting (`--frames` for `train.frames`); the config still nests them. A field
    name that two flattened levels share is a conflicting flag (argparse refuses it when building)."""
    flag_prefix = prefix if _flag_prefix is None else _flag_prefix
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{cls.__name__} ({prefix.rstrip('.') or 'run'})") if prefix else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        dest = prefix + f.name
        flag = "--" + flag_prefix + f.name.replace("_", "-")
        help_text = docs.get(f.name, "")
        if dataclasses.is_dataclass(tp):
            nested_flags = flag_prefix if dest in flatten else flag_prefix + f.name + "."
            add_config_arguments(parser, tp, prefix=dest + ".", flatten=flatten, _flag_prefix=nested_flags)
            continue
        default = _default_of(f)
        shown = "required" if default is dataclasses.MISSING else f"default {default!r}"
        help_text = f"{help_text} ({shown})".strip().replace("%", "%%")
        origin = typing.get_origin(tp)
        if tp is bool and not optional:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        elif origin in (tuple, list):
            item = (typing.get_args(tp) or (str,))[0]
            group.add_argument(flag, dest=dest, nargs="+", metavar=getattr(item, "__name__", "X").upper(),
                               type=lambda text, item=item, flag=flag: _scalar(item, text, False, flag),
                               default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            group.add_argument(flag, dest=dest, choices=choices, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, dest=dest, metavar=getattr(tp, "__name__", "X").upper(),
                               type=lambda text, tp=tp, optional=optional, flag=flag: _scalar(tp, text, optional, flag),
                               default=argparse.SUPPRESS, help=help_text)


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return "(nested)"
    return dataclasses.MISSING


def overrides_from_args(args: argparse.Namespace, cls: type, prefix: str = "") -> dict:
    """The fields given on the command line, as a nested dict (only flags that were given)."""
    out: dict = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dest = prefix + f.name
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            nested = overrides_from_args(args, tp, dest + ".")
            if nested:
                out[f.name] = nested
        elif hasattr(args, dest):
            out[f.name] = getattr(args, dest)
    return out


def load_yaml_config(path: str | Path) -> dict:
    """A `--config` file: a YAML mapping of fields. Errors name the file (and the line for bad YAML)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def merge(base: Mapping, override: Mapping) -> dict:
    """`override` on top of `base`, recursively for nested mappings."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def build_config(cls: type, values: Mapping, where: str = "config"):
    """Instantiate dataclass `cls` from a nested mapping; unknown keys, wrong types and invalid values raise ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in known]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(known), n=3)
        hint = f"; did you mean {close}?" if close else f"; known: {sorted(known)}"
        raise ConfigError(f"{where}: unknown field {k!r}{hint}")
    kwargs = {}
    for name, value in values.items():
        tp, optional = _unwrap_optional(hints[name])
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[name] = build_config(tp, value, f"{where}.{name}")
        elif typing.get_origin(tp) in (tuple,) and isinstance(value, (list, tuple)):
            kwargs[name] = tuple(value)
        elif tp is float and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = float(value)
        else:
            if value is not None and tp in (int, float, str, bool) and not isinstance(value, tp):
                raise ConfigError(f"{where}.{name}: expected {tp.__name__}, got {value!r}")
            if value is None and not optional:
                raise ConfigError(f"{where}.{name}: may not be null")
            kwargs[name] = value
    missing = [n for n, f in known.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing} (give --{missing[0].replace('_', '-')} or put it in --config)")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def config_from_args(cls: type, args: argparse.Namespace, config_path: str | None = None):
    """Defaults < `--config` YAML < flags given, built and validated by `cls` (ConfigError otherwise)."""
    values = load_yaml_config(config_path) if config_path else {}
    where = f"--config {config_path}" if config_path else cls.__name__
    return build_config(cls, merge(values, overrides_from_args(args, cls)), where)


def config_to_dict(config) -> dict:
    """A config as plain YAML-able data (tuples become lists)."""
    def plain(x):
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return plain(dataclasses.asdict(config))
