"""The P×K cross-modality identity sampler: a pure function of (seed, step), no global RNG.

Every batch holds `P` distinct identities; for each, `K` images in the visible slot (0) and `K`
in the infrared slot (1), so the batch is two aligned `(P*K,)` index vectors: position
`j*K + t` of both slots belongs to the `j`-th chosen identity. Per step (after AGW's
`IdentitySampler`): `P` identities drawn uniformly without replacement from the identities that
have images in both slots; per (identity, slot), `K` images drawn without replacement, or with
replacement when the identity has fewer than `K` images there.

Converted images (from the CycleGAN stage) are a second pool per slot: fake visible images
(IR→RGB) sit in slot 0, fake infrared images (RGB→IR) in slot 1, with the identity (`pid`) of
their source image. Each of the `K` draws of an (identity, slot) independently comes from the
converted pool with probability `converted_share` when the identity has both real and converted
images in that slot; only the one pool is used when the other is empty (an identity that exists
in one modality only can thus still be sampled when converted images fill the other). Every
draw is flagged `converted`.

Labels: the `pid`s of the *real* parts, sorted, are relabelled `0..N-1` (`label_map[label] =
pid`); converted images of identities outside that set are never drawn.

Epoch: `steps_per_epoch = ceil(number of real visible images / (P*K))` (the visible stream is
seen about once per epoch). Batches are drawn independently per step, so the epoch only groups
steps (learning-rate schedules, logging); `epoch = step // steps_per_epoch`.

Randomness: `np.random.default_rng(SeedSequence([seed, step, tag]))`, so batch `step` does not
depend on any other batch, on the number of workers, or on where a run was resumed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ce2l_jax.data.sources import Labels

VISIBLE_SLOT, INFRARED_SLOT = 0, 1
_TAG_PK = 0x504B  # distinguishes the sampler's streams from the augmentation's


def seeded_rng(*ints: int) -> np.random.Generator:
  """A generator that is a pure function of a tuple of integers (any sign)."""
  return np.random.default_rng(np.random.SeedSequence([int(x) % (1 << 64) for x in ints]))


@dataclasses.dataclass(frozen=True)
class Part:
  """One part of the global index: its labels, slot (0 visible / 1 infrared), converted flag."""
  labels: Labels
  slot: int
  converted: bool = False


@dataclasses.dataclass(frozen=True)
class PKBatch:
  """Global indices of one batch and what each draw is: all arrays `(2, P*K)`."""
  index: np.ndarray      # int64, index into the concatenation of the parts
  label: np.ndarray      # int32, relabelled pid (same in both slots, column by column)
  converted: np.ndarray  # bool


class CrossModalitySampler:
  """P×K batches over `parts` concatenated in order (the order of a `ConcatSource`)."""

  def __init__(self, parts: Sequence[Part], p: int, k: int, converted_share: float = 0.0):
    if p < 1 or k < 1:
      raise ValueError(f"input.p={p} and input.k={k} must both be >= 1")
    if not 0.0 <= converted_share <= 1.0:
      raise ValueError(f"input.converted_share={converted_share} must lie in [0, 1]")
    for part in parts:
      if part.slot not in (VISIBLE_SLOT, INFRARED_SLOT):
        raise ValueError(f"part slot {part.slot} is neither 0 (visible) nor 1 (infrared)")
    self.p, self.k, self.converted_share = int(p), int(k), float(converted_share)
    self.parts = list(parts)
    offsets = np.concatenate([[0], np.cumsum([len(pt.labels) for pt in parts])]).astype(np.int64)
    real = [pt.labels.pid for pt in parts if not pt.converted]
    self.label_map = np.unique(np.concatenate(real)) if real else np.zeros(0, np.int64)
    n = len(self.label_map)
    # Pools in CSR form: pool[s][c] holds global indices sorted by label, start[s][c] the bounds.
    self._pool = [[None, None], [None, None]]
    self._start = [[None, None], [None, None]]
    counts = np.zeros((2, 2, n), np.int64)
    for s in (0, 1):
      for c in (0, 1):
        idx, lab = [], []
        for j, pt in enumerate(parts):
          if pt.slot == s and int(pt.converted) == c:
            lj = self.pid_to_label(pt.labels.pid)
            keep = lj >= 0
            idx.append(offsets[j] + np.flatnonzero(keep))
            lab.append(lj[keep])
        idx = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        lab = np.concatenate(lab) if lab else np.zeros(0, np.int64)
        order = np.argsort(lab, kind="stable")
        self._pool[s][c] = idx[order].astype(np.int64)
        self._start[s][c] = np.searchsorted(lab[order], np.arange(n + 1))
        counts[s, c] = np.diff(self._start[s][c])
    self.counts = counts  # (slot, converted, label)
    both = (counts[0].sum(0) > 0) & (counts[1].sum(0) > 0)
    self.identities = np.flatnonzero(both)  # labels that can be sampled
    if self.p > len(self.identities):
      raise ValueError(
          f"input.p={self.p} is larger than the number of training identities with images in both "
          f"modalities ({len(self.identities)} of {n}); lower input.p (identities per batch)")
    num_visible = sum(len(pt.labels) for pt in parts if pt.slot == VISIBLE_SLOT and not pt.converted)
    self.steps_per_epoch = max(1, math.ceil(num_visible / (self.p * self.k)))

  @property
  def num_classes(self) -> int:
    return len(self.label_map)

  @property
  def batch_size(self) -> int:
    """Examples per slot (P*K); the whole batch holds twice as many."""
    return self.p * self.k

  def pid_to_label(self, pid: np.ndarray) -> np.ndarray:
    """Relabels dataset pids to 0..N-1 (sorted by pid); -1 for pids outside the training set."""
    pid = np.asarray(pid, np.int64)
    if not len(self.label_map):
      return np.full(pid.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(self.label_map, pid), 0, len(self.label_map) - 1)
    return np.where(self.label_map[pos] == pid, pos, -1)

  def epoch_of(self, step: int) -> int:
    return int(step) // self.steps_per_epoch

  def batch(self, seed: int, step: int) -> PKBatch:
    """The global indices of batch `step` (pure in (seed, step))."""
    rng = seeded_rng(seed, step, _TAG_PK)
    p, k = self.p, self.k
    chosen = rng.choice(self.identities, size=p, replace=False)
    index = np.empty((2, p * k), np.int64)
    converted = np.zeros((2, p * k), bool)
    for s in (0, 1):
      for j, lab in enumerate(chosen):
        n_real, n_conv = self.counts[s, 0, lab], self.counts[s, 1, lab]
        if n_conv == 0:
          use = np.zeros(k, bool)
        elif n_real == 0:
          use = np.ones(k, bool)
        else:
          use = rng.random(k) < self.converted_share
        out = np.empty(k, np.int64)
        for c, where in ((0, ~use), (1, use)):
          m = int(where.sum())
          if m:
            lo, hi = self._start[s][c][lab], self._start[s][c][lab + 1]
            out[where] = rng.choice(self._pool[s][c][lo:hi], size=m, replace=hi - lo < m)
        index[s, j * k:(j + 1) * k] = out
        converted[s, j * k:(j + 1) * k] = use
    label = np.broadcast_to(np.repeat(chosen, k).astype(np.int32), (2, p * k)).copy()
    return PKBatch(index=index, label=label, converted=converted)
