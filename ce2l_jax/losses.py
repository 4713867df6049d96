"""Every loss of CE²L, as free functions of arrays.

Re-ID (section "re-ID losses" below): cross-modality top-ranking (ℓ_cross, margin ρ1),
intra-modality constraint (ℓ_intra, margin ρ2), label-smoothed identity cross-entropy (LSR, ε).
CycleGAN: least-squares GAN loss, L1 cycle-consistency and identity losses.

Mining is done with masks over fused pairwise-distance matrices (`jnp.where`), never a Python
loop over the batch; distances go through a safe square root so gradients stay finite when two
features coincide.
"""

from __future__ import annotations

import jax.numpy as jnp

# --------------------------------------------------------------------------------------------
# CycleGAN losses (Zhu et al. 2017, least-squares GAN of Mao et al. 2017)
# --------------------------------------------------------------------------------------------


def lsgan_generator_loss(d_fake: jnp.ndarray) -> jnp.ndarray:
  """Generator side of LSGAN: E[(D(G(x)) − 1)²]."""
  return jnp.mean(jnp.square(d_fake - 1.0))


def lsgan_discriminator_loss(d_real: jnp.ndarray, d_fake: jnp.ndarray) -> jnp.ndarray:
  """Discriminator side of LSGAN: ½ (E[(D(y) − 1)²] + E[D(G(x))²])."""
  return 0.5 * (jnp.mean(jnp.square(d_real - 1.0)) + jnp.mean(jnp.square(d_fake)))


def l1_loss(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Mean absolute error: the cycle-consistency ‖F(G(x)) − x‖₁ and identity ‖G(y) − y‖₁ terms."""
  return jnp.mean(jnp.abs(a - b))


# --------------------------------------------------------------------------------------------
# re-ID losses
# --------------------------------------------------------------------------------------------
