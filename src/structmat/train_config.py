"""``TrainConfig``: the settings of a training run, how unset ones are filled in,
and how a saved run's settings are read back and compared.

A setting left ``None`` is filled by ``TrainConfig.resolved()`` from, in order
(later wins): ``GLOBAL_DEFAULTS``, the task's ``TaskSpec.defaults``, its
``TaskSpec.mixer_defaults[model]``, then whatever the caller set explicitly.
config.json and checkpoints hold the resolved values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from structmat._checks import check_choice, check_positive_int, fail
from structmat.models import MIXERS
from structmat.models.norms import NORMS
from structmat.tasks import TASKS

__all__ = [
    "DEFAULTABLE",
    "GLOBAL_DEFAULTS",
    "IDENTITY",
    "SCHEDULES",
    "TrainConfig",
    "config_from_dict",
    "default_settings",
    "read_config_json",
    "same_run",
]

SCHEDULES = ("cosine", "constant")

# The fallback for every setting a task or mixer may default. ssm_lr None means
# min(lr, 1e-3) (S4 App. D.2), derived after lr is known.
GLOBAL_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "length": None,  # always given by the task (TaskSpec.default_length)
        "steps": 1000,
        "batch_size": 32,
        "lr": 5e-3,
        "ssm_lr": None,
        "weight_decay": 0.01,
        "warmup": 20,
        "schedule": "cosine",
        "d_model": 64,
        "layers": 2,
        "d_state": 64,
        "dt_min": 1e-3,
        "dt_max": 1e-1,
        "prenorm": True,
        "normalization": "layer",
        "dropout": 0.0,
        "pool": None,  # always given by the task (TaskSpec.pool)
        "eval_every": 100,
        "train_size": 4000,
        "val_size": 256,
        "test_size": 512,
    }
)
DEFAULTABLE = tuple(GLOBAL_DEFAULTS)

# Settings that must match between a saved run and the run resuming it.
IDENTITY = (
    "task",
    "model",
    "length",
    "steps",
    "minutes",
    "batch_size",
    "lr",
    "ssm_lr",
    "weight_decay",
    "warmup",
    "schedule",
    "d_model",
    "layers",
    "d_state",
    "dt_min",
    "dt_max",
    "prenorm",
    "normalization",
    "dropout",
    "pool",
    "seed",
    "train_size",
)

# Settings added after format-1 checkpoints: a saved run without them ran with these.
_LEGACY = {
    "minutes": None,
    "ssm_lr": None,
    "schedule": "cosine",
    "d_state": 64,
    "dt_min": 1e-3,
    "dt_max": 1e-1,
    "prenorm": True,
    "normalization": "layer",
}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved (resolved) as ``config.json`` and in checkpoints.

    ``None`` means "the task's or the global default" (see ``resolved``), except for
    ``minutes`` (no time budget), ``stop_after``, ``threads`` and ``tensorboard``.
    """

    # Defaults: S4D on copying at L = 512 learns well above chance (12.5%) in ~3 min on 2 cores.
    task: str = "copying"
    model: str = "s4d"
    length: int | None = None
    steps: int | None = None
    minutes: float | None = None  # time budget: plans `steps` from a measured step time
    batch_size: int | None = None
    lr: float | None = None
    ssm_lr: float | None = None  # lr of the S4 parameters; default min(lr, 1e-3)
    weight_decay: float | None = None
    warmup: int | None = None
    schedule: str | None = None  # "cosine" | "constant" (both after a linear warm-up)
    d_model: int | None = None
    layers: int | None = None
    d_state: int | None = None  # S4 state size N
    dt_min: float | None = None  # S4 initial step sizes: log-uniform in [dt_min, dt_max]
    dt_max: float | None = None
    prenorm: bool | None = None  # pre-norm (True) or post-norm blocks
    normalization: str | None = None  # "layer" | "batch" (structmat.models.norms)
    dropout: float | None = None
    pool: str | None = None  # "mean" | "last"
    seed: int = 0
    eval_every: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    out: str = "runs/latest"
    resume: bool = False
    stop_after: int | None = None
    threads: int | None = None
    tensorboard: str | None = None  # directory for TensorBoard event files

    IDENTITY = IDENTITY

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (unset ones are skipped)."""
        check_choice(self.task, "task", list(TASKS))
        check_choice(self.model, "model", list(MIXERS))
        _validate_values(asdict(self))

    def resolved(self) -> TrainConfig:
        """A copy with every unset setting filled in (see the module docstring).

        ``steps`` stays None under a time budget (``minutes``): ``train`` plans it.

        Raises:
            ValueError: ``minutes`` and ``steps`` both set.
        """
        if self.minutes is not None and self.steps is not None:
            raise fail(
                "minutes",
                "either a time budget or --steps, not both (the budget plans the steps)",
                f"--minutes {self.minutes} with --steps {self.steps}",
            )
        explicit = {k: getattr(self, k) for k in DEFAULTABLE if getattr(self, k) is not None}
        settings = {**default_settings(self.task, self.model), **explicit}
        if settings["ssm_lr"] is None:
            settings["ssm_lr"] = min(settings["lr"], 1e-3)
        if self.minutes is not None:
            settings["steps"] = None
        return replace(self, **settings)


def default_settings(task: str, model: str) -> dict[str, Any]:
    """Every defaultable setting of ``model`` on ``task`` before explicit values:
    ``GLOBAL_DEFAULTS``, then ``TASKS[task]`` (length, pool, ``defaults``), then
    ``TASKS[task].mixer_defaults[model]``; later layers win.

    Raises:
        ValueError: an unknown task or model, or a spec naming an unknown setting.
    """
    check_choice(task, "task", list(TASKS))
    check_choice(model, "model", list(MIXERS))
    spec = TASKS[task]
    layers = [
        GLOBAL_DEFAULTS,
        {"length": spec.default_length, "pool": spec.pool},
        spec.defaults,
        spec.mixer_defaults.get(model, {}),
    ]
    settings: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in GLOBAL_DEFAULTS:
                wanted = f"defaults naming settings of TrainConfig ({', '.join(DEFAULTABLE)})"
                raise fail(f"TASKS[{task!r}]", wanted, repr(key))
            settings[key] = value
    return settings


def _validate_values(values: Mapping[str, Any]) -> None:
    """Check each setting that is not None (shared by configs built and configs read)."""
    ints: tuple[str, ...] = ("steps", "batch_size", "d_model", "layers", "eval_every")
    ints = (*ints, "train_size", "val_size", "test_size", "length", "stop_after", "threads")
    for name in ints:
        if values.get(name) is not None:
            check_positive_int(values[name], name)
    if values.get("warmup") is not None:
        check_positive_int(values["warmup"], "warmup", minimum=0)
    check_positive_int(values.get("seed"), "seed", minimum=0)
    if values.get("d_state") is not None:
        check_positive_int(values["d_state"], "d_state")
        if values["d_state"] % 2:
            raise fail(
                "d_state", "an even state size (conjugate pairs of modes)", repr(values["d_state"])
            )
    for name, wanted in (
        ("lr", "a positive learning rate"),
        ("ssm_lr", "a positive learning rate"),
        ("minutes", "a positive, finite number of minutes"),
        ("dt_min", "a positive, finite step size"),
        ("dt_max", "a positive, finite step size"),
    ):
        value = values.get(name)
        if value is not None and not (_is_number(value) and value > 0 and math.isfinite(value)):
            raise fail(name, wanted, repr(value))
    if values.get("dt_min") is not None and values.get("dt_max") is not None:
        if not values["dt_min"] <= values["dt_max"]:
            raise fail(
                "dt_max", f"a step size >= dt_min = {values['dt_min']}", repr(values["dt_max"])
            )
    wd = values.get("weight_decay")
    if wd is not None and not (_is_number(wd) and wd >= 0 and math.isfinite(wd)):
        raise fail("weight_decay", "a number >= 0", repr(wd))
    dropout = values.get("dropout")
    if dropout is not None and not (_is_number(dropout) and 0.0 <= dropout < 1.0):
        raise fail("dropout", "a probability in [0, 1)", repr(dropout))
    if values.get("pool") is not None:
        check_choice(values["pool"], "pool", ["mean", "last"])
    if values.get("schedule") is not None:
        check_choice(values["schedule"], "schedule", list(SCHEDULES))
    if values.get("normalization") is not None:
        check_choice(values["normalization"], "normalization", list(NORMS))
    if values.get("prenorm") is not None and not isinstance(values["prenorm"], bool):
        raise fail("prenorm", "True or False", repr(values["prenorm"]))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- reading a saved run's settings -------------------------------------------------

# JSON type of each field: "int", "float" (an int is accepted), "str", "bool";
# a trailing "?" allows null.
_TYPES = {
    "task": "str",
    "model": "str",
    "length": "int",
    "steps": "int",
    "minutes": "float?",
    "batch_size": "int",
    "lr": "float",
    "ssm_lr": "float",
    "weight_decay": "float",
    "warmup": "int",
    "schedule": "str",
    "d_model": "int",
    "layers": "int",
    "d_state": "int",
    "dt_min": "float",
    "dt_max": "float",
    "prenorm": "bool",
    "normalization": "str",
    "dropout": "float",
    "pool": "str",
    "seed": "int",
    "eval_every": "int?",
    "train_size": "int",
    "val_size": "int?",
    "test_size": "int?",
    "out": "str?",
    "resume": "bool?",
    "stop_after": "int?",
    "threads": "int?",
    "tensorboard": "str?",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}


def config_from_dict(saved: Any, source: str) -> TrainConfig:
    """The resolved ``TrainConfig`` of a saved run (config.json or a checkpoint's config).

    Settings added since format-1 checkpoints take the values those runs used.

    Args:
        saved: the parsed JSON object / checkpoint entry.
        source: where it came from, for the error message (e.g. ``"runs/a/config.json"``).

    Raises:
        ValueError: ``resume: expected a valid run configuration in <source>, got ...``
            for a non-object, a missing or mistyped setting, or a value out of range.
    """

    def bad(got: str) -> ValueError:
        return fail("resume", f"a valid run configuration in {source}", got)

    if not isinstance(saved, dict):
        raise bad(f"a JSON {type(saved).__name__} instead of an object")
    values = {**_LEGACY, **saved}
    if values["ssm_lr"] is None and _is_number(values.get("lr")):
        values["ssm_lr"] = min(values["lr"], 1e-3)  # format-1 runs: the derived default
    kwargs: dict[str, Any] = {}
    for f in fields(TrainConfig):
        kind = _TYPES[f.name]
        nullable, kind = kind.endswith("?"), kind.rstrip("?")
        if f.name not in values:
            if not nullable:
                raise bad(f"no {f.name!r} setting")
            continue
        value = values[f.name]
        ok = (value is None and nullable) or (
            isinstance(value, _PY_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
        )
        if not ok:
            raise bad(f"{f.name!r} = {_short(value)} (wanted {kind})")
        kwargs[f.name] = float(value) if kind == "float" and value is not None else value
    config = TrainConfig(**kwargs)
    try:
        config.validate()
    except ValueError as err:
        raise bad(str(err)) from err
    return config


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flag(key: str, value: Any) -> str:
    if key == "prenorm" and isinstance(value, bool):
        return f"--norm {'pre' if value else 'post'}"
    return f"--{key.replace('_', '-')} {value}"


def same_run(saved: TrainConfig, cfg: TrainConfig, what: str) -> TrainConfig:
    """Check that ``cfg`` (resolved) continues the run ``saved``; return ``cfg`` with
    the saved run's planned ``steps`` when it runs under a time budget (never re-planned).

    Raises:
        ValueError: ``resume: expected the settings of <what> (--flag saved), got --flag new``.
    """
    budget = cfg.minutes is not None
    for key in IDENTITY:
        if key == "steps" and budget:
            continue  # planned by the run being resumed
        if getattr(saved, key) != getattr(cfg, key):
            raise fail(
                "resume",
                f"the settings of {what} ({_flag(key, getattr(saved, key))})",
                _flag(key, getattr(cfg, key)),
            )
    return replace(cfg, steps=saved.steps) if budget else cfg


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def read_config_json(path: Path) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The settings and time-budget plan of the run whose ``config.json`` is ``path``.

    Raises:
        ValueError: ``resume: expected a valid run configuration in <path>, got ...``
            for unreadable or invalid JSON, a missing or mistyped setting, or a
            budgeted run without its plan.
    """

    def bad(got: str) -> ValueError:
        return fail("resume", f"a valid run configuration in {path}", got)

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise bad(f"unreadable JSON ({_first_line(err)})") from err
    config = config_from_dict(obj, str(path))
    plan = obj.get("plan")
    if plan is not None and not isinstance(plan, dict):
        raise bad(f"'plan' = {_short(plan)} (wanted an object or null)")
    if config.minutes is not None and plan is None:
        raise bad("no 'plan' for its --minutes budget")
    return config, plan
