"""Validation of a composed Hydra run config, before anything is built or compiled.

The `trainer` and `logger` groups are checked against the dataclass schemas below:
an unknown key, a value of the wrong type or a value outside its range raises
`ConfigError` naming the dotted key. The groups built with `_target_` (`data`,
`model`, `loss`, `solver`, `optimizer`) are checked by their own constructors.
`instantiate_group` re-raises a constructor's error as a `ConfigError` that names
the config key the error is about.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

REQUIRED_GROUPS = ("data", "model", "loss", "optimizer", "solver", "trainer", "logger")
"""Top-level config keys that every run needs."""

DTYPES = ("float32", "float64")
WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """An invalid run config. The message names the dotted config key and the fix."""


@dataclasses.dataclass
class TrainerConfig:
    """Schema of the `trainer` group: the training loop's settings.

    **Fields:**

    - `epochs`: passes over the training split, >= 1.
    - `batch_size`: training samples per step, >= 1.
    - `eval_batch_size`: samples per evaluation batch (validation, test, plots).
    - `seed`: seed of the initial parameters and of the batch order, >= 0.
    - `dtype`: `"float32"` or `"float64"`. float64 enables `jax_enable_x64`.
    - `eval_every`: epochs between two validations. The last epoch is always
      validated.
    - `max_batches_per_epoch`: cap on training steps per epoch for quick runs;
      `None` uses every batch.
    - `monitor`: validation metric that selects the best checkpoint, such as
      `"accuracy"`. `"auto"` picks `accuracy` (higher is better) for
      classification and `rmse_ms` (lower is better) for regression.
    - `monitor_mode`: `"max"`, `"min"`, or `"auto"` (max for accuracy, min
      otherwise).
    - `log_every_n_steps`: training steps between two per-step logs to the tracker.
    - `progress_bar`: show tqdm bars for epochs and batches.
    - `plots`: draw the figures at the end of the run.
    - `n_plot_samples`: test samples shown in the spike raster and voltage traces.
    - `compile_cache_dir`: a folder for JAX's persistent compilation cache, or
      `None` for none. A later process that compiles the same program (the
      same network shapes, loss, solver and optimizer settings) loads it from
      there instead of running XLA. JAX caches only programs without host
      callbacks, so it needs `EQX_ON_ERROR=nan` in the environment, which
      turns `eqx.error_if` into NaN outputs. The trainer still raises a failed
      simulation from its failure code (see `SimulationConfig.errors`).
    """

    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int = 250
    seed: int = 0
    dtype: str = "float32"
    eval_every: int = 1
    max_batches_per_epoch: int | None = None
    monitor: str = "auto"
    monitor_mode: str = "auto"
    log_every_n_steps: int = 20
    progress_bar: bool = True
    plots: bool = True
    n_plot_samples: int = 3
    compile_cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every",
                     "log_every_n_steps", "n_plot_samples"):
            _require(getattr(self, name) >= 1, f"trainer.{name}", getattr(self, name), "must be >= 1")
        _require(self.seed >= 0, "trainer.seed", self.seed, "must be >= 0")
        _require(self.dtype in DTYPES, "trainer.dtype", self.dtype, f"must be one of {list(DTYPES)}")
        if self.max_batches_per_epoch is not None:
            _require(
                self.max_batches_per_epoch >= 1,
                "trainer.max_batches_per_epoch",
                self.max_batches_per_epoch,
                "must be >= 1, or null to use every batch",
            )
        if self.compile_cache_dir is not None:
            folder = Path(self.compile_cache_dir).expanduser()
            _require(
                str(self.compile_cache_dir).strip() != "" and not folder.is_file(),
                "trainer.compile_cache_dir",
                self.compile_cache_dir,
                "must be a folder path (created if missing), or null for no cache",
            )
        _require(
            self.monitor_mode in ("auto", "max", "min"),
            "trainer.monitor_mode",
            self.monitor_mode,
            "must be 'auto', 'max' or 'min'",
        )


@dataclasses.dataclass
class LoggerConfig:
    """Schema of the `logger` group: the experiment tracker.

    **Fields:**

    - `_target_`: the tracker class, `eventax_lab.run_logging.WandbTracker` or
      `eventax_lab.run_logging.NullTracker`.
    - `project`, `entity`: the wandb project and team or user. `entity=None` uses
      the account's default.
    - `mode`: `"offline"` (write under the run directory, upload later with
      `wandb sync`), `"online"` or `"disabled"`.
    - `group`: wandb group. `None` groups the jobs of a multirun by sweep directory.
    - `name`: wandb run name. `None` uses the job's overrides or the run directory name.
    - `tags`: wandb tags, usually `${tags}` from the experiment.
    - `log_figures`: upload the PNG figures as images.
    """

    _target_: str = "eventax_lab.run_logging.NullTracker"
    project: str = "eventax-lab"
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None
    name: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    log_figures: bool = True

    def __post_init__(self) -> None:
        _require(self.mode in WANDB_MODES, "logger.mode", self.mode, f"must be one of {list(WANDB_MODES)}")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The validated `trainer` and `logger` groups and the top-level keys of a run."""

    trainer: TrainerConfig
    logger: LoggerConfig
    resume: str | None
    tags: tuple[str, ...]
    task_name: str


