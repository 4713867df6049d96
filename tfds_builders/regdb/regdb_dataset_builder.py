"""RegDB as a TFDS dataset, one builder config per trial (array_record, no TensorFlow).

Build (the data must be requested from its authors, see `MANUAL_DOWNLOAD_INSTRUCTIONS`):

  python -m ce2l_jax.tfds_build tfds_builders/regdb --config=trial1 --manual_dir=/data/manual --data_dir=/data/tfds

(without `--config` all ten trials are built). Read:
`tfds.data_source("regdb/trial1", data_dir="/data/tfds", split="test")`.
"""

import dataclasses

from etils import epath
import tensorflow_datasets as tfds

from tfds_builders import features, manual_check

ROOT_FOLDER = "RegDB"
TRIALS = tuple(range(1, 11))
# Index-file word -> (image folder as released, camid).
MODALITIES = {"visible": ("Visible", 1), "thermal": ("Thermal", 2)}

_LINE_EXPECTED = "'<Visible|Thermal>/<identity number>/<image>.bmp <label>'"
_TREE = f"""\
Expected tree (--manual_dir may also point at {ROOT_FOLDER}/ itself):
  <manual_dir>/{ROOT_FOLDER}/
    Visible/<identity>/*.bmp       e.g. Visible/1/female_back_v_00001_1.bmp
    Thermal/<identity>/*.bmp       the same identity numbers
    idx/train_visible_<t>.txt      t = 1..10; each line {_LINE_EXPECTED},
    idx/train_thermal_<t>.txt      the path relative to {ROOT_FOLDER}/ (as read by the public
    idx/test_visible_<t>.txt       AGW/DDAG code: data_dir + path)
    idx/test_thermal_<t>.txt
"""


@dataclasses.dataclass(eq=False)
class RegdbConfig(tfds.core.BuilderConfig):
  """One of the ten standard random train/test identity splits."""
  trial: int = 1


@dataclasses.dataclass(frozen=True)
class _Image:
  file: str  # Relative to RegDB/: <Visible|Thermal>/<identity>/<name>.bmp
  pid: int
  camid: int


@dataclasses.dataclass(frozen=True)
class _Checked:
  root: epath.Path
  splits: dict[str, list[_Image]]
  infos: dict[epath.Path, manual_check.ImageInfo]


def _modality_folder(root: epath.Path, name: str) -> str:
  """The folder `name` under `root`, matched without regard to case (some copies use `visible`)."""
  for p in root.iterdir():
    if p.name.lower() == name.lower() and p.is_dir():
      return p.name
  raise manual_check.ManualDirError(
      f"{root / name} is missing; expected the folder of {name.lower()} images "
      f"({name}/<identity>/*.bmp).")


def _normalize(path: str) -> str:
  """An index path as written by the various releases -> `Folder/identity/name`."""
  path = path.replace("\\", "/")
  while path.startswith("./"):
    path = path[2:]
  if path.startswith(f"{ROOT_FOLDER}/"):
    path = path[len(ROOT_FOLDER) + 1:]
  return path


def _read_index(idx: epath.Path, root: epath.Path, folder: str, camid: int) -> list[_Image]:
  """The images one `idx/*.txt` file lists, every line checked."""
  manual_check.require_file(idx, f"one line per image, {_LINE_EXPECTED}")
  images, bad, seen = [], [], set()
  expected = _LINE_EXPECTED.replace("<Visible|Thermal>", folder)
  for n, line in enumerate(idx.read_text().splitlines(), 1):
    if not line.strip():
      continue
    parts = line.split()
    parsed = _normalize(parts[0]).split("/")
    if (len(parts) != 2 or not parts[1].lstrip("-").isdigit() or len(parsed) != 3
        or parsed[0].lower() != folder.lower() or not parsed[1].isdigit() or not parsed[2]):
      bad.append(f"line {n}: {line.strip()!r} is not {expected}")
      continue
    file = "/".join([folder, *parsed[1:]])
    if file in seen:
      bad.append(f"line {n}: {file} is listed twice")
    elif not (root / file).is_file():
      bad.append(f"line {n}: {root / file} does not exist")
    else:
      seen.add(file)
      images.append(_Image(file, int(parsed[1]), camid))
  if bad:
    raise manual_check.ManualDirError(
        f"{idx}: {len(bad)} bad line(s); expected {_LINE_EXPECTED} naming an image under "
        f"{root}:\n{manual_check.listing(bad)}")
  if not images:
    raise manual_check.ManualDirError(f"{idx} lists no image; expected {_LINE_EXPECTED} lines.")
  return images


