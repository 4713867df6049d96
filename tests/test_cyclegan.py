"""The CycleGAN trainer's own maths: networks, history pool, the jitted step (sharded =
unsharded, one compile), the whole state in a checkpoint (resume = uninterrupted, sample grids),
viz. The loop (NaN policies, metrics once per step) is tested once in tests/test_loop.py."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import parallel, viz
from ce2l_jax.metric_writer import MetricWriter, read_metrics
from ce2l_jax.models import cyclegan as cg
from ce2l_jax.trainers import cyclegan as T
from tests.conftest import base_config
from tests.conftest import cyclegan_batch as fake_batch  # noqa: F401  (also for tests/test_scale.py)
from tests.conftest import cyclegan_iterator as fake_iterator
from tests.conftest import tiny_cyclegan_cfg as tiny_cfg


# ------------------------------------------------------------------------------ networks

def _gen_count(ngf, n_blocks, c=3):
  conv = lambda cin, cout, k: cin * cout * k * k + cout
  return (conv(c, ngf, 7) + conv(ngf, 2 * ngf, 3) + conv(2 * ngf, 4 * ngf, 3)
          + n_blocks * 2 * conv(4 * ngf, 4 * ngf, 3)
          + conv(4 * ngf, 2 * ngf, 3) + conv(2 * ngf, ngf, 3) + conv(ngf, c, 7))


def _disc_count(ndf, n_layers, c=3):
  conv = lambda cin, cout: cin * cout * 16 + cout
  widths = [ndf * min(2 ** n, 8) for n in range(n_layers + 1)]
  return conv(c, widths[0]) + sum(conv(a, b) for a, b in zip(widths, widths[1:])) + conv(widths[-1], 1)


def test_reference_parameter_counts():
  """The reference resnet_9blocks generator (11.378M) and 70×70 PatchGAN (2.765M), shapes only."""
  models = cg.build_models(base_config().cyclegan)
  shapes = cg.param_shapes(models, (256, 256))
  assert cg.count_params(shapes["gen_rgb2ir"]) == 11_378_179 == _gen_count(64, 9)
  assert cg.count_params(shapes["disc_ir"]) == 2_764_737 == _disc_count(64, 3)
  six = cg.param_shapes({r: cg.ResnetGenerator(64, 6) for r in cg.ROLES[:2]} |
                        {r: models[r] for r in cg.ROLES[2:]}, (128, 128))
  assert cg.count_params(six["gen_ir2rgb"]) == _gen_count(64, 6)


def test_tiny_shapes_counts_and_init():
  cfg = tiny_cfg()
  models = cg.build_models(cfg)
  params = cg.init_params(models, 0, (32, 16), 0.02)
  assert cg.count_params(params["gen_rgb2ir"]) == _gen_count(4, 1)
  assert cg.count_params(params["disc_rgb"]) == _disc_count(4, 2)
  x = jnp.zeros((2, 32, 16, 3))
  y = jax.eval_shape(lambda p: models["gen_rgb2ir"].apply({"params": p}, x), params["gen_rgb2ir"])
  d = jax.eval_shape(lambda p: models["disc_ir"].apply({"params": p}, x), params["disc_ir"])
  assert y.shape == (2, 32, 16, 3)
  assert d.shape == (2, *cg.patch_shape((32, 16), 2), 1) == (2, 6, 2, 1)
  k = params["gen_rgb2ir"]["block0"]["Conv_0"]["kernel"]
  assert abs(float(np.std(k)) - 0.02) < 0.004 and not np.any(params["gen_rgb2ir"]["stem"]["bias"])
  with pytest.raises(ValueError, match="too small"):
    cg.patch_shape((32, 16), 3)
  with pytest.raises(ValueError, match="multiples of 4"):
    T.check_config(tiny_cfg(image_size=(30, 16)))


# ------------------------------------------------------------------------------ pool

def test_pool_size_zero_passes_through():
  pool = T.pool_init(0, (4, 2))
  x = jnp.arange(3 * 4 * 2 * 3, dtype=jnp.float32).reshape(3, 4, 2, 3)
  new, out = T.pool_query(pool, x, jax.random.key(0))
  assert out is x and new.images.shape[0] == 0


def _pool_oracle(images, num, batch, key):
  """util/image_pool.py's loop, with the same random draws."""
  images, out = [np.asarray(a) for a in images], []
  size = len(images)
  for img, (u_swap, u_slot) in zip(np.asarray(batch), np.asarray(jax.random.uniform(key, (len(batch), 2)))):
    if num < size:
      images[num] = img
      num += 1
      out.append(img)
    elif u_swap > 0.5:
      i = int(u_slot * size)
      out.append(images[i])
      images[i] = img
    else:
      out.append(img)
  return np.stack(images), num, np.stack(out)