def _require(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ConfigError(
            f"{key}={value!r} is invalid: it {requirement}. Set a valid value in the config "
            f"file or on the command line ({key}=VALUE)."
        )


def _walk_keys(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Yield `(dotted key, value)` for every leaf of a config node, without resolving it."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            value = node._get_node(key)
            yield from _walk_keys(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            yield from _walk_keys(node._get_node(index), f"{prefix}[{index}]")
    else:
        yield prefix, node


def check_resolvable(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming the first key whose value is missing (`???`) or cannot be resolved.

    The `hydra` node is skipped, since its interpolations only resolve inside a Hydra job.
    """
    for group in cfg.keys():
        if group == "hydra":
            continue
        for key, _ in _walk_keys(cfg._get_node(group), str(group)):
            try:
                OmegaConf.select(cfg, key, throw_on_missing=True)
            except MissingMandatoryValue:
                raise ConfigError(
                    f"{key} is missing (its value is ???). Set it in the config file or on the "
                    f"command line ({key}=VALUE)."
                ) from None
            except OmegaConfBaseException as error:
                raise ConfigError(f"{key} cannot be resolved: {error}") from None


def _merge_schema(schema: type, node: Any, group: str) -> Any:
    """Merge a config node into a dataclass schema and return the dataclass instance."""
    if not isinstance(node, DictConfig):
        raise ConfigError(
            f"{group} must be a mapping of settings, got {node!r}. Select a config with {group}=NAME."
        )
    values = OmegaConf.to_container(node, resolve=True)
    known = {field.name for field in dataclasses.fields(schema)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{group}.{unknown[0]} is not a known setting of {group}. The known settings are "
            f"{sorted(known)}, so check the spelling in the {group} config or the override."
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        reason = str(error.msg).splitlines()[0]
        raise ConfigError(f"{group}.{key}={values.get(key)!r} has the wrong type: {reason}") from None
    return OmegaConf.to_object(merged)


def validate_run_config(cfg: DictConfig) -> RunSettings:
    """Check a composed run config and return its validated `trainer` and `logger` settings.

    **Raises:** `ConfigError` naming the key when a required group is absent, a value
    is missing or unresolvable, or a `trainer` or `logger` setting is unknown, of the
    wrong type or out of range.
    """
    for group in REQUIRED_GROUPS:
        if group not in cfg or cfg._get_node(group)._is_none():
            raise ConfigError(
                f"{group} is not set. Select a config for it with {group}=NAME, where the "
                f"options are the files in conf/{group}/."
            )
    check_resolvable(cfg)

    trainer = _merge_schema(TrainerConfig, cfg.trainer, "trainer")
    logger = _merge_schema(LoggerConfig, cfg.logger, "logger")
    resume = cfg.get("resume")
    tags = tuple(str(tag) for tag in (cfg.get("tags") or ()))
    return RunSettings(
        trainer=trainer,
        logger=logger,
        resume=None if resume is None else str(resume),
        tags=tags,
        task_name=str(cfg.get("task_name") or "train"),
    )


def _leaf_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _keys_named_in(message: str, group_node: DictConfig, group: str) -> list[str]:
    """Return the dotted keys of `group_node` that `message` names.

    A key counts as named when the message contains its full dotted form, or its
    last part followed by `=`, as in the constructor errors of this project
    (`name=value must ...`). Failing both, a key counts when its last part appears
    as a word.
    """
    keys = []
    for key, _ in _walk_keys(group_node, group):
        key = key.split("[", 1)[0]  # a list counts as one key
        if not key.endswith("._target_") and key not in keys:
            keys.append(key)
    # Sorted by where the message names them: a message starts with the value it
    # is about (`name=value must ...`), so the fix names that key.
    with_value, mentioned = [], []
    for key in keys:
        name = _leaf_name(key)
        if match := re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message):
            with_value.append((match.start(), key))
        elif match := re.search(rf"(?<![\w.]){re.escape(name)}=", message):
            with_value.append((match.start(), key))
        elif match := re.search(rf"(?<![\w.])'?{re.escape(name)}'?(?!\w)", message):
            mentioned.append((match.start(), key))
    return [key for _, key in sorted(with_value or mentioned)]


def _suggest_argument(message: str, node) -> str:
    """Return a hint naming the target's closest parameter to an unexpected keyword, or ''.

    Hydra's `+group.key=value` adds a key that the target may not take, and
    Python then reports "unexpected keyword argument 'key'".
    """
    match = re.search(r"unexpected keyword argument '(\w+)'", message)
    if match is None:
        return ""
    try:
        parameters = list(inspect.signature(get_object(node.get("_target_"))).parameters)
    except (ImportError, ValueError, TypeError, AttributeError):
        return ""
    close = difflib.get_close_matches(match.group(1), parameters, n=1)
    return f" Did you mean {close[0]}?" if close else ""


def instantiate_group(cfg: DictConfig, group: str, **kwargs: Any) -> Any:
    """Build the object of config group `group` with `hydra.utils.instantiate`.

    `kwargs` fill in values that come from elsewhere, such as the data's input count.
    An error raised by the target is re-raised as `ConfigError` that names the group
    key it concerns (found by its name in the error message) and keeps the original
    message.
    """
    node = cfg[group]
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip()
        keys = _keys_named_in(message, node, group)
        if keys:
            where = " or ".join(keys)
            stop = "" if message.endswith((".", "!", "?")) else "."
            raise ConfigError(
                f"Invalid {where}: {type(cause).__name__}: {message}{stop} Fix {keys[0]} in "
                f"the {group} config or override it on the command line."
                f"{_suggest_argument(message, node)}"
            ) from cause
        raise ConfigError(
            f"The {group} config ({group}._target_={node.get('_target_')!r}) failed: "
            f"{type(cause).__name__}: {message}"
        ) from cause
