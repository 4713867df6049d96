r"""The trained feature extractor of a workdir: live (`load_trained`) and as a portable artifact.

  python -m ce2l_jax.export --workdir=W [--out=W/export] [--platforms=cpu,cuda]

writes, atomically (a temporary folder renamed into place), `<out>/`:
  visible.jax_exported, infrared.jax_exported   serialized `jax.export.Exported` (StableHLO, the
                   trained weights as constants), one per modality stream:
                   f(images uint8 (b, H, W, 3)) -> features float32 (b, D) with a symbolic batch
                   dimension `b`;
  preprocessing.json   what the caller does before (decode, RGB, resize to H × W with PIL's
                   resample filter) and what the artifact already does (ImageNet normalisation,
                   flip averaging when the run evaluated with it, L2 normalisation), the
                   feature size, the distance, the model and checkpoint step, the jax version.
Reloading needs jax only, not this package:
  exp = jax.export.deserialize(open("infrared.jax_exported", "rb").read()); feats = exp.call(x)
(tests/test_export.py does exactly that in a fresh process and compares with the live model).

`load_trained(workdir)` is the one place the search tool and this exporter read a trained model
from: the run's `config.json`, its finished re-ID stage and the latest re-ID checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from typing import Any, Callable, Sequence

import numpy as np

from ce2l_jax import INFRARED, VISIBLE

MODALITIES = {"visible": VISIBLE, "infrared": INFRARED}
ARTIFACT = "{}.jax_exported"
PREPROCESSING = "preprocessing.json"


class ExportError(Exception):
  """A problem the user fixes (missing workdir or stage, bad flag); shown as one line."""


@dataclasses.dataclass
class TrainedModel:
  """A run's re-ID model, restored: `features(images, modality)` is what evaluation ranks by."""
  workdir: str
  config: Any                        # the run's ConfigDict (from config.json)
  model: Any                         # the flax module
  variables: Any                     # host (numpy) arrays
  step: int
  image_size: tuple[int, int]        # (H, W) the eval stream resizes to
  resample: str                      # PIL filter name of that resize
  flip: bool                         # features averaged with the mirror image's
  normalize: bool                    # features L2-normalised
  metric: str                        # euclidean | cosine

  @property
  def model_name(self) -> str:
    return str(self.config.reid.model)

  def feature_fn(self, modality: int) -> Callable:
    """Un-jitted f(variables, images uint8 (B, H, W, 3)) -> float32 (B, D) for one stream."""
    from ce2l_jax.trainers import reid
    predict = reid.make_predict_fn(self.model)
    flip, normalize = self.flip, self.normalize

    def features(variables, images):
      import jax.numpy as jnp
      f = predict(variables, images, modality).astype(jnp.float32)
      if flip:
        f = 0.5 * (f + predict(variables, images[:, :, ::-1], modality).astype(jnp.float32))
      if normalize:  # as evaluate.Evaluator.features (norm floored at 1e-12)
        f = f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-12)
      return f

    return features

  def preprocessing(self) -> dict:
    h, w = self.image_size
    return {
        "input": {"dtype": "uint8", "layout": "NHWC (batch, height, width, channel)",
                  "channels": "RGB; grayscale and infrared images repeated to 3 channels",
                  "height": h, "width": w,
                  "resize": {"library": "PIL (Pillow)", "resample": self.resample,
                             "note": "Image.resize((width, height), resample) of the whole "
                                     "decoded image, no crop, aspect ratio not kept"}},
        "inside_artifact": (["ImageNet normalisation: (x / 255 - (0.485, 0.456, 0.406)) / "
                             "(0.229, 0.224, 0.225)"]
                            + (["mean with the horizontally flipped image's features"]
                               if self.flip else [])
                            + (["L2 normalisation of each feature row"] if self.normalize else [])),
        "modalities": {name: {"id": mid, "artifact": ARTIFACT.format(name)}
                       for name, mid in MODALITIES.items()},
        "distance": self.metric,
        "model": self.model_name, "step": self.step,
        "workdir": self.workdir,
    }


def _stage_paths(workdir: str) -> dict[str, str]:
  """Where a run keeps what `load_trained` reads (`ce2l_jax.workdir` names the layout)."""
  from ce2l_jax import workdir as wd
  return {"config": os.path.join(workdir, wd.CONFIG),
          "reid_done": wd.done_path(workdir, "reid"),
          "reid": wd.stage_dir(workdir, "reid")}


