"""CelebA faces at 64x64 with two of its 40 binary attributes as y and s (default: y = Smiling, s = Male).

CelebA is never downloaded automatically: the hosted copies fail on their download quota more often than not. The
user downloads it by hand once and fairlab reads the official layout under the data root::

    $FAIRLAB_DATA/celeba/
      img_align_celeba/000001.jpg ... 202599.jpg   (the "Align&Cropped Images", unzipped)
      list_attr_celeba.txt                         (Anno/: image count, the 40 attribute names, one row per image)
      list_eval_partition.txt                      (Eval/: image name and 0 = train, 1 = valid, 2 = test)

A missing or incomplete folder raises one ``DatasetNotFoundError`` that says what is wrong and how to fix it.

Images (the null-sampling brief): Resize(64) (shorter side), CenterCrop(64), quantised to 5 bits with U(0, 1/32)
dequantisation noise (``fairlab.data.nifr.quantise``), then scaled to [-1, 1]: x is float32 (N, 3, 64, 64).

Protocols:
- ``"nifr"`` (default): every image pooled; the ``"representative"``, biased ``"train"`` (mixing factor ``eta``) and
  ``"test"`` splits of ``fairlab.data.nifr``, the same construction as Adult's.
- ``"official"``: the ``"train"`` / ``"valid"`` / ``"test"`` partition of ``list_eval_partition.txt``.

Only the images of the requested split (after ``subsample``) are decoded, with a few threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairlab import config
from fairlab.data._files import DatasetNotFoundError
from fairlab.data.base import BiasedDataset, check_subsample, subsample_index
from fairlab.data import nifr

IMAGES = "img_align_celeba"
ATTRIBUTES = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"
SPLITS = {"nifr": nifr.SPLITS, "official": ("train", "valid", "test")}
OFFICIAL_PARTITION = {"train": 0, "valid": 1, "test": 2}
IMAGE_SIZE = 64
QUANTISATION_BITS = 5

MANUAL_STEPS = """CelebA is not downloaded automatically (its hosted copies usually refuse on quota). To install it by hand:
  1. Open https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and follow its Google Drive (or Baidu) link.
  2. Download Img/img_align_celeba.zip, Anno/list_attr_celeba.txt and Eval/list_eval_partition.txt.
  3. mkdir -p {folder} && unzip img_align_celeba.zip -d {folder}
     then move list_attr_celeba.txt and list_eval_partition.txt into {folder}.
  Or point FAIRLAB_DATA at a folder whose celeba/ subfolder already holds them."""


def celeba_folder(root=None) -> Path:
    """``<root>/celeba`` (``root`` defaults to the data root, ``FAIRLAB_DATA``)."""
    return Path(root or config.data_root()) / "celeba"


def celeba_available(root=None) -> bool:
    """Whether CelebA is installed under the data root in the layout fairlab reads (the check of ``celeba``)."""
    try:
        load_celeba_attributes(root)
    except DatasetNotFoundError:
        return False
    return True


def _not_found(folder: Path, problems: list[str]) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"CelebA not found or incomplete under {folder}: " + "; ".join(problems) + ".\n"
        f"fairlab expects:\n  {folder / IMAGES}/000001.jpg ... 202599.jpg\n  {folder / ATTRIBUTES}\n"
        f"  {folder / PARTITION}\n" + MANUAL_STEPS.format(folder=folder)
    )


def load_celeba_attributes(root=None) -> tuple[pd.DataFrame, pd.Series]:
    """Check the layout; return (attributes, partition) indexed by image file name, in the files' order.

    ``attributes`` has one 0/1 int column per attribute (the files write -1/1); ``partition`` is 0/1/2 (train, valid,
    test). Raises ``DatasetNotFoundError`` for a missing or incomplete folder: every missing piece in one message.
    """
    folder = celeba_folder(root)
    problems = []
    if not folder.is_dir():
        raise _not_found(folder, ["the folder does not exist"])
    images = folder / IMAGES
    if (images / IMAGES).is_dir():
        problems.append(f"the images are one level too deep, in {images / IMAGES}: move them up into {images}")
    elif not images.is_dir():
        zipped = " (img_align_celeba.zip is there: unzip it in that folder)" if (folder / f"{IMAGES}.zip").exists() else ""
        problems.append(f"no {IMAGES}/ folder{zipped}")
    for name in (ATTRIBUTES, PARTITION):
        if not (folder / name).is_file():
            problems.append(f"no {name}")
    if problems:
        raise _not_found(folder, problems)

    try:
        with open(folder / ATTRIBUTES) as f:
            declared = int(f.readline())
        # line 2 names the 40 attributes; each later line has the file name first, so pandas makes it the index
        attributes = pd.read_csv(folder / ATTRIBUTES, sep=r"\s+", skiprows=1)
        partition = pd.read_csv(folder / PARTITION, sep=r"\s+", header=None, index_col=0).iloc[:, 0]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise _not_found(folder, [f"{ATTRIBUTES} or {PARTITION} is not in the official format ({e})"]) from None
    if len(attributes) != declared:
        problems.append(f"{ATTRIBUTES} declares {declared} images but lists {len(attributes)} (truncated?)")
    if not attributes.isin((-1, 1)).all().all():
        problems.append(f"{ATTRIBUTES} holds values other than -1 and 1")
    if not partition.index.equals(attributes.index) or not partition.isin((0, 1, 2)).all():
        problems.append(f"{PARTITION} does not list the same images as {ATTRIBUTES} with partitions 0, 1, 2")
    on_disk = set(os.listdir(images))
    missing = [name for name in attributes.index if name not in on_disk]
    if missing:
        problems.append(f"{len(missing)} of the {len(attributes)} images listed in {ATTRIBUTES} are missing from "
                        f"{IMAGES}/ (e.g. {', '.join(missing[:3])})")
    if problems:
        raise _not_found(folder, problems)
    return (attributes == 1).astype(np.int64), partition.astype(np.int64)


def _read_image(path: Path) -> torch.Tensor:
    """One image as the brief prepares it, before quantisation: Resize(64), CenterCrop(64); (3, 64, 64) uint8."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as image:
            image = TF.center_crop(TF.resize(image.convert("RGB"), IMAGE_SIZE), IMAGE_SIZE)
            return torch.from_numpy(np.array(image)).permute(2, 0, 1)
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetNotFoundError(f"CelebA image {path} cannot be read ({e}); unzip img_align_celeba.zip again.\n"
                                   + MANUAL_STEPS.format(folder=path.parent.parent)) from None


