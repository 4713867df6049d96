"""The re-ID trainer on injected fake batches with the real (tiny) model and losses.

One step changes the parameters with finite, named loss terms; the step on 8 fake devices equals
the one on a single device; no recompilation; train 2 → resume → 4 equals an uninterrupted run;
the NaN policies. Compiles are shared through `reid.build_step`'s cache (same model, config and
mesh → the same jitted step), and `reid.fast_compile` keeps each one short.
"""

import os

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ce2l_jax import checkpoint, parallel
from ce2l_jax.metric_writer import read_metrics
from ce2l_jax.train_state import TrainState
from ce2l_jax.trainers import reid

P, K, H, W = 4, 2, 32, 16
NUM_CLASSES = 6
# A one-stage ResNet-AGW (stems, one bottleneck, GeM, BN-neck): the real module, tiny compile.
TINY_RESNET = {"blocks": (1,), "width": 4}


def make_config(**reid_overrides):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.resume = ""
  c.init = ""
  c.mesh = ml_collections.ConfigDict({"num_devices": 0})
  c.reid = reid.default_config()
  c.reid.model = "resnet_tiny"
  c.reid.model_kwargs = ml_collections.ConfigDict(TINY_RESNET)
  c.reid.lr = 0.05
  c.reid.lsr_on = "all"
  c.reid.num_steps = 2
  c.reid.log_every = 1
  c.reid.checkpoint_every = 2
  c.reid.progress_bar = False
  c.reid.fast_compile = True
  c.reid.update(reid_overrides)
  return c


def make_batch(i: int) -> dict:
  rng = np.random.default_rng(1000 + int(i))
  ids = rng.choice(NUM_CLASSES, P, replace=False)
  pid = np.repeat(ids, K).astype(np.int32)
  image = rng.integers(0, 256, (2, P * K, H, W, 3), dtype=np.uint8)
  converted = np.zeros((2, P * K), bool)
  converted[1, ::2] = True
  return {"image": image, "pid": np.stack([pid, pid]), "camid": np.ones((2, P * K), np.int32),
          "modality": np.stack([np.zeros(P * K, np.int32), np.ones(P * K, np.int32)]),
          "converted": converted}


def make_iterator():
  """An endless, checkpointable (grain) iterator of fake P×K cross-modality batches."""
  return iter(grain.MapDataset.range(10**6).map(make_batch).to_iter_dataset())


@pytest.fixture(scope="module")
def model():
  return reid.create_model(make_config().reid, NUM_CLASSES)


def init_state(model, cfg, mesh, tx):
  variables = reid.init_variables(model, (H, W, 3), jax.random.PRNGKey(0), fast_compile=True)
  return parallel.replicate(TrainState.create(variables, tx, jax.random.PRNGKey(1)), mesh)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_step_changes_params_no_recompile_and_sharded_equals_unsharded(model):
  cfg = make_config()
  runs = {}
  for n in (8, 1):
    mesh = parallel.make_mesh(n)
    tx, _, step = reid.build_step(model, cfg.reid, 2, mesh)
    state = init_state(model, cfg, mesh, tx)
    before = host(state.params)
    history = []
    for i in range(3):
      state, metrics = step(state, reid.prepare_batch(make_batch(i), mesh))
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
  cfg4 = make_config(num_steps=4, checkpoint_every=2)
  full = reid.train(cfg4, full_dir, make_iterator(), NUM_CLASSES, model=model)

  reid.train(make_config(num_steps=2, checkpoint_every=2), part_dir, make_iterator(), NUM_CLASSES,
             model=model)
  assert sorted(os.listdir(os.path.join(part_dir, "checkpoints"))) == ["2"]
  # config.resume: another folder's checkpoint (state, step and data position) starts a new run.
  cfg_other = make_config(num_steps=4, checkpoint_every=4)
  cfg_other.resume = part_dir
  other = reid.train(cfg_other, str(tmp_path / "other"), make_iterator(), NUM_CLASSES, model=model)
  # The workdir's own checkpoint: continues at step 3.
  resumed = reid.train(cfg4, part_dir, make_iterator(), NUM_CLASSES, model=model)
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
  assert reid.build_step(model, cfg4.reid, 4, parallel.make_mesh())[2]._cache_size() == 1


POISON_PID = 5


def poisoned_loss(out, batch, cfg, _orig=reid.reid_loss):
  """The real loss, plus NaN on `ce` when the batch's first pid is POISON_PID (else + 0)."""
  total, terms, diag = _orig(out, batch, cfg)
  nan = jnp.where(batch["pid"][0, 0] == POISON_PID, jnp.nan, 0.0)
  terms = dict(terms, ce=terms["ce"] + nan, loss=total + nan)
  return total + nan, terms, diag


def poisoned_iterator(bad_steps):
  for step, b in enumerate(make_iterator(), start=1):
    b["pid"][:, 0] = POISON_PID if step in bad_steps else (POISON_PID + 1) % NUM_CLASSES
    yield b


def test_nan_stop_names_step_and_term_and_keeps_last_good_checkpoint(tmp_path, model, monkeypatch):
  monkeypatch.setattr(reid, "reid_loss", poisoned_loss)
  cfg = make_config(num_steps=4, checkpoint_every=1, nan_policy="stop")
  with pytest.raises(reid.NonFiniteError, match=r"step 3: non-finite ce, loss \(ce=nan, loss=nan\)") as e:
    reid.train(cfg, str(tmp_path), poisoned_iterator({3}), NUM_CLASSES, model=model)
  assert "Last good checkpoint: step 2" in str(e.value)
  assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).all_steps() == [1, 2]


def test_nan_skip_leaves_state_unchanged_and_continues(tmp_path, model, monkeypatch):
  monkeypatch.setattr(reid, "reid_loss", poisoned_loss)
  cfg = make_config(num_steps=3, checkpoint_every=1, nan_policy="skip")
  final = reid.train(cfg, str(tmp_path), poisoned_iterator({2}), NUM_CLASSES, model=model)
  assert int(final.step) == 3
  ck = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  s1, s2 = (host(ck.restore(jax.eval_shape(lambda: final), step=s)) for s in (1, 2))
  ck.close()
  for a, b in ((s1.params, s2.params), (s1.batch_stats, s2.batch_stats), (s1.opt_state, s2.opt_state)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  assert int(s2.step) == 2
  rows = read_metrics(str(tmp_path), "reid")
  assert [r["skipped"] for r in rows] == [0, 1, 0]
  assert np.isfinite(rows[2]["loss"]) and not np.allclose(host(final.params)["classifier"]["kernel"],
                                                          s2.params["classifier"]["kernel"])


def test_schedules_and_backbone_multiplier():
  cfg = reid.default_config("agw")
  sched = reid.make_schedule(cfg, steps_per_epoch=10)
  for step, lr in ((0, 0.001), (50, 0.1 * (0.01 + 0.99 * 0.5)), (100, 0.1), (399, 0.1), (400, 0.01),
                   (699, 0.01), (700, 0.001)):
    np.testing.assert_allclose(sched(step), lr, rtol=1e-5, err_msg=str(step))
  np.testing.assert_allclose(reid.make_schedule(reid.default_config(), 10)(123), 1e-3)

  cfg = reid.default_config()
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
  converted, none = reid.default_config(), reid.default_config()
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
  bad = reid.default_config()
  bad.lsr_on = "some"
  with pytest.raises(ValueError, match="lsr_on"):
    reid._validate(bad)
