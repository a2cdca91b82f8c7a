"""Settings declared once: every option is a field of a frozen dataclass that says all there is to know about it.

A stage's settings (and each collect source's option group) is an ``Options`` dataclass whose fields are made with
``option(...)``: the flag, the type (the field's annotation), the default, the environment variable read when the
flag is not given, bounds or choices, the help text, whether the option changes what the stage produces (so it goes
into the cache key and the manifest) and which workflow parameter, if any, carries it in the DAG. From those
declarations this module derives the argument parser, the conversion and validation (once, with a one-line
``UsageError`` naming the flag), the cache-key parameters (``result_params``), the YAML config reading and the
option reference; ``pipeline.dag`` derives the workflow parameters. Nothing else reads ``os.environ``.

Argo passes every declared argument, so an empty value always means "not set": the environment, then the default,
applies. The settings every stage shares are ``CommonSettings``: ``IRMSIA_STORE`` (store URI), ``IRMSIA_WORKFLOW_ID``
(set by Argo to the workflow name), ``IRMSIA_LOG_FORMAT``, ``IRMSIA_PUSHGATEWAY``, ``IRMSIA_PUSH_INTERVAL`` and
``IRMSIA_METRICS_FILE`` and ``IRMSIA_PROGRESS_FILE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self

from jobs.core.errors import UsageError
from jobs.core.store import DEFAULT_STORE

LOG_FORMATS = ("auto", "text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Required:
    """The default of an option that has none (``dataclasses.MISSING`` cannot be a dataclass field's default)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True, kw_only=True)
class Option:
    """What one setting is: its flag, type, default, environment variable, bounds, help and role."""

    help: str
    """One line for ``--help``, the Argo UI and the option reference."""
    flag: str | None = ""
    """The command-line flag; ``""`` means ``--<field-name-in-kebab-case>``, ``None`` an environment-only setting."""
    env: str | None = None
    """Environment variable read when the flag is not given (or empty)."""
    minimum: float | None = None
    """Smallest allowed value (inclusive)."""
    maximum: float | None = None
    """Largest allowed value (inclusive)."""
    above: float | None = None
    """The value must be greater than this (an exclusive lower bound, for rates and sizes)."""
    choices: tuple[str, ...] = ()
    """The allowed values of a choice."""
    hint: str | None = None
    """What to tell the user when the value is out of bounds, instead of the bounds themselves."""
    result: bool = False
    """Changes what the stage produces: goes into the cache key and the manifest's ``params``."""
    parameter: str | None = None
    """The workflow parameter that carries it in the DAG (``irmsia run`` flag, Argo parameter); ``None``: none."""
    parse: Callable[[str], Any] | None = None
    """Turns the flag's text into the value, for types the annotation does not say how to read."""
    check: Callable[[Any, str], object] | None = None
    """Extra validation: called with the value and the flag, raises ``UsageError`` when the value is wrong."""
    secret: bool = False
    """The value may hold credentials: never in ``repr``, ``--help`` defaults or the option reference, and the local
    runner passes it in ``env`` instead of on the command line (where every user of the machine can read it)."""
    const: str | None = None
    """The value of the flag given alone (``--resume`` means ``required``); ``None``: the flag takes a value."""
    negative: str | None = None
    """The value ``--no-<flag>`` stands for (``--no-resume``: ``off``); booleans get ``--no-<flag>`` anyway."""
    metavar: str | None = None
    # Filled in when the option is read off its dataclass (``options_of``).
    name: str = ""
    kind: Any = None
    default: Any = REQUIRED
    computed: bool = False
    """The default is computed when the settings are made (it may differ between machines)."""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def label(self) -> str:
        """How messages name the option: its flag, else its environment variable, else its field."""
        return self.flag or self.env or self.name

    @property
    def is_bool(self) -> bool:
        return _base(self.kind) is bool


def option(
    default: Any = REQUIRED,
    *,
    help: str,
    default_factory: Callable[[], Any] | None = None,
    **declared: Any,
) -> Any:
    """A settings field: ``epochs: int = option(10, help="maximum epochs", minimum=1, result=True)``."""
    meta = Option(help=help, **declared)
    repr_ = not meta.secret
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"option": meta}, repr=repr_)
    if default is REQUIRED:
        return field(metadata={"option": meta}, repr=repr_)
    return field(default=default, metadata={"option": meta}, repr=repr_)


