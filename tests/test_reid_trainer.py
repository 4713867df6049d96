"""The re-ID trainer's own maths on injected fake batches with the real (tiny) model and losses.

One step changes the parameters with finite, named loss terms; the step on 8 fake devices equals
the one on a single device; no recompilation; the state is whole in a checkpoint (train 2 →
resume → 4 equals an uninterrupted run; `config.resume` starts from another run's checkpoint);
schedules, the backbone multiplier, LSR. The loop (NaN policies, metrics once per step, other
device counts) is tested once in tests/test_loop.py. Compiles are shared through `loop.cached`
(same model, config and mesh → the same jitted step), and `reid.fast_compile` keeps each short.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import parallel
from ce2l_jax.metric_writer import read_metrics
from ce2l_jax.train_state import TrainState
from ce2l_jax.trainers import loop, reid
from tests.conftest import H, NUM_CLASSES, W, base_config, reid_batch, reid_iterator, reid_run_config


@pytest.fixture(scope="module")
def model():
  return reid.create_model(reid_run_config().reid, NUM_CLASSES)


def init_state(model, cfg, mesh, tx):
  variables = reid.init_variables(model, (H, W, 3), jax.random.PRNGKey(0), fast_compile=True)
  return parallel.replicate(TrainState.create(variables, tx, jax.random.PRNGKey(1)), mesh)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_step_changes_params_no_recompile_and_sharded_equals_unsharded(model):
  cfg = reid_run_config()
  runs = {}
  for n in (8, 1):
    mesh = parallel.make_mesh(n)
    tx, _, step = reid.build_step(model, cfg.reid, 2, mesh)
    state = init_state(model, cfg, mesh, tx)
    before = host(state.params)
    history = []
    for i in range(3):
      state, metrics = step(state, reid.prepare_batch(reid_batch(i), mesh))
      history.append(host(metrics))
    assert step._cache_size() == 1, "the step recompiled"
    assert int(state.step) == 3
    runs[n] = (host(state.params), host(state.batch_stats), history, before)

  params8, stats8, hist8, before = runs[8]
  m = hist8[0]
  for k in ("loss", "ce", "cross", "intra", "accuracy", "lr", "grad_norm", "rank_acc"):
    assert np.isfinite(m[k]), k
  assert m["skipped"] == 0 and m["loss"] > 0 and m["grad_norm"] > 0
  np.testing.assert_allclose(m["loss"], m["ce"] + m["cross"] + 0.1 * m["intra"], rtol=1e-5)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), before, params8))
  assert all(changed), "every parameter should move after 3 SGD steps"

  params1, stats1, hist1, _ = runs[1]
  for a, b in zip(hist8, hist1):
    for k in ("loss", "ce", "cross", "intra", "grad_norm"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  jax.tree.map(close, params8, params1)
  jax.tree.map(close, stats8, stats1)


def test_resume_continues_step_count_identically(tmp_path, model):
  full_dir, part_dir = str(tmp_path / "full"), str(tmp_path / "part")
  cfg4 = reid_run_config(num_steps=4, checkpoint_every=2)
  full = reid.train(cfg4, full_dir, reid_iterator(), NUM_CLASSES, model=model)

  reid.train(reid_run_config(num_steps=2, checkpoint_every=2), part_dir, reid_iterator(), NUM_CLASSES,
             model=model)
  assert sorted(os.listdir(os.path.join(part_dir, "checkpoints"))) == ["2"]
  # config.resume: another folder's checkpoint (state, step and data position) starts a new run.
  cfg_other = reid_run_config(num_steps=4, checkpoint_every=4)
  cfg_other.resume = part_dir
  other = reid.train(cfg_other, str(tmp_path / "other"), reid_iterator(), NUM_CLASSES, model=model)
  # The workdir's own checkpoint: continues at step 3.
  resumed = reid.train(cfg4, part_dir, reid_iterator(), NUM_CLASSES, model=model)
  jax.tree.map(np.testing.assert_array_equal, host(full.params), host(other.params))
  assert [r["step"] for r in read_metrics(str(tmp_path / "other"), "reid")] == [3, 4]

  assert int(resumed.step) == int(full.step) == 4
  jax.tree.map(np.testing.assert_array_equal, host(full.params), host(resumed.params))
  jax.tree.map(np.testing.assert_array_equal, host(full.batch_stats), host(resumed.batch_stats))
  jax.tree.map(np.testing.assert_array_equal, host(full.opt_state), host(resumed.opt_state))
  rows_full, rows_part = read_metrics(full_dir, "reid"), read_metrics(part_dir, "reid")
  assert [r["step"] for r in rows_part] == [1, 2, 3, 4]
  assert [r["loss"] for r in rows_full] == [r["loss"] for r in rows_part]
  assert set(rows_full[0]) >= {"loss", "ce", "cross", "intra", "accuracy", "lr", "grad_norm"}
  assert sorted(os.listdir(os.path.join(part_dir, "checkpoints"))) == ["2", "4"]
  # Same model, config and mesh: every train() call above reused one compiled step.
  assert reid.build_step(model, cfg4.reid, 4, parallel.make_mesh()).train_step._cache_size() == 1


def agw_section():
  from configs import sysu_resnet
  return sysu_resnet.get_config().reid


def test_schedules_and_backbone_multiplier():
  cfg = agw_section()
  sched = reid.make_schedule(cfg, steps_per_epoch=10)
  for step, lr in ((0, 0.001), (50, 0.1 * (0.01 + 0.99 * 0.5)), (100, 0.1), (399, 0.1), (400, 0.01),
                   (699, 0.01), (700, 0.001)):
    np.testing.assert_allclose(sched(step), lr, rtol=1e-5, err_msg=str(step))
  np.testing.assert_allclose(reid.make_schedule(base_config().reid, 10)(123), 1e-3)

  cfg = base_config().reid
  cfg.weight_decay, cfg.momentum, cfg.backbone_lr_mult = 0.0, 0.0, 0.1
  tx, _ = reid.make_optimizer(cfg, 10)
  params = {"stream_v": {"w": jnp.ones(2)}, "layer1_0": {"w": jnp.ones(2)}, "fc8": {"w": jnp.ones(2)}}
  upd, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(upd["stream_v"]["w"], -1e-4, rtol=1e-5)
  np.testing.assert_allclose(upd["layer1_0"]["w"], -1e-4, rtol=1e-5)
  np.testing.assert_allclose(upd["fc8"]["w"], -1e-3, rtol=1e-5)


def test_lsr_on_converted_and_disabled_terms():
  from ce2l_jax import losses
  logits = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 5))
  out = {"logits": logits, "feat": jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3))}
  batch = {"pid": jnp.array([[0, 1, 2, 3]] * 2), "converted": jnp.array([[False] * 4, [True] * 4])}
  converted, none = base_config().reid, base_config().reid
  converted.intra_weight = 0.0
  none.lsr_on = "none"

  @jax.jit  # one compile instead of op-by-op dispatch
  def run(out, batch):
    eps = jnp.array([[0.0] * 4, [0.1] * 4])
    return (reid.reid_loss(out, batch, converted)[1], reid.reid_loss(out, batch, none)[1],
            losses.label_smoothing_cross_entropy(out["logits"], batch["pid"], eps),
            losses.label_smoothing_cross_entropy(out["logits"], batch["pid"], 0.0))

  t_conv, t_none, ce_conv, ce_plain = run(out, batch)
  assert set(t_conv) == {"ce", "cross", "loss"} and set(t_none) == {"ce", "cross", "intra", "loss"}
  np.testing.assert_allclose(t_conv["ce"], ce_conv, rtol=1e-6)
  np.testing.assert_allclose(t_none["ce"], ce_plain, rtol=1e-6)
  assert abs(float(ce_conv) - float(ce_plain)) > 1e-4
  bad = base_config().reid
  bad.lsr_on = "some"
  with pytest.raises(ValueError, match="lsr_on"):
    reid.check_config(bad)


def test_step_compiles_under_the_memory_scheduler_with_the_same_maths(model, monkeypatch):
  """The re-ID step is compiled with XLA:CPU's memory-optimised scheduler (reid.CPU_SCHEDULER,
  loop.cpu_compiler_options): a smaller temp buffer than the default scheduler's, the same loss
  and update; `CE2L_CPU_SCHEDULER` overrides it for a run."""
  cfg = reid_run_config()
  mesh = parallel.make_mesh(1)
  tx, schedule, step = reid.build_step(model, cfg.reid, 2, mesh)
  state = init_state(model, cfg, mesh, tx)
  batch = reid.prepare_batch(reid_batch(0), mesh)

  def under(scheduler):
    return loop.jit_step(reid.make_train_step(model, tx, schedule, cfg.reid), mesh, batch_axis=1,
                         compiler_options=reid.compiler_options(cfg.reid), scheduler=scheduler)

  temp = lambda f: f.lower(state, batch).compile().memory_analysis().temp_size_in_bytes
  default = under("default")
  assert reid.CPU_SCHEDULER == "memory"
  assert temp(step) == temp(under("memory")) < temp(default)
  monkeypatch.setenv(loop.CPU_SCHEDULER_ENV, "default")
  assert temp(under("memory")) == temp(default)

  new_d, m_d = default(state, batch)
  state = init_state(model, cfg, mesh, tx)  # the first call donated it
  new_m, m_m = step(state, batch)
  for k in ("loss", "ce", "cross", "intra", "grad_norm"):
    np.testing.assert_allclose(m_m[k], m_d[k], rtol=1e-6, err_msg=k)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               host(new_m.params), host(new_d.params))
