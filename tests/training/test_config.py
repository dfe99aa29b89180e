"""Composition of the Hydra config groups, the experiment presets, and config errors.

Nothing here compiles a training step: configs are composed, validated and built.
"""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from eventax_lab import training
from eventax_lab.config import SimulationConfig
from eventax_lab.experiment import build_experiment, configure_precision
from eventax_lab.losses import ExpIntegralLoss, IntegralLoss, MaxLoss, RegressionLoss, TemporalLoss
from eventax_lab.network import FeedForwardNetwork
from eventax_lab.neurons import NonSpiking
from eventax_lab.run_config import ConfigError, validate_run_config
from eventax_lab.simulate import SPIKE_OVERFLOW, SimulationError
from eventax_lab.steps import FAILURES_KEY
from eventax_lab.train import JobInfo, run

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PYPROJECT = CONF_DIR.parent / "pyproject.toml"
# MNIST IDX files next to the checkout, where this project's machines keep them.
MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


MODELS = _options("model")
LOSSES = _options("loss")
DATASETS = _options("data")
PRESETS = [name for name in _options("experiment") if name != "smoke"]

# Preset name -> (data builder, neuron, loss class, output layer spikes).
EXPECTED_PRESETS = {
    "yinyang_qif": ("make_yinyang", "qif", TemporalLoss, True),
    "yinyang_lif": ("make_yinyang", "lif", TemporalLoss, True),
    "yinyang_egru": ("make_yinyang", "egru", TemporalLoss, True),
    "yinyang_max": ("make_yinyang", "lif", MaxLoss, False),
    "yinyang_integral": ("make_yinyang", "lif", IntegralLoss, False),
    "yinyang_exp_integral": ("make_yinyang", "lif", ExpIntegralLoss, False),
    "regression_qif": ("make_regression", "qif", RegressionLoss, True),
    "mnist_lif": ("make_mnist", "lif", ExpIntegralLoss, False),
    "xor_egru": ("make_xor", "egru", TemporalLoss, True),
}


def test_default_config_is_yinyang_qif_temporal(compose_config):
    cfg = compose_config([])
    settings = validate_run_config(cfg)

    assert cfg.data._target_ == "eventax_lab.data.make_yinyang"
    assert cfg.data.seed_test == 40
    assert cfg.model.neuron == "qif"
    assert cfg.loss._target_ == "eventax_lab.losses.TemporalLoss"
    assert cfg.logger._target_ == "eventax_lab.run_logging.WandbTracker"
    assert settings.logger.mode == "offline"
    assert settings.resume is None


def test_default_run_directory_is_under_outputs(compose_config):
    cfg = compose_config([])
    hydra_cfg = yaml.safe_load((CONF_DIR / "hydra" / "default.yaml").read_text())
    assert hydra_cfg["run"]["dir"].startswith("outputs/${task_name}/runs/")
    assert hydra_cfg["sweep"]["dir"].startswith("outputs/${task_name}/multiruns/")
    assert hydra_cfg["job"]["chdir"] is False
    assert cfg.task_name == "train"


def test_every_model_loss_data_combination_validates(compose_config):
    failures = []
    for model, loss, data in itertools.product(MODELS, LOSSES, DATASETS):
        cfg = compose_config([f"model={model}", f"loss={loss}", f"data={data}"])
        try:
            validate_run_config(cfg)
        except ConfigError as error:
            failures.append(f"{model}/{loss}/{data}: {error}")
        assert cfg.model.neuron == model
    assert not failures


@pytest.mark.parametrize(
    "group, option",
    [(group, option) for group in ("optimizer", "solver", "trainer", "logger") for option in _options(group)],
)
def test_every_other_group_option_validates(group, option, compose_config):
    cfg = compose_config([f"{group}={option}"])
    validate_run_config(cfg)
    if group == "solver":
        config = SimulationConfig(t_end=60.0, **{k: v for k, v in cfg.solver.items() if k != "_target_"})
        assert config.solver == cfg.solver.solver


