"""The P×K cross-modality sampler: identities, pairing, converted share, purity, errors."""

import numpy as np
import pytest

from ce2l_jax.data.sampler import CrossModalitySampler, Part
from ce2l_jax.data.sources import Labels


def _labels(pids, modality, camid=1):
  pids = np.asarray(pids)
  return Labels(pids, np.full(len(pids), camid), np.full(len(pids), modality))


def _parts(n_ids=6, vis_per=3, ir_per=2, conv=True, conv_per=2, pid0=100):
  ids = pid0 + 7 * np.arange(n_ids)  # non-contiguous dataset pids
  parts = [Part(_labels(np.repeat(ids, vis_per), 0), 0), Part(_labels(np.repeat(ids, ir_per), 1, 3), 1)]
  if conv:
    parts += [Part(_labels(np.repeat(ids, conv_per), 0, 3), 0, True),   # IR→RGB: fake visible
              Part(_labels(np.repeat(ids, conv_per), 1, 1), 1, True)]   # RGB→IR: fake infrared
  return parts, ids


def _pid_of(parts):
  return np.concatenate([p.labels.pid for p in parts])


def _part_of(parts):
  return np.concatenate([np.full(len(p.labels), j) for j, p in enumerate(parts)])


def test_pk_structure_and_pairing():
  parts, ids = _parts()
  s = CrossModalitySampler(parts, p=4, k=3, converted_share=0.5)
  np.testing.assert_array_equal(s.label_map, ids)  # sorted pids
  assert s.num_classes == 6 and s.batch_size == 12
  assert s.steps_per_epoch == int(np.ceil(18 / 12))
  pid, part = _pid_of(parts), _part_of(parts)
  for step in range(20):
    b = s.batch(seed=0, step=step)
    assert b.index.shape == b.label.shape == b.converted.shape == (2, 12)
    assert b.label.dtype == np.int32 and b.converted.dtype == bool
    np.testing.assert_array_equal(b.label[0], b.label[1])          # slot pairing by identity
    per_id = b.label[0].reshape(4, 3)
    assert (per_id == per_id[:, :1]).all() and len(set(per_id[:, 0])) == 4  # P distinct × K
    np.testing.assert_array_equal(s.label_map[b.label], pid[b.index])  # relabel is consistent
    # slot 0 only from visible parts (0 real, 2 converted), slot 1 from infrared ones (1, 3)
    assert set(part[b.index[0]]) <= {0, 2} and set(part[b.index[1]]) <= {1, 3}
    np.testing.assert_array_equal(b.converted, part[b.index] >= 2)


def test_pure_in_seed_and_step():
  parts, _ = _parts()
  s1 = CrossModalitySampler(parts, p=3, k=2, converted_share=0.5)
  s2 = CrossModalitySampler(parts, p=3, k=2, converted_share=0.5)
  a, b = s1.batch(5, 9), s2.batch(5, 9)
  np.testing.assert_array_equal(a.index, b.index)
  np.testing.assert_array_equal(a.converted, b.converted)
  assert any(not np.array_equal(s1.batch(5, t).index, s1.batch(6, t).index) for t in range(3))
  assert not np.array_equal(s1.batch(5, 1).index, s1.batch(5, 2).index)


def test_converted_share_statistics():
  parts, _ = _parts(n_ids=10, conv_per=3)
  for share in (0.0, 0.25, 1.0):
    s = CrossModalitySampler(parts, p=8, k=4, converted_share=share)
    frac = np.mean([s.batch(1, t).converted.mean() for t in range(150)])  # 9,600 draws
    assert abs(frac - share) < 0.03, (share, frac)


def test_without_converted_and_replacement():
  parts, _ = _parts(vis_per=5, ir_per=2, conv=False)
  s = CrossModalitySampler(parts, p=3, k=4, converted_share=0.9)
  for t in range(10):
    b = s.batch(0, t)
    assert not b.converted.any()
    for j in range(3):  # 5 visible images ≥ K: drawn without replacement
      assert len(set(b.index[0, 4 * j:4 * j + 4])) == 4
      assert len(set(b.index[1, 4 * j:4 * j + 4])) <= 2  # only 2 infrared: with replacement


def test_identity_missing_a_modality():
  vis = Part(_labels([1, 1, 2, 2, 3], 0), 0)
  ir = Part(_labels([1, 2], 1), 1)                 # identity 3 has no real infrared image
  s = CrossModalitySampler([vis, ir], p=2, k=1)
  np.testing.assert_array_equal(s.label_map, [1, 2, 3])
  np.testing.assert_array_equal(s.identities, [0, 1])
  with pytest.raises(ValueError, match=r"input\.p=3 .* \(2 of 3\)"):
    CrossModalitySampler([vis, ir], p=3, k=1)
  conv_ir = Part(_labels([3, 3, 9], 1), 1, True)  # converted RGB→IR fills it; pid 9 is unknown
  s = CrossModalitySampler([vis, ir, conv_ir], p=3, k=2, converted_share=0.0)
  b = s.batch(0, 0)
  third = b.label[1] == 2
  assert b.converted[1, third].all() and not b.converted[1, ~third].any()
  assert not np.isin(b.index, [5 + 2 + 2]).any()  # the unknown pid is never drawn


def test_errors():
  parts, _ = _parts(n_ids=4)
  with pytest.raises(ValueError, match=r"input\.p=5 is larger than the number of training identities"):
    CrossModalitySampler(parts, p=5, k=1)
  with pytest.raises(ValueError, match=r"input\.k"):
    CrossModalitySampler(parts, p=2, k=0)
  with pytest.raises(ValueError, match=r"input\.converted_share"):
    CrossModalitySampler(parts, p=2, k=1, converted_share=1.5)