def load_trained(workdir: str, *, step: int | None = None) -> TrainedModel:
  """The re-ID model of a finished run; ExportError (one line, naming the path) otherwise."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  paths = _stage_paths(workdir)
  if not os.path.isdir(workdir):
    raise ExportError(f"--workdir {workdir} does not exist")
  if not os.path.exists(paths["config"]):
    trials = sorted(d for d in os.listdir(workdir) if d.startswith("trial")
                    and os.path.isdir(os.path.join(workdir, d)))
    hint = (f"; a RegDB run keeps one model per trial: pass --workdir={os.path.join(workdir, trials[0])}"
            if trials else "")
    raise ExportError(f"{paths['config']} is missing: {workdir} is not a run's workdir{hint}")
  if not os.path.exists(paths["reid_done"]):
    if os.path.isdir(os.path.join(workdir, "trial1")):
      raise ExportError(f"{workdir} holds one model per RegDB trial: pass --workdir="
                        f"{os.path.join(workdir, 'trial1')} (or another trial)")
    raise ExportError(f"{paths['reid_done']} is missing: the re-ID stage of {workdir} has not "
                      "finished (run `python run.py ... --stages=reid` to finish it)")
  import jax  # after the checks: a wrong workdir is refused at once
  import ml_collections
  try:
    with open(paths["config"]) as f:
      config = ml_collections.ConfigDict(json.load(f))
    config.reid.model, config.eval  # noqa: B018 (the sections load_trained reads)
  except (ValueError, AttributeError, KeyError) as e:
    raise ExportError(f"{paths['config']}: not a run config ({e})") from None
  from ce2l_jax import parallel
  from ce2l_jax.trainers import reid
  try:
    model, variables, step = reid.restore_variables(config, paths["reid"], parallel.make_mesh(1), step=step)
  except (FileNotFoundError, ValueError) as e:
    raise ExportError(f"{paths['reid']}: cannot restore the re-ID model ({e})") from None
  variables = jax.tree.map(np.asarray, jax.device_get(variables))
  input_cfg = config.get("input") or {}
  ecfg = config.eval
  return TrainedModel(
      workdir=workdir, config=config, model=model, variables=variables, step=int(step),
      image_size=tuple(int(s) for s in input_cfg.get("image_size", (288, 144))),
      resample=str(input_cfg.get("resample", "bilinear")), flip=bool(ecfg.get("flip", False)),
      normalize=bool(ecfg.get("normalize_features", True)), metric=str(ecfg.get("metric", "euclidean")))


def export_artifacts(trained: TrainedModel, platforms: Sequence[str] | None = None) -> dict[str, bytes]:
  """`{modality name: serialized Exported}`; the batch dimension is symbolic."""
  import jax
  h, w = trained.image_size
  (b,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct((b, h, w, 3), np.uint8)
  out = {}
  for name, mid in MODALITIES.items():
    fn = trained.feature_fn(mid)
    variables = trained.variables
    exported = jax.export.export(jax.jit(lambda images: fn(variables, images)),
                                 platforms=tuple(platforms) if platforms else None)(spec)
    out[name] = bytes(exported.serialize())
  return out


def write_export(trained: TrainedModel, out_dir: str, platforms: Sequence[str] | None = None) -> str:
  """Writes the artifacts and preprocessing.json into `out_dir`, atomically; returns it."""
  import jax
  blobs = export_artifacts(trained, platforms)
  pre = trained.preprocessing()
  exported = jax.export.deserialize(bytearray(blobs["visible"]))
  pre.update({
      "format": "jax.export (serialized Exported; jax.export.deserialize(bytes).call(images))",
      "jax_version": jax.__version__,
      "calling_convention_version": int(exported.calling_convention_version),
      "platforms": list(exported.platforms),
      "input_shape": ["b", *trained.image_size, 3],
      "output": {"shape": ["b", int(exported.out_avals[0].shape[1])], "dtype": "float32"},
  })
  files = {ARTIFACT.format(name): blob for name, blob in blobs.items()}
  files[PREPROCESSING] = (json.dumps(pre, indent=1) + "\n").encode()
  atomic_write_folder(out_dir, files)
  return out_dir


def atomic_write_folder(out_dir: str, files: dict[str, bytes]) -> None:
  """Writes `files` (name → bytes) as the folder `out_dir`: built beside it, then renamed in.
  A previous `out_dir` is replaced only once the new one is complete."""
  out_dir = os.path.abspath(out_dir)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{out_dir}.tmp{os.getpid()}"
  old = f"{out_dir}.old{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    for name, data in files.items():
      path = os.path.join(tmp, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(data)
    if os.path.exists(out_dir):
      os.replace(out_dir, old)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(old) and not os.path.exists(out_dir):
      os.replace(old, out_dir)
    raise
  shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
  import argparse
  ap = argparse.ArgumentParser(prog="python -m ce2l_jax.export", description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True, help="a run's workdir with a finished re-ID stage")
  ap.add_argument("--out", default="", help="output folder (default <workdir>/export)")
  ap.add_argument("--platforms", default="", help="comma-separated lowering platforms, e.g. "
                  "cpu,cuda (default: this machine's)")
  ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  args = ap.parse_args(argv)
  try:
    trained = load_trained(args.workdir, step=args.step)
    out = args.out or os.path.join(trained.workdir, "export")
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()] or None
    write_export(trained, out, platforms)
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"exported {trained.model_name} (step {trained.step}) to {out}: "
        f"{', '.join(ARTIFACT.format(n) for n in MODALITIES)}, {PREPROCESSING}")
  return 0


def run_main() -> None:
  sys.exit(main())


if __name__ == "__main__":
  run_main()