def test_every_preset_is_tested():
    assert sorted(PRESETS) == sorted(EXPECTED_PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_preset_pins_seed_and_hyperparameters(preset):
    raw = yaml.safe_load((CONF_DIR / "experiment" / f"{preset}.yaml").read_text())
    assert isinstance(raw["trainer"]["seed"], int)
    for key in ("epochs", "batch_size"):
        assert key in raw["trainer"], key
    assert "learning_rate" in raw["optimizer"]
    assert raw["tags"]


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_preset_builds_with_smoke_settings(preset, compose_config):
    builder, neuron, loss_class, output_spiking = EXPECTED_PRESETS[preset]
    overrides = [f"experiment=[{preset},smoke]"]
    if builder == "make_mnist":
        if not MNIST_DIR.is_dir():
            pytest.skip(f"no MNIST IDX files at {MNIST_DIR}")
        overrides += ["data.source=idx", f"data.idx_dir={MNIST_DIR}"]
    cfg = compose_config(overrides)
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)

    experiment = build_experiment(cfg, settings)

    train = experiment.datasets["train"]
    network = experiment.network
    assert cfg.data._target_ == f"eventax_lab.data.{builder}"
    assert cfg.model.neuron == neuron
    assert isinstance(network, FeedForwardNetwork)
    assert network.n_inputs == train.n_inputs
    assert network.n_outputs == (train.n_classes or 1)
    assert isinstance(network.layers[-1], NonSpiking) == (not output_spiking)
    assert isinstance(experiment.loss, loss_class)
    assert experiment.config.t_end == train.t_max
    assert len(train) == 32
    assert settings.trainer.max_batches_per_epoch == 2
    assert "smoke" in settings.tags


def test_smoke_config_combines_with_a_preset(compose_config):
    cfg = compose_config(["experiment=[yinyang_lif,smoke]"])
    assert cfg.model.neuron == "lif"
    assert list(cfg.model.hidden_sizes) == [32]
    assert cfg.trainer.epochs == 1
    assert cfg.logger._target_ == "eventax_lab.run_logging.NullTracker"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["trainer.batch_size=0"], "trainer.batch_size=0"),
        (["trainer.dtype=float16"], "trainer.dtype='float16'"),
        (["trainer.epochs=abc"], "trainer.epochs='abc'"),
        (["trainer.epochs='???'"], "trainer.epochs is missing"),
        (["+trainer.epoch=3"], "trainer.epoch is not a known setting"),
        (["trainer.max_batches_per_epoch=0"], "trainer.max_batches_per_epoch=0"),
        (["trainer.compile_cache_dir="], "trainer.compile_cache_dir=''"),
        # An existing file cannot be the cache folder.
        ([f"trainer.compile_cache_dir={PYPROJECT}"], f"trainer.compile_cache_dir='{PYPROJECT}'"),
        (["logger.mode=onlin"], "logger.mode='onlin'"),
        (["~trainer"], "trainer is not set"),
    ],
)
def test_invalid_trainer_or_logger_names_key(overrides, key, compose_config):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as caught:
        validate_run_config(cfg)
    assert key in str(caught.value)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.hidden_sizes=[0]"], "model.hidden_sizes"),
        (["model.neuron_kwargs.tau_mem=-5.0"], "model.neuron_kwargs.tau_mem"),
        (["model.neuron=qifx"], "model.neuron"),
        (["+model.neuron_kwargs.tau_mme=3.0"], "model.neuron_kwargs.tau_mme"),
        (["solver.rtol=-1.0"], "solver.rtol"),
        (["solver.solver=rk4"], "solver.solver"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate"),
        (["optimizer.schedule=linear"], "optimizer.schedule"),
        (["data.n_val=0"], "data.n_val=0"),
        (["data.t_max=-1.0"], "data.t_max"),
        (["loss.t0=-3.0"], "loss.t0"),
        (["loss=regression"], "loss._target_=eventax_lab.losses.RegressionLoss"),
        (["model=qif", "loss=max"], "loss.channel=0"),
        (["model=qif", "loss=exp_integral"], "loss.channel=0"),
    ],
)
def test_invalid_built_group_names_key(overrides, key, compose_config):
    cfg = compose_config(overrides)
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    with pytest.raises(ConfigError) as caught:
        build_experiment(cfg, settings)
    assert key in str(caught.value)


def test_unknown_model_lists_the_options(compose_config):
    with pytest.raises(MissingConfigException) as caught:
        compose_config(["model=qifx"])
    assert "model/qifx" in str(caught.value)
    assert "qif" in str(caught.value)


def test_misspelled_override_names_key(compose_config):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(["trainer.epoch=3"])
    assert "trainer.epoch" in str(caught.value)


