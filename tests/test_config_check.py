import ml_collections
import pytest

from ce2l_jax.config_check import ConfigError, check_overrides, diff_configs


def _cfg():
  c = ml_collections.ConfigDict()
  c.reid = ml_collections.ConfigDict({"lr": 0.1, "epochs": 3, "name": "x", "flag": True, "size": (1, 2)})
  c.seed = 0
  return c


def test_unknown_key_suggests():
  with pytest.raises(ConfigError, match=r"unknown config key 'reid.lrr' \(did you mean 'reid.lr'\?\)"):
    check_overrides(_cfg(), ["run.py", "--config=x.py", "--config.reid.lrr=0.2"])


def test_wrong_types():
  with pytest.raises(ConfigError, match="'reid.epochs' is an int; got 'abc'"):
    check_overrides(_cfg(), ["--config.reid.epochs=abc"])
  with pytest.raises(ConfigError, match="'reid.flag' is a bool"):
    check_overrides(_cfg(), ["--config.reid.flag=maybe"])
  with pytest.raises(ConfigError, match="'reid.size' is a tuple"):
    check_overrides(_cfg(), ["--config.reid.size=3"])
  check_overrides(_cfg(), ["--config.reid.lr=1e-3", "--config.reid.size=(3,4)", "--config.seed=2"])


def test_diff_configs():
  a = _cfg().to_dict()
  b = _cfg()
  b.reid.lr = 0.5
  assert diff_configs(a, b.to_dict()) == ["reid.lr"]
  assert diff_configs(a, b.to_dict(), ignore=("reid.lr",)) == []