def _base(kind: Any) -> Any:
    """``int`` for ``int | None``: the type an optional option holds when set."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def _optional(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


_OPTIONS: dict[type, tuple[Option, ...]] = {}


def options_of(cls: type) -> tuple[Option, ...]:
    """Every option field of dataclass ``cls`` (inherited ones first), with name, type and default filled in."""
    if (known := _OPTIONS.get(cls)) is not None:
        return known
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else REQUIRED
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        flag = meta.flag if meta.flag is None or meta.flag else "--" + f.name.replace("_", "-")
        computed = f.default_factory is not dataclasses.MISSING
        found.append(
            dataclasses.replace(meta, name=f.name, kind=hints[f.name], default=default, flag=flag, computed=computed)
        )
    _OPTIONS[cls] = tuple(found)
    return _OPTIONS[cls]


# -- reading values ----------------------------------------------------------------------------------------------
def _number(text: str, kind: type, label: str) -> int | float:
    try:
        return kind(text)
    except ValueError as exc:
        expected = "a whole number" if kind is int else "a number"
        raise UsageError(f"{label} {text!r}: expected {expected}") from exc


def _bool(value: Any, label: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{label}: {value!r} is not true or false")


def convert(opt: Option, value: Any) -> Any:
    """A flag's text (or a YAML value) as the option's type; ``UsageError`` naming the option when it is not one."""
    kind = _base(opt.kind)
    if opt.parse is not None:
        return opt.parse(value if isinstance(value, str) else _as_text(value))
    if kind is bool:
        return _bool(value, opt.label)
    if kind in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"{opt.label} {value!r}: expected {'a whole number' if kind is int else 'a number'}")
        if isinstance(value, int | float) and (kind is float or isinstance(value, int)):
            return kind(value)
        return _number(str(value).strip(), kind, opt.label)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = value if isinstance(value, list | tuple) else [v for v in str(value).split(",") if v.strip()]
        if item is str:
            return tuple(str(v).strip() for v in items)
        return tuple(_number(str(v).strip(), item, opt.label) for v in items)
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"{opt.label}: expected a string, got {value!r}")
        return str(value).strip()
    raise TypeError(f"option {opt.name}: no conversion for type {opt.kind!r}")


def _as_text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def _bound(value: float, kind: Any) -> str:
    return str(float(value)) if _base(kind) is float else str(int(value))


def check_value(opt: Option, value: Any) -> None:
    """Choices, bounds and the option's own check; ``UsageError`` naming the option and what is allowed."""
    if value is None:
        if not _optional(opt.kind):
            raise UsageError(f"{opt.label} is required: {opt.help}")
        return
    if opt.choices and value not in opt.choices:
        raise UsageError(f"{opt.label} {value!r}: use one of {', '.join(opt.choices)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = opt.minimum, opt.maximum
        shown = f"{opt.label} {value}"
        inside = (
            (opt.above is None or value > opt.above)
            and (low is None or value >= low)
            and (high is None or value <= high)
        )
        if not inside and opt.hint:
            raise UsageError(f"{shown}: {opt.hint}")
        if opt.above is not None and not value > opt.above:
            raise UsageError(f"{shown}: must be greater than {_bound(opt.above, opt.kind)}")
        if low is not None and high is not None and not low <= value <= high:
            raise UsageError(f"{shown}: must be between {_bound(low, opt.kind)} and {_bound(high, opt.kind)}")
        if low is not None and value < low:
            raise UsageError(f"{shown}: use at least {_bound(low, opt.kind)}")
        if high is not None and value > high:
            raise UsageError(f"{shown}: use at most {_bound(high, opt.kind)}")
    if opt.check is not None:
        opt.check(value, opt.label)


def is_given(value: Any) -> bool:
    """Whether a flag was really given: Argo passes every argument, and an empty one means "not set"."""
    return value is not None and not (isinstance(value, str) and not value.strip())


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every settings dataclass: validates each option field once, at construction.

    Subclasses put cross-field checks in ``validate`` (called after every field passed its own checks).
    """

    def __post_init__(self) -> None:
        for opt in options_of(type(self)):
            check_value(opt, getattr(self, opt.name))
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields; raise ``UsageError`` naming the flags."""

    # -- derived -----------------------------------------------------------------------------------------------
    def result_params(self) -> dict[str, Any]:
        """The options that change the result, as JSON values (the cache key's and manifest's ``params``)."""
        return {o.name: _jsonable(getattr(self, o.name)) for o in options_of(type(self)) if o.result}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | Any, seen: set[str] | None = None) -> None:
        """Register every flag of ``cls`` (skipping flags in ``seen``, which it updates)."""
        seen = set() if seen is None else seen
        for opt in options_of(cls):
            if opt.flag is None or opt.flag in seen:
                continue
            seen.add(opt.flag)
            text = opt.help + (f" (env {opt.env})" if opt.env else "")
            if not opt.required and opt.default not in (None, "", ()) and not opt.secret:
                text += f" (default {_as_text(opt.default) if not isinstance(opt.default, bool) else opt.default})"
            if opt.is_bool:
                parser.add_argument(opt.flag, dest=opt.name, nargs="?", const="true", default=None, help=text)
                parser.add_argument(
                    "--no-" + opt.flag[2:], dest=opt.name, action="store_const", const="false", help=argparse.SUPPRESS
                )
            else:
                nargs: dict[str, Any] = {"nargs": "?", "const": opt.const} if opt.const is not None else {}
                parser.add_argument(opt.flag, dest=opt.name, default=None, metavar=opt.metavar, help=text, **nargs)
                if opt.negative is not None:
                    parser.add_argument(
                        "--no-" + opt.flag[2:],
                        dest=opt.name,
                        action="store_const",
                        const=opt.negative,
                        help=f"same as {opt.flag} {opt.negative}",
                    )

    @classmethod
    def values_from(
        cls,
        flags: Mapping[str, Any],
        env: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
        *,
        skip: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Typed values of ``cls``'s options: a given flag, else the config file's value, else the environment
        variable, else nothing (the field's default applies). Names in ``skip`` are left to the caller."""
        values: dict[str, Any] = {}
        skipped = set(skip)
        for opt in options_of(cls):
            if opt.name in skipped:
                continue
            raw = flags.get(opt.name) if opt.flag is not None else None
            if is_given(raw):
                values[opt.name] = convert(opt, raw)
            elif config is not None and opt.name in config and config[opt.name] is not None:
                values[opt.name] = convert(opt, config[opt.name])
            elif opt.env and is_given(env.get(opt.env)):
                values[opt.name] = convert(opt, env[opt.env])
        return values

    @classmethod
    def build(cls, values: Mapping[str, Any], **fixed: Any) -> Self:
        """``cls(**values, **fixed)``, with a missing required option reported as the usage error it is."""
        for opt in options_of(cls):
            if opt.required and opt.name not in values and opt.name not in fixed:
                raise UsageError(f"{opt.label} is required: {opt.help}")
        return cls(**values, **fixed)

    @classmethod
    def config_keys(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A config mapping's keys (``image-size`` or ``image_size``) as option names; unknown keys are errors."""
        names = {o.name for o in options_of(cls) if o.flag is not None}
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise UsageError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(names))}")
            out[name] = value
        return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class StageArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as ``UsageError`` (exit 2, one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see {self.prog} --help")


# -- the settings every stage shares -----------------------------------------------------------------------------
def _upper(text: str) -> str:
    return text.strip().upper()


@dataclass(frozen=True, kw_only=True)
class S3Options(Options):
    """How long the S3 store waits for a silent endpoint, and how often it tries again: the bounds that turn a
    stalled S3 server into exit 75 within a minute (botocore's 60 s / 60 s / 5 attempts held a stage about six
    minutes on an endpoint that accepts connections but never answers). At most about attempts x read timeout
    plus botocore's backoff."""

    connect_timeout_s: float = option(
        5.0,
        flag=None,
        env="IRMSIA_S3_CONNECT_TIMEOUT",
        above=0.0,
        maximum=3600.0,
        hint="use a number of seconds between 0 and 3600",
        help="seconds to wait for a connection to the S3 endpoint",
    )
    read_timeout_s: float = option(
        15.0,
        flag=None,
        env="IRMSIA_S3_READ_TIMEOUT",
        above=0.0,
        maximum=3600.0,
        hint="use a number of seconds between 0 and 3600",
        help="seconds to wait for each S3 response or chunk of one",
    )
    attempts: int = option(
        3,
        flag=None,
        env="IRMSIA_S3_ATTEMPTS",
        minimum=1,
        maximum=20,
        hint="use a whole number from 1 to 20",
        help="tries per S3 request, the first included",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Options:
        """The options from the ``IRMSIA_S3_*`` variables (unset or empty: the default)."""
        return cls.build(cls.values_from({}, env))


@dataclass(frozen=True, kw_only=True)
class CommonSettings(Options):
    """What every stage takes besides its own parameters."""

    store: str = option(DEFAULT_STORE, env="IRMSIA_STORE", help="store URI: s3://bucket/prefix, file:///path or a path")
    force: bool = option(False, help="recompute even when the cache key matches the stored manifest")
    log_format: str = option(
        "auto",
        env="IRMSIA_LOG_FORMAT",
        choices=LOG_FORMATS,
        help="auto (text on a terminal, JSON lines otherwise), text or json",
    )
    log_level: str = option("INFO", choices=LOG_LEVELS, parse=_upper, help="DEBUG, INFO, WARNING or ERROR")
    workflow_id: str | None = option(
        None, flag=None, env="IRMSIA_WORKFLOW_ID", help="the Argo workflow name, put on every log line and metric"
    )
    pushgateway: str | None = option(
        None, flag=None, env="IRMSIA_PUSHGATEWAY", help="Pushgateway address; metrics are pushed there when set"
    )
    push_interval_s: float = option(
        30.0,
        flag=None,
        env="IRMSIA_PUSH_INTERVAL",
        above=0.0,
        hint="use a positive number of seconds",
        help="seconds between metric pushes during the stage",
    )
    metrics_port: int | None = option(
        None,
        minimum=0,
        maximum=65535,
        hint="use a TCP port number 0-65535 (0 picks a free one)",
        help="serve Prometheus metrics over HTTP on this port while running (0 picks a free one)",
    )
    s3: S3Options = field(default_factory=S3Options)
    """The S3 store's timeouts and retry budget (environment only)."""
    metrics_file: str | None = option(
        None, env="IRMSIA_METRICS_FILE", help="write Prometheus metrics in the text format to this file at the end"
    )
    progress_file: str | None = option(
        None,
        flag=None,
        env="IRMSIA_PROGRESS_FILE",
        help="append progress events (JSON lines) to this file for an orchestrator to draw, instead of drawing bars",
    )

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], env: Mapping[str, str]) -> CommonSettings:
        """The common settings from parsed flags and the environment (the S3 bounds from the environment)."""
        return cls.build(cls.values_from(flags, env), s3=S3Options.from_env(env))


@dataclass(frozen=True, kw_only=True)
class StageSettings(Options):
    """Base of a stage's settings: its own options plus ``common``; ``parse`` reads both from flags and env."""

    prog: ClassVar[str] = "irmsia-stage"
    """The console script, for ``--help`` and usage errors."""
    about: ClassVar[str] = ""
    """One line for the top of --help."""
    common: CommonSettings = field(default_factory=CommonSettings)

    @classmethod
    def parser(cls) -> StageArgumentParser:
        """The stage's argument parser: its options, then the common ones."""
        parser = StageArgumentParser(prog=cls.prog, description=cls.about)
        seen: set[str] = set()
        cls.add_arguments(parser, seen)
        cls.add_extra_arguments(parser, seen)
        CommonSettings.add_arguments(parser.add_argument_group("common"), seen)
        return parser

    @classmethod
    def add_extra_arguments(cls, parser: StageArgumentParser, seen: set[str]) -> None:
        """Flags beyond the class's own options (a collect source's option groups, train's ``--config``)."""

    @classmethod
    def option_groups(cls) -> tuple[type[Options], ...]:
        """The option classes the stage reads: its own, then any others (collect: every source's group)."""
        return (cls,)

    @classmethod
    def parse(cls, argv: Sequence[str], env: Mapping[str, str]) -> Self:
        """Flags and environment -> validated settings (``UsageError`` naming the bad flag)."""
        flags = vars(cls.parser().parse_args(list(argv)))
        return cls.from_flags(flags, env)

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], env: Mapping[str, str]) -> Self:
        """Settings from parsed flags (option name -> text) and the environment; stages with more sources of
        values (a config file, source option groups) override this."""
        return cls.build(cls.values_from(flags, env), common=CommonSettings.from_flags(flags, env))

    def log_fields(self) -> dict[str, str | None]:
        """What every log line and metric of the stage is labelled with besides the stage (dataset, run id)."""
        return {"dataset": None, "run_id": None}

    def metrics_group(self) -> dict[str, str]:
        """Labels that set this run's Pushgateway group apart from the stage's other runs in one workflow, when
        several tasks of one stage run in it (train's fold trainings and their aggregate); none by default."""
        return {}