def test_pool_fills_then_mixes_under_a_fixed_key():
  size, hw = 4, (2, 2)
  query = jax.jit(T.pool_query)
  pool = T.pool_init(size, hw)
  first = jnp.arange(3 * 2 * 2 * 3, dtype=jnp.float32).reshape(3, 2, 2, 3)
  pool, out = query(pool, first, jax.random.key(1))
  np.testing.assert_array_equal(out, first)  # not full yet: stored and returned
  assert int(pool.num) == 3
  later = 100 + jnp.arange(16 * 2 * 2 * 3, dtype=jnp.float32).reshape(16, 2, 2, 3)
  key = jax.random.key(7)
  want_images, want_num, want_out = _pool_oracle(pool.images, int(pool.num), later, key)
  pool2, out2 = query(pool, later, key)
  np.testing.assert_array_equal(out2, want_out)
  np.testing.assert_array_equal(pool2.images, want_images)
  assert int(pool2.num) == want_num == size
  returned_old = [not np.any(np.all(np.asarray(later) == o, axis=(1, 2, 3))) for o in np.asarray(out2)]
  assert 0 < sum(returned_old) < len(later)  # mixes stored and new images
  _, again = query(pool, later, key)
  np.testing.assert_array_equal(again, out2)  # seeded


# ------------------------------------------------------------------------------ the step

@pytest.fixture(scope="module")
def step_setup():
  cfg = tiny_cfg()
  mesh = parallel.make_mesh()
  fns = T.step_functions(cfg, mesh)
  step = fns.train_step
  state0 = jax.device_get(T.init_train_state(cfg, fns.models, fns.tx_g, fns.tx_d, mesh))
  batch = fake_batch(0)
  state1, m1 = step(parallel.replicate(state0, mesh), parallel.shard_batch(batch, mesh))
  return dict(cfg=cfg, mesh=mesh, step=step, state0=state0, batch=batch,
              state1=jax.device_get(state1), m1=jax.device_get(m1))


def test_one_step_finite_losses_and_every_parameter_moves(step_setup):
  m = step_setup["m1"]
  assert set(T.LOSS_NAMES) <= set(m)
  assert all(np.isfinite(m[k]) for k in T.LOSS_NAMES)
  np.testing.assert_allclose(m["g_total"], sum(m[k] for k in T.LOSS_NAMES[:6]), rtol=1e-5)
  p0, p1 = step_setup["state0"].params, step_setup["state1"].params
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), p0, p1)
  assert all(jax.tree.leaves(moved)), moved
  assert int(step_setup["state1"].step) == 1 and int(step_setup["state1"].pool_ir.num) == 4


def test_sharded_step_equals_unsharded(step_setup):
  """8 devices (batch sharded, state replicated) vs 1 device: same losses and parameters.

  Conv biases right before an instance norm have a zero true gradient (the norm removes them);
  Adam turns their rounding-level gradients into ±lr steps of either sign, so they are compared
  only for their effect: the outputs, which they cannot change.
  """
  cfg = step_setup["cfg"]
  mesh1 = parallel.make_mesh(1)
  step1 = T.step_functions(cfg, mesh1).train_step
  s1, m1 = step1(parallel.replicate(step_setup["state0"], mesh1), parallel.shard_batch(step_setup["batch"], mesh1))
  s1, m1 = jax.device_get((s1, m1))
  for k in T.LOSS_NAMES:
    np.testing.assert_allclose(m1[k], step_setup["m1"][k], rtol=2e-5, atol=1e-6, err_msg=k)

  def cancelled(path):
    names = [getattr(p, "key", "") for p in path]
    return names[-1] == "bias" and names[-2] not in ("head", "out", "conv0")

  s8 = step_setup["state1"]
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(s8.params), jax.tree.leaves(s1.params)):
    if not cancelled(path):
      np.testing.assert_allclose(a, b, atol=2e-6, err_msg=jax.tree_util.keystr(path))
  np.testing.assert_allclose(s8.pool_rgb.images, s1.pool_rgb.images, atol=1e-6)
  models = cg.build_models(cfg)
  x = T.to_unit_range(jnp.asarray(step_setup["batch"]["rgb"]))
  g = lambda p: models["gen_rgb2ir"].apply({"params": p["gen_rgb2ir"]}, x)
  np.testing.assert_allclose(g(s8.params), g(s1.params), atol=1e-5)


