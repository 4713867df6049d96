"""benchmarks/bench_cpu_scheduler.py: the schedulers it compares are the ones it names (the memory
scheduler's executable holds a smaller temp buffer), the maths is the same, every variant is
timed every round."""

from benchmarks import bench_cpu_scheduler as B


def test_memory_scheduler_is_smaller_and_computes_the_same_loss():
  r = B.main(["--net", "resnet", "--tiny", "--batch", "4", "--rounds", "2",
              "--schedulers", "default,memory"])
  assert set(r) == {"default", "memory"}
  assert r["memory"]["temp_gib"] < r["default"]["temp_gib"]
  assert abs(r["memory"]["loss"] - r["default"]["loss"]) <= 1e-5 * abs(r["default"]["loss"])
  assert all(len(v["wall"]) == len(v["cpu"]) == 2 and min(v["wall"]) > 0 for v in r.values())
