"""D²RL's network: unified four-channel images built as the paper defines them, the test-time
single-modality path equal to the paired one, and the feature loss reaching the generators."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax.data.augment import normalize_imagenet
from ce2l_jax.models import create_reid_model, init_reid_variables
from ce2l_jax.models.d2rl import imagenet_to_unit

TINY = dict(ngf=4, n_blocks=1, width=4, blocks=(1, 1, 1, 1))
H, W = 32, 16
FAST = {"xla_backend_optimization_level": 0}   # tiny graphs: compile time dominates


@pytest.fixture(scope="module")
def net():
  model = create_reid_model("d2rl_tiny", 5, **TINY)
  variables = jax.jit(lambda r: init_reid_variables(model, r, H, W), compiler_options=FAST)(
      jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 256, (2, 3, H, W, 3), dtype=np.uint8)
  return model, variables, normalize_imagenet(images)


def test_imagenet_to_unit_inverts_the_normalisation():
  x = np.array([[0, 128, 255]], np.uint8).repeat(3, 0).T[None]   # (1, 3, 3) pixels
  np.testing.assert_allclose(imagenet_to_unit(normalize_imagenet(x)), x / 127.5 - 1.0, atol=1e-5)


def test_unified_images_and_outputs(net):
  model, variables, images = net
  assert set(variables["params"]) == {"gen_rgb2ir", "gen_ir2rgb", "reid"}
  assert variables["params"]["reid"]["stem"]["conv1"]["kernel"].shape[2] == 4

  @functools.partial(jax.jit, compiler_options=FAST)
  def run(variables, images):
    (emb, out), _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    paired, _ = model.apply(variables, images, train=False)
    single = [model.apply(variables, images[m], modality=m, train=False)[0] for m in (0, 1)]
    return emb, out, paired, single

  emb, out, emb_p, single = run(variables, images)
  assert emb.shape == (2, 3, 128) and out["logits"].shape == (2, 3, 5)
  real, fake, uni = out["real"], out["fake"], out["unified"]
  assert uni.shape == (2, 3, H, W, 4) and out["rec"].shape == (2, 3, H, W, 3)
  # visible: [real RGB, mean of G(x_v)]; infrared: [F(x_i), mean of real IR]
  np.testing.assert_allclose(uni[0, ..., :3], real[0], atol=1e-6)
  np.testing.assert_allclose(uni[0, ..., 3], fake[0].mean(-1), atol=1e-6)
  np.testing.assert_allclose(uni[1, ..., :3], fake[1], atol=1e-6)
  np.testing.assert_allclose(uni[1, ..., 3], real[1].mean(-1), atol=1e-6)
  # test time: each modality alone gives the paired form's features
  for m in (0, 1):
    np.testing.assert_allclose(single[m], emb_p[m], rtol=1e-4, atol=1e-5)


def test_feature_loss_reaches_the_generators(net):
  model, variables, images = net

  def feature_loss(params):
    (_, out), _ = model.apply({**variables, "params": params}, images, train=True,
                              mutable=["batch_stats"])
    return jnp.mean(jnp.square(out["emb"]))

  grads = jax.jit(jax.grad(feature_loss), compiler_options=FAST)(variables["params"])
  for role in ("gen_rgb2ir", "gen_ir2rgb"):
    norm = float(jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads[role]))))
    assert norm > 0 and np.isfinite(norm)