def test_no_recompilation_across_steps(step_setup):
  mesh, step = step_setup["mesh"], step_setup["step"]
  state = parallel.replicate(step_setup["state1"], mesh)
  for i in range(1, 4):
    state, m = step(state, parallel.shard_batch(fake_batch(i), mesh))
  assert int(state.step) == 4 and float(m["lr"]) == pytest.approx(1e-4)  # decays from step 2 of 4
  assert step._cache_size() == 1


# ------------------------------------------------------------------------------ the loop

class _StopAt(MetricWriter):
  """Kills the run (as a Ctrl-C would) when step `at` is logged."""

  def __init__(self, workdir, at):
    super().__init__(workdir, T.STAGE, tensorboard=False)
    self.at = at

  def write_scalars(self, step, scalars):
    super().write_scalars(step, scalars)
    if step == self.at and "g_total" in scalars:
      raise KeyboardInterrupt


def test_train_resume_continues_and_matches_an_uninterrupted_run(tmp_path):
  cfg = tiny_cfg()
  full, _ = T.train(cfg, str(tmp_path / "a" / "cyclegan"), fake_iterator())
  stage = str(tmp_path / "b" / "cyclegan")
  with pytest.raises(KeyboardInterrupt):
    T.train(cfg, stage, fake_iterator(), writer=_StopAt(str(tmp_path / "b"), 3))
  assert sorted(os.listdir(os.path.join(stage, "checkpoints"))) == ["2"]
  state, result = T.train(cfg, stage, fake_iterator(), writer=MetricWriter(str(tmp_path / "b"), T.STAGE))
  assert int(state.step) == 4 and result["step"] == 4
  assert result["train_step_compiles"] == 1
  for a, b in zip(jax.tree.leaves(jax.device_get(full)), jax.tree.leaves(jax.device_get(state))):
    np.testing.assert_array_equal(a, b)
  rows = read_metrics(str(tmp_path / "b"), T.STAGE)
  losses = [r for r in rows if "g_total" in r]
  assert [r["step"] for r in losses] == [1, 2, 3, 4]  # step 3 logged, killed, redone: once
  assert set(T.LOSS_NAMES) <= set(losses[-1])
  assert any("eval_cycle_l1_rgb" in r for r in rows)
  for s in (2, 4):
    assert os.path.exists(os.path.join(stage, "samples", f"step_{s:07d}.png"))
  assert sorted(os.listdir(os.path.join(stage, "checkpoints"))) == ["2", "4"]


# ------------------------------------------------------------------------------ viz

def test_save_grid_tiles_rows(tmp_path):
  a = np.zeros((8, 4, 3), np.uint8)
  b = -np.ones((6, 4, 3), np.float32)  # [-1, 1] floats → black
  c = np.ones((8, 6), np.float32)      # [0, 1] gray → white
  path = str(tmp_path / "g" / "grid.png")
  grid = viz.save_grid([[a, b], [c, None, viz.border(a, viz.GREEN)]], path, pad=1)
  assert grid.shape == (1 + 8 + 1 + 8 + 1, 1 + 6 + 1 + 4 + 1 + 4 + 1, 3)
  from PIL import Image
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
  assert tuple(grid[1 + 8 + 1, 1 + 6 + 1 + 4 + 1]) == viz.GREEN
  rows = viz.cyclegan_sample_rows(*([np.zeros((2, 4, 2, 3))] * 6))
  assert len(rows) == 2 and len(rows[0]) == len(viz.CYCLEGAN_COLUMNS)