def _load_images(paths: list[Path], generator: torch.Generator, chunk: int = 4096) -> torch.Tensor:
    """Decode, quantise to 5 bits with dequantisation noise, scale to [-1, 1]: (N, 3, 64, 64) float32."""
    x = torch.empty(len(paths), 3, IMAGE_SIZE, IMAGE_SIZE)
    # decoding is most of the time and PIL releases the GIL while it decodes: a few threads pay
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), chunk):
            pixels = torch.stack(list(pool.map(_read_image, paths[start : start + chunk])))  # (B, 3, 64, 64) uint8
            x[start : start + len(pixels)] = nifr.quantise(pixels / 255.0, generator, QUANTISATION_BITS) * 2 - 1
    return x


def celeba(
    split: str = "train",
    *,
    protocol: str = "nifr",
    eta: float | None = None,
    sensitive_attribute: str = "Male",
    target_attribute: str = "Smiling",
    seed: int = 0,
    subsample: int | None = None,
    root=None,
) -> BiasedDataset:
    """A CelebA split as a ``BiasedDataset``: x (N, 3, 64, 64) in [-1, 1], y and s two binary attributes.

    Args:
        split: ``nifr``: ``"representative"``, ``"train"`` (biased, drawn with ``eta``) or ``"test"``; ``official``:
            ``"train"``, ``"valid"`` or ``"test"``.
        protocol: ``"nifr"`` (the null-sampling splits) or ``"official"`` (``list_eval_partition.txt``).
        eta: ``nifr`` only, mixing factor of the biased training set in [0, 1], default 1 (only s != y). The
            representative and test splits do not depend on it.
        sensitive_attribute, target_attribute: attribute names as ``list_attr_celeba.txt`` spells them
            (e.g. ``"Male"``, ``"Smiling"``, ``"Attractive"``, ``"Young"``); the attribute is 1 where the file says 1.
        seed: seeds the partition, the eta draw, the subsample and the dequantisation noise.
        subsample: keep a random subset of this many images of the split (only those are decoded).
        root: the data root (default ``FAIRLAB_DATA``); the files live in ``<root>/celeba``.

    ``aligned`` marks s == y; ``info`` records the attributes, the protocol, eta and the image file names.
    """
    if protocol not in SPLITS:
        raise ValueError(f"Unknown CelebA protocol {protocol!r}; choose one of {tuple(SPLITS)}.")
    if split not in SPLITS[protocol]:
        raise ValueError(f"CelebA protocol {protocol!r} has splits {SPLITS[protocol]}, not {split!r}.")
    if protocol == "nifr":
        eta = 1.0 if eta is None else nifr.check_eta(eta)
    elif eta is not None:
        raise ValueError(f"eta belongs to the null-sampling protocol: pass protocol='nifr' with eta={eta}.")
    if sensitive_attribute == target_attribute:
        raise ValueError(f"sensitive_attribute and target_attribute are both {target_attribute!r}; pick two.")
    check_subsample(subsample)

    attributes, official = load_celeba_attributes(root)
    for role, name in (("sensitive_attribute", sensitive_attribute), ("target_attribute", target_attribute)):
        if name not in attributes.columns:
            raise ValueError(f"{role}={name!r} is not a CelebA attribute; choose one of {list(attributes.columns)}.")
    y_all = torch.tensor(attributes[target_attribute].to_numpy())
    s_all = torch.tensor(attributes[sensitive_attribute].to_numpy())
    gen = torch.Generator().manual_seed(seed)
    if protocol == "official":
        rows = torch.nonzero(torch.tensor(official.to_numpy() == OFFICIAL_PARTITION[split])).flatten()
    elif split == "train":
        pool = nifr.partition(len(attributes), gen)["pool"]
        rows = pool[nifr.eta_mix(y_all[pool], s_all[pool], eta, gen)]
    else:
        rows = nifr.partition(len(attributes), gen)[split]
    name = f"celeba-{protocol}/{split}"
    check_subsample(subsample, len(rows), name)
    if subsample is not None and subsample < len(rows):
        rows = rows[subsample_index(len(rows), subsample, gen)]
    rows = torch.sort(rows).values  # read the files in their order on disk

    files = attributes.index[rows.numpy()].tolist()
    x = _load_images([celeba_folder(root) / IMAGES / f for f in files], gen)
    y, s = y_all[rows], s_all[rows]
    info = {"protocol": protocol, "split": split, "seed": seed, "sensitive_attribute": sensitive_attribute,
            "target_attribute": target_attribute, "value_range": (-1.0, 1.0), "files": files}
    if protocol == "nifr":
        info["eta"] = eta
    return BiasedDataset(x=x, y=y, s=s, aligned=s == y, num_classes=2, num_groups=2, name=name, info=info)
