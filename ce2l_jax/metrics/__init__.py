"""Evaluation: CMC / mAP / mINP of a distance matrix, the SYSU-MM01, RegDB and LLCM protocols, tables.

Pure numpy, no I/O (read `rand_perm_cam.mat` with `scipy.io.loadmat` and pass the result to
`parse_rand_perm_cam`). Results are fractions under the keys RESULT_KEYS; format them only when
printing (`format_table`).
"""

from ce2l_jax.metrics.protocols import (LLCM_CAMERAS, LLCM_DIRECTIONS, LLCM_NUM_TRIALS,
                                        eval_llcm, llcm_gallery, llcm_trials)
from ce2l_jax.metrics.protocols import (REGDB_DIRECTIONS, RESULT_KEYS, SYSU_GALLERY_CAMS,
                                        SYSU_INFRARED_CAMS, SYSU_NUM_TRIALS, SYSU_SHOTS, Trial,
                                        TrialResults, evaluate, pairwise_distances,
                                        parse_rand_perm_cam, pool_results, regdb_trial,
                                        sysu_gallery, sysu_official_gallery, sysu_queries,
                                        sysu_trials)
from ce2l_jax.metrics.ranking import eval_regdb, eval_sysu
from ce2l_jax.metrics.table import format_table, results_to_json

__all__ = [
    "LLCM_CAMERAS", "LLCM_DIRECTIONS", "LLCM_NUM_TRIALS", "eval_llcm", "llcm_gallery",
    "llcm_trials",
    "REGDB_DIRECTIONS", "RESULT_KEYS", "SYSU_GALLERY_CAMS", "SYSU_INFRARED_CAMS",
    "SYSU_NUM_TRIALS", "SYSU_SHOTS", "Trial", "TrialResults", "eval_regdb", "eval_sysu",
    "evaluate", "format_table", "pairwise_distances", "parse_rand_perm_cam", "pool_results",
    "regdb_trial", "results_to_json", "sysu_gallery", "sysu_official_gallery", "sysu_queries",
    "sysu_trials",
]