def test_config_error_fails_run_before_compiling(tmp_path, monkeypatch, compose_config):
    calls = []
    monkeypatch.setattr(training, "train_step", lambda *args, **kwargs: calls.append(args))
    cfg = compose_config(["experiment=smoke", "model.neuron_kwargs.tau_mem=-5.0"])

    with pytest.raises(ConfigError, match="model.neuron_kwargs.tau_mem"):
        run(cfg, JobInfo(run_dir=tmp_path))

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "model.neuron_kwargs.tau_mem" in summary["error"]
    assert calls == []
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "override, named",
    [("solver.rtol=-1", "solver.rtol"), ("resume=no-such-run", "no-such-run")],
)
def test_config_error_exits_without_traceback(tmp_path, override, named):
    command = [
        sys.executable, "-m", "eventax_lab.train", "experiment=smoke", override,
        f"hydra.run.dir={tmp_path}",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert named in finished.stdout + finished.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert named in summary["error"]


def test_fix_names_first_key_in_message(compose_config):
    # The message names step_size='adaptive' too, after steps_per_iteration=1.
    cfg = compose_config(["experiment=smoke", "solver.steps_per_iteration=1"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    with pytest.raises(ConfigError, match="Fix solver.steps_per_iteration in the solver config"):
        build_experiment(cfg, settings)



def test_added_misspelled_key_suggests_parameter(compose_config):
    cfg = compose_config(["experiment=smoke", "+solver.lanes_per_vmp=8"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    with pytest.raises(ConfigError) as raised:
        build_experiment(cfg, settings)
    message = str(raised.value)
    assert "'lanes_per_vmp'. Fix solver.lanes_per_vmp in the solver config" in message
    assert message.endswith("Did you mean lanes_per_vmap?")

def test_recorded_simulation_failure_stops_run(tmp_path, monkeypatch, compose_config):
    # A training step whose simulation recorded a spike overflow in its first
    # sample, without compiling one. The error counts the batch's real samples.
    valid_counts = []

    def failing_step(params, static, opt_state, spikes, targets, mask, *args, **kwargs):
        mask = np.asarray(mask)
        valid_counts.append(int(mask.sum()))
        codes = np.zeros(mask.shape, np.int32)
        codes[0] = SPIKE_OVERFLOW
        return params, opt_state, 0.5, {FAILURES_KEY: codes}

    monkeypatch.setattr(training, "train_step", failing_step)
    cfg = compose_config(["experiment=smoke", "solver.errors=record"])

    with pytest.raises(SimulationError, match="max_spikes") as raised:
        run(cfg, JobInfo(run_dir=tmp_path))
    assert len(valid_counts) == 1
    assert valid_counts[0] > 1
    assert str(raised.value).startswith("Training step 1 (epoch 1, batch 1 of ")
    assert f": 1 of {valid_counts[0]} simulations failed." in str(raised.value)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "max_spikes" in summary["error"]


def test_validation_failure_names_batch(tmp_path, compose_config):
    # With max_steps=3 all 3 validation samples run out of steps. Their batch is
    # padded, and the padding rows count neither as failed nor in the total.
    cfg = compose_config(["experiment=smoke", "solver.max_steps=3", "data.n_val=3"])
    with pytest.raises(SimulationError, match="max_steps") as raised:
        run(cfg, JobInfo(run_dir=tmp_path))
    message = str(raised.value)
    assert message.startswith("Evaluation on 'val' (batch 1 of 1): 3 of 3 simulations failed.")


def test_zero_gradient_epoch_warns(tmp_path, monkeypatch, compose_config, caplog):
    # A training step whose outputs stayed silent: a loss, but no gradient.
    def silent_step(params, static, opt_state, spikes, targets, mask, *args, **kwargs):
        metrics = {"grad_norm": np.float32(0.0), "silent_output_fraction": np.float32(1.0),
                   FAILURES_KEY: np.zeros(np.shape(mask), np.int32)}
        return params, opt_state, 1.1, metrics

    monkeypatch.setattr(training, "train_step", silent_step)
    cfg = compose_config(["experiment=smoke", f"hydra.run.dir={tmp_path}"])
    with caplog.at_level("WARNING", logger="eventax_lab.training"):
        run(cfg, JobInfo(run_dir=tmp_path))
    messages = [record.getMessage() for record in caplog.records]
    zero_gradient = [message for message in messages if "gradient was zero" in message]
    assert len(zero_gradient) == 1
    assert "silent_output_fraction=1" in zero_gradient[0]
    assert "optimizer.learning_rate" in zero_gradient[0]


def test_parallel_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=parallel"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_sets_only_submitit_keys():
    # Composing needs the optional hydra-submitit-launcher. These are the keys of its
    # SlurmQueueConf (hydra_plugins/hydra_submitit_launcher/config.py in facebookresearch/hydra).
    submitit_keys = {
        "submitit_folder", "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node",
        "mem_gb", "nodes", "name", "stderr_to_stdout", "partition", "qos", "comment",
        "constraint", "exclude", "gres", "cpus_per_gpu", "gpus_per_task", "mem_per_gpu",
        "mem_per_cpu", "account", "signal_delay_s", "max_num_timeout", "additional_parameters",
        "array_parallelism", "setup",
    }
    raw = yaml.safe_load((CONF_DIR / "hydra" / "launcher" / "slurm.yaml").read_text())
    assert raw["defaults"] == ["submitit_slurm"]
    assert set(raw) - {"defaults"} <= submitit_keys
