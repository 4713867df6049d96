"""Foundation: the mesh helpers and the checkpointer (state + grain iterator position)."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import checkpoint, parallel
from ce2l_jax.metric_writer import MetricWriter, read_metrics


def test_eight_fake_devices():
  assert jax.device_count() == 8


def test_shard_batch_and_divisibility():
  mesh = parallel.make_mesh()
  b = parallel.shard_batch({"x": np.arange(16.0).reshape(16, 1), "file": np.array(["a"] * 16)}, mesh)
  assert "file" not in b
  assert b["x"].sharding.spec == jax.sharding.PartitionSpec("data")
  np.testing.assert_array_equal(np.asarray(b["x"]).ravel(), np.arange(16.0))
  b2 = parallel.shard_batch({"x": np.zeros((2, 8, 3))}, mesh, batch_axis=1)
  assert b2["x"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
  with pytest.raises(ValueError, match="not divisible by the number of devices"):
    parallel.shard_batch({"x": np.zeros((12, 1))}, mesh)
  with pytest.raises(ValueError, match="only 8 devices"):
    parallel.make_mesh(9)


def test_checkpoint_roundtrip_with_iterator(tmp_path):
  ds = grain.MapDataset.range(100).shuffle(seed=3).batch(4)
  it = iter(ds.to_iter_dataset())
  for _ in range(3):
    next(it)
  state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(3)}
  ck = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ck.save(3, state, it)
  ck.wait()
  expected_next = next(it)
  it2 = iter(ds.to_iter_dataset())
  restored = ck.restore(jax.eval_shape(lambda: state), it2)
  np.testing.assert_array_equal(restored["w"], state["w"])
  np.testing.assert_array_equal(next(it2), expected_next)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="does not match"):
    ck.restore({"w": jnp.zeros((5, 5)), "step": jnp.asarray(0)})
  ck.close()


def test_resolve_init(tmp_path):
  assert checkpoint.resolve_init(str(tmp_path / "none")) == ("scratch", None)
  with pytest.raises(FileNotFoundError, match="config.init"):
    checkpoint.resolve_init(str(tmp_path / "none"), init=str(tmp_path / "missing.npz"))


def test_metric_writer(tmp_path):
  w = MetricWriter(str(tmp_path), "reid", tensorboard=True)
  w.write_scalars(1, {"loss": 1.5, "nan": float("nan")})
  w.close()
  rows = read_metrics(str(tmp_path), "reid")
  assert rows[0]["loss"] == 1.5 and rows[0]["nan"] == "nan"
