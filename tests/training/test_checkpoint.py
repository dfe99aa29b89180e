"""Checkpoint files: round trip, all-or-nothing writes, and the errors of a wrong resume path."""

import equinox as eqx
import jax
import numpy as np
import pytest

from eventax_lab import checkpoint as ckpt
from eventax_lab.network import build_network
from eventax_lab.neurons import trainable_filter
from eventax_lab.optim import make_optimizer


def _network_and_state(hidden: int = 4, seed: int = 0):
    network = build_network("lif", [hidden], n_inputs=3, n_outputs=2, key=jax.random.PRNGKey(seed))
    params, _ = eqx.partition(network, trainable_filter(network))
    opt_state = make_optimizer(steps_per_epoch=2, epochs=2, clip_norm=1.0).init(params)
    return network, opt_state


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree) if eqx.is_array(leaf)]


def test_checkpoint_round_trip_is_exact(tmp_path):
    network, opt_state = _network_and_state(seed=1)
    header = {"epoch": 3, "step": 12, "best_value": 0.75, "history": [{"epoch": 1, "train/loss": 1.5}]}
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", network, opt_state, header)

    like_network, like_state = _network_and_state(seed=2)
    loaded_network, loaded_state, loaded_header = ckpt.load_checkpoint(path, like_network, like_state)

    for saved, loaded in zip(_leaves((network, opt_state)), _leaves((loaded_network, loaded_state))):
        assert saved.dtype == loaded.dtype
        np.testing.assert_array_equal(saved, loaded)
    assert loaded_header["epoch"] == 3
    assert loaded_header["history"] == header["history"]
    assert ckpt.read_header(path)["step"] == 12


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    network, opt_state = _network_and_state()
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", network, opt_state, {"epoch": 1})
    before = path.read_bytes()

    def interrupted_serialise(stream, tree):
        stream.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.eqx, "tree_serialise_leaves", interrupted_serialise)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, network, opt_state, {"epoch": 2})

    assert path.read_bytes() == before
    assert ckpt.read_header(path)["epoch"] == 1
    assert [item.name for item in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_of_other_network_is_rejected(tmp_path):
    network, opt_state = _network_and_state(hidden=4)
    path = ckpt.save_checkpoint(tmp_path / "last.ckpt", network, opt_state, {"epoch": 1})
    other_network, other_state = _network_and_state(hidden=5)

    with pytest.raises(ckpt.CheckpointError, match="does not fit"):
        ckpt.load_checkpoint(path, other_network, other_state)


def test_file_that_is_not_a_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: lif\n")
    with pytest.raises(ckpt.CheckpointError, match="not an eventax-lab checkpoint"):
        ckpt.read_header(path)


def test_resolve_checkpoint_accepts_run_directory_or_file(tmp_path):
    network, opt_state = _network_and_state()
    path = ckpt.save_checkpoint(tmp_path / "checkpoints" / "last.ckpt", network, opt_state, {"epoch": 1})

    assert ckpt.resolve_checkpoint(tmp_path) == path
    assert ckpt.resolve_checkpoint(path) == path


def test_resolve_checkpoint_names_missing_path(tmp_path):
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.resolve_checkpoint(tmp_path / "no-such-run")
    message = str(caught.value)
    assert "resume=" in message
    assert "no-such-run" in message
    assert "does not exist" in message
    # A directory without a checkpoint, such as a failed run's.
    with pytest.raises(ckpt.CheckpointError, match="contains no checkpoint"):
        ckpt.resolve_checkpoint(tmp_path)