def log_format_from(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The log format before settings are parsed (for reporting a usage error): ``--log-format`` when it names a
    valid format, else ``IRMSIA_LOG_FORMAT``, else ``auto``; the last ``--log-format`` wins, as in argparse."""
    chosen = None
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--log-format="):
            chosen = arg.split("=", 1)[1]
    if chosen in LOG_FORMATS:
        return chosen
    return env.get("IRMSIA_LOG_FORMAT") or "auto"


def ratio_list(count: int) -> Callable[[str], tuple[float, ...]]:
    """A ``parse`` for ``"0.7,0.15,0.15"``: ``count`` numbers, each in [0, 1], summing to 1 (within 1e-6)."""

    def parse(text: str) -> tuple[float, ...]:
        flag = "--ratios"
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError as exc:
            raise UsageError(f"{flag} {text!r}: expected {count} comma-separated numbers like 0.7,0.15,0.15") from exc
        if len(values) != count or any(not 0.0 <= v <= 1.0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise UsageError(f"{flag} {text!r}: expected {count} numbers in [0, 1] that sum to 1")
        return values

    return parse


def option_reference(cls: type, title: str) -> str:
    """A Markdown table of ``cls``'s options (flag, environment, default, what it does), for the docs."""
    lines = [
        f"### {title}",
        "",
        "| flag | env | default | changes result | workflow parameter | what it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for opt in options_of(cls):
        if opt.required:
            default = "required"
        elif opt.computed:
            default = "(see what it is)"
        else:
            default = "" if opt.secret or opt.default is None else _as_text(opt.default)
        flag = f"`{opt.flag}`" if opt.flag else ""
        env = f"`{opt.env}`" if opt.env else ""
        parameter = f"`{opt.parameter}`" if opt.parameter else ""
        bounds = []
        if opt.choices:
            bounds.append("one of " + ", ".join(f"`{c}`" for c in opt.choices))
        for word, value in (("≥", opt.minimum), ("≤", opt.maximum), (">", opt.above)):
            if value is not None:
                bounds.append(f"{word} {_bound(value, opt.kind)}")
        text = opt.help + (f" ({'; '.join(bounds)})" if bounds else "")
        lines.append(f"| {flag} | {env} | {default} | {'yes' if opt.result else ''} | {parameter} | {text} |")
    return "\n".join(lines) + "\n"