class Regdb(manual_check.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
  """RegDB visible–thermal person re-ID (Nguyen et al., Sensors 2017), one config per trial.

  Records: `image` (uint8 H×W×3, PNG re-encoded from the released BMP, lossless; 1-channel
  thermal images repeated to 3 channels), `pid` (the identity folder's number, `Visible/<id>/`,
  the same for both modalities; the labels in the index files are not used), `camid` (1
  visible, 2 thermal), `modality` (0 visible, 1 infrared), `file` (relative to RegDB/, e.g.
  `Thermal/1/male_front_t_00007_1.bmp`).

  Configs `trial1` … `trial10`: `train` and `test` are read from that trial's
  `idx/{train,test}_{visible,thermal}_<t>.txt`.

  Statistics of the real set: 412 identities with 10 visible + 10 thermal images each (8,240
  images, one visible and one thermal camera). Every trial splits the identities 206 / 206:

  | split | identities | visible | thermal | total |
  |-------|-----------:|--------:|--------:|------:|
  | train | 206        | 2,060   | 2,060   | 4,120 |
  | test  | 206        | 2,060   | 2,060   | 4,120 |

  Evaluation (per trial, mean over the ten): visible→thermal and thermal→visible, all test
  images of one modality as queries and all of the other as gallery.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Released layout; ten trial configs; PNG images."}
  BUILDER_CONFIGS = [
      RegdbConfig(name=f"trial{t}", trial=t,
                  description=f"Trial {t}: idx/{{train,test}}_{{visible,thermal}}_{t}.txt")
      for t in TRIALS
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
RegDB is not downloadable by script. Request it from Dongguk University (Dat Tien Nguyen, Hyung
Gil Hong, Ki Wan Kim, Kang Ryoung Park, "Person Recognition System Based on a Combination of Body
Images from Visible Light and Thermal Cameras", Sensors 17(3):605, 2017; the Dongguk Body-based
Person Recognition Database (DBPerson-Recog-DB1), http://dm.dgu.edu/link.html). The ten trial
index files (idx/) are the ones distributed with the public VI-ReID code (e.g. AGW/DDAG,
github.com/mangye16/Cross-Modal-Re-ID-baseline). Pass the folder holding RegDB/ as --manual_dir.
{_TREE}"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="RegDB visible/thermal person re-identification (412 identities).",
        features=features.features("png"),
        homepage="http://dm.dgu.edu/link.html",
        citation="""@article{nguyen2017person,
  title={Person Recognition System Based on a Combination of Body Images from Visible Light and
         Thermal Cameras},
  author={Nguyen, Dat Tien and Hong, Hyung Gil and Kim, Ki Wan and Park, Kang Ryoung},
  journal={Sensors}, volume={17}, number={3}, pages={605}, year={2017}}""",
    )

  def _check_manual_dir(self, manual_dir: epath.Path) -> _Checked:
    """Checks the layout, this trial's four index files and every image they list."""
    root = manual_check.find_root(manual_dir, ROOT_FOLDER, ["idx"],
                                  instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    trial = self.builder_config.trial
    folders = {kind: _modality_folder(root, folder) for kind, (folder, _) in MODALITIES.items()}
    splits = {}
    for split in ("train", "test"):
      splits[split] = [
          im for kind, (_, camid) in MODALITIES.items()
          for im in _read_index(root / "idx" / f"{split}_{kind}_{trial}.txt", root, folders[kind],
                                camid)]
    pids = {split: {im.pid for im in images} for split, images in splits.items()}
    manual_check.check_disjoint_ids(pids["train"], pids["test"],
                                    f"{root / 'idx'}/train_*_{trial}.txt",
                                    f"{root / 'idx'}/test_*_{trial}.txt")
    infos = manual_check.check_images(root / im.file for images in splits.values()
                                      for im in images)
    for split, images in splits.items():
      manual_check.log_split(f"{root} trial {trial} {split}", len(pids[split]), len(images),
                             sum(im.camid == 2 for im in images), "thermal")
    return _Checked(root, splits, infos)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    checked = self.checked_manual_dir(dl_manager)
    return {split: self._generate_examples(checked, images)
            for split, images in checked.splits.items()}

  def _generate_examples(self, checked: _Checked, images: list[_Image]):
    for im in images:
      path = checked.root / im.file
      yield im.file, features.example(manual_check.feature_image(path, checked.infos[path], "png"),
                                      im.pid, im.camid, im.camid == 2, im.file)
