"""Cost of k-reciprocal re-ranking (`ce2l_jax.metrics.reranking`) on SYSU-MM01-size trials.

  .venv/bin/python benchmarks/bench_reranking.py [--repeats 2] [--dim 2048] [--quick]

* SYSU-MM01 all-search, one trial: the 3,803 infrared queries of the real test set and a gallery
  drawn with the real per-(camera, identity) image counts (tests/data/sysu_eval, as
  bench_eval.py): single-shot (301 gallery images, N = 4,104) and multi-shot (3,010, N = 6,813);
  2,048-d float32 features of bench_eval.py (identity centre + modality offset + noise).
* Per case: the plain distances + SYSU metrics, and re-ranking (k1 = 20, k2 = 6, λ = 0.3) + the
  same metrics; best wall-clock of `--repeats`, process CPU time beside it, peak resident memory
  of the process, and rank-1 / mAP without and with re-ranking.
* The machine's float32 matmul rate (2,048², best of 3) and load average are printed beside the
  times (a shared machine gives low figures; compare within one run only).
`--quick`: 1,000 queries (a smoke run of the script).

`--synthetic=DATA_DIR` instead measures what re-ranking does to the results of the evaluation
path itself (`evaluate.Evaluator.run` with and without `rerank`) on the test split of
`--dataset` (default synthetic_vireid/default, built in DATA_DIR), for the raw-pixel baseline's
features and, with `--workdir=W`, for the re-ID model of a finished run (export.load_trained):
mean ± std over `--trials` galleries of the protocol's settings.
"""

import argparse
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_eval import features, load, machine, sysu_layout, timed  # noqa: E402
from ce2l_jax.metrics import eval_sysu, pairwise_distances, sysu_gallery, sysu_queries  # noqa: E402
from ce2l_jax.metrics import reranking  # noqa: E402


def matmul_gflops(n=2048, repeats=3):
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    a @ a
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best / 1e9


def synthetic(args):
  """Plain vs re-ranked results of the evaluation path on a built dataset's test split."""
  import ml_collections
  from ce2l_jax import evaluate as ev
  from ce2l_jax import metrics
  ecfg = ev.default_config()
  ecfg.num_trials = args.trials
  config = ml_collections.ConfigDict({"data": {"name": args.dataset, "data_dir": args.synthetic},
                                      "eval": ecfg})
  test = ev.open_test_set(config)
  feature_sets = {}
  base = ev.Evaluator(ev.raw_pixel_predict_fn(tuple(ecfg.baseline_size)), test, ecfg,
                      image_size=(128, 64), batch_size=64)
  feature_sets["raw pixels"] = base.features({})
  if args.workdir:
    from ce2l_jax import export
    trained = export.load_trained(args.workdir)
    model_ecfg = ml_collections.ConfigDict(trained.config.eval.to_dict())
    model_ecfg.num_trials = args.trials
    run = ev.Evaluator(lambda v, x, m: trained.feature_fn(m)(v, x), test, model_ecfg,
                       image_size=trained.image_size, batch_size=64)
    feature_sets[f"{trained.model_name} ({os.path.basename(os.path.normpath(args.workdir))}, "
                 f"step {trained.step})"] = run.features(trained.variables)
  rows, informative = {}, {}
  for name, feats in feature_sets.items():
    ev_ = ev.Evaluator(lambda v, x, m: x, test, ecfg, image_size=(8, 8), batch_size=8)
    ev_.features = lambda _, f=feats: f
    # How often the Jaccard term can reorder anything: its share of query-gallery pairs below 1
    # (no shared k-reciprocal neighbour gives d_J = 1), first trial of the first setting.
    q, g = next(iter(ev_.trials().values()))[0]
    d_j = reranking.k_reciprocal_distances(
        reranking.squared_distances(np.concatenate([feats[q], feats[g]])), len(q), lambda_value=0.0)
    informative[name] = float((d_j < 1 - 1e-6).mean())
    for label, rr in ((name, None), (f"{name} + re-ranking", ev.rerank_params(ecfg))):
      t = time.perf_counter()
      rows[label] = ev_.run({}, rerank=rr)
      print(f"{label}: {time.perf_counter() - t:.1f} s", flush=True)
  print(f"load average: {load()}; {args.dataset} test split ({len(test)} images), {args.trials} "
        f"galleries per setting; k1 20, k2 6, λ 0.3\n")
  print(metrics.format_table(rows, style="markdown"))
  for name, share in informative.items():
    print(f"{name}: query-gallery pairs with a Jaccard distance below 1: {100 * share:.2f} %")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--dim", type=int, default=2048)
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--synthetic", default="", help="TFDS data_dir holding --dataset (see docstring)")
  ap.add_argument("--dataset", default="synthetic_vireid/default")
  ap.add_argument("--workdir", default="", help="a finished run whose model is also measured")
  ap.add_argument("--trials", type=int, default=10)
  args = ap.parse_args()
  if args.synthetic:
    return synthetic(args)
  load0, gflops0 = load(), matmul_gflops()
  pid, cam = sysu_layout()
  feats = features(pid, np.isin(cam, (3, 6)).astype(int), seed=0)[:, :args.dim].copy()
  q = sysu_queries(cam)
  if args.quick:
    q = q[np.random.default_rng(1).choice(q.size, 1000, replace=False)]
  rows = []
  for shot in ("single", "multi"):
    g = sysu_gallery(pid, cam, mode="all", shot=shot, trial=0)

    def plain():
      d = pairwise_distances(feats[q], feats[g])
      return eval_sysu(d, pid[q], pid[g], cam[q], cam[g])

    def reranked():
      d = reranking.rerank(feats[q], feats[g])
      return eval_sysu(d, pid[q], pid[g], cam[q], cam[g])

    r0, t0, c0 = timed(plain, args.repeats)
    r1, t1, c1 = timed(reranked, args.repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append((f"{shot}-shot ({q.size} × {g.size}, N = {q.size + g.size})", t0, c0, t1, c1, rss,
                 r0, r1))
  gflops1 = matmul_gflops()
  print(f"machine: {machine()}; load average before/after: {load0} / {load()}; float32 matmul "
        f"2048²: {gflops0:.0f} / {gflops1:.0f} GFLOP/s before/after (shared machine: compare "
        f"within this run only); features {args.dim}-d")
  print(f"best of {args.repeats} wall-clock runs in s (process CPU time in brackets); peak RSS "
        "of the process after the case\n")
  head = ("SYSU all-search trial", "distances + metrics", "re-ranking + metrics", "ratio",
          "peak RSS MB", "r1 / mAP plain %", "r1 / mAP re-ranked %")
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for name, t0, c0, t1, c1, rss, r0, r1 in rows:
    print(f"| {name} | {t0:.2f} ({c0:.2f}) | {t1:.2f} ({c1:.2f}) | {t1 / t0:.0f}× | {rss:.0f} | "
          f"{100 * r0[0][0]:.1f} / {100 * r0[1]:.1f} | {100 * r1[0][0]:.1f} / {100 * r1[1]:.1f} |")


if __name__ == "__main__":
  main()
