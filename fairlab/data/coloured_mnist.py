"""Coloured MNIST under the three protocols the course's papers use (they differ; do not mix them up).

| protocol | used by           | colour                                    | bias attribute ``s``            | splits |
|----------|-------------------|-------------------------------------------|---------------------------------|--------|
| ``lff``  | SiH, LfF          | one RGB per image, mean[b] + N(0, std^2)  | colour index b (0..9)           | train (rho conflicting), test (90% conflicting) |
| ``kim``  | MI backprop       | binarised digit, class mean + N(0, variance), random class at test | 24-dim colour code | train, test |
| ``nifr`` | null-sampling     | binarised digit, palette + N(0, variance) | colour index (0..9)             | representative (24k, random colour), train (36k, s = y), test |

Every image is a digit (grey for ``lff``, binarised for ``kim`` and ``nifr``) multiplied by a colour (black
background, coloured strokes), float32 in [0, 1], shape (3, 28, 28) (``nifr``: (3, 32, 32), 5-bit quantised).
Generation is deterministic for a given ``seed``.

``kim`` in detail: Kim et al. released their data as ``mnist_10color_jitter_var_<sigma^2>.npy`` (sigma^2 in
``KIM_RELEASED_VARIANCES``), to be downloaded by hand (``KIM_DATA_URL``) into ``$FAIRLAB_DATA/kim/``. When the file
for the requested variance is there, it is what ``coloured_mnist("kim", ...)`` returns (``info["source"]`` names it);
otherwise the split is our reconstruction of it (``info["source"] == "reconstruction"``), one of two
(``kim_reconstruction``): ``"estimated"`` (the default), the digit binarised at 0.5 (grey > 128/255) and painted one
flat colour, ``KIM_ESTIMATED_COLOURS[class]`` + N(0, variance * I_3) clipped to [0, 1], on a black background, with a
palette estimated from the authors' published sample images (Kim et al.'s baseline network reaches their published
baseline on it within about 0.03); or ``"hues"``, the course's first reconstruction, the grey digit times ten evenly
spaced, fully saturated hues plus the same jitter (its colours are further apart, so its bias is easier to read). The
class is the digit in training and drawn at random at test.

``nifr`` in detail (the null-sampling brief): digits binarised at 0.5; per-image colour drawn from
N(palette[s], variance * I_3) and clipped to [0, 1]; zero-padded to 32x32; quantised to 5 bits, floor(x * 32) / 32,
plus U(0, 1/32) dequantisation noise. MNIST's 60,000 training images are split at random (the same partition for a
given seed) into

- ``"representative"`` (24,000): a random colour per image, independent of the digit. The generative model learns
  from x and s (the colour index) here.
- ``"train"`` (36,000): the *biased* training set of the downstream classifier, colour index = digit (s = y).
- ``"test"`` (MNIST's 10,000 test images): a random colour per image.
"""
from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fairlab import config
from fairlab.data._files import load_pickled_npy
from fairlab.data.base import BiasedDataset, check_subsample
from fairlab.errors import DatasetNotFoundError
from fairlab.data.mnist import load_mnist
from fairlab.data.nifr import quantise

PROTOCOLS = ("lff", "kim", "nifr")
SPLITS = {"lff": ("train", "test"), "kim": ("train", "test"), "nifr": ("representative", "train", "test")}
# images per split (MNIST's files are md5-checked, so these are known before loading them)
SPLIT_SIZES = {"train": 60_000, "test": 10_000, "representative": 24_000, "nifr-train": 36_000}

# LfF's ten mean colours (RGB in [0, 1]), from the SiH/LfF brief.
LFF_COLOURS = torch.tensor([
    [0.9837, 0.3125, 0.1686], [0.9905, 0.9156, 0.3515], [0.6730, 0.4611, 0.5798], [0.7833, 0.8316, 0.6013],
    [0.0880, 0.7780, 0.9818], [0.3214, 0.9611, 0.4464], [0.0246, 0.2357, 0.7587], [0.5552, 0.1016, 0.7618],
    [0.2077, 0.3929, 0.0187], [0.8337, 0.2024, 0.2669],
])
# Null-sampling's palette: cyan, blue, magenta, dark green, green, maroon, navy, purple, red, yellow.
NIFR_COLOURS = torch.tensor([
    [0, 255, 255], [0, 0, 255], [255, 0, 255], [0, 128, 0], [0, 255, 0],
    [128, 0, 0], [0, 0, 128], [128, 0, 128], [255, 0, 0], [255, 255, 0],
]) / 255.0
# Kim et al.'s ten mean colours are not published as numbers. These are *estimates*, read off the stroke colours of
# the authors' published sample images (each about +-0.07 per channel, so the reconstruction's numbers can differ
# from those on the released files). They mix hue and brightness, so some pairs (red/maroon, red/orange,
# yellow/light green) are closer than ten evenly spaced hues would be: the jitter blurs them first.
KIM_ESTIMATED_COLOURS = torch.tensor([
    [0.84, 0.10, 0.17],  # 0 red
    [0.08, 0.58, 0.47],  # 1 teal
    [0.87, 0.89, 0.18],  # 2 yellow
    [0.12, 0.36, 0.84],  # 3 blue
    [0.93, 0.43, 0.17],  # 4 orange
    [0.56, 0.10, 0.78],  # 5 purple
    [0.33, 0.81, 0.85],  # 6 cyan
    [0.88, 0.68, 0.80],  # 7 pink
    [0.60, 0.89, 0.38],  # 8 light green
    [0.47, 0.15, 0.18],  # 9 dark maroon
])
# The course's first reconstruction (kim_reconstruction="hues"): ten evenly spaced, fully saturated hues on the grey
# (anti-aliased) digit. Its hues are further apart than the authors' colours, so its bias is easier to read.
KIM_HUES = torch.tensor([colorsys.hsv_to_rgb(k / 10, 1.0, 1.0) for k in range(10)], dtype=torch.float32)
KIM_RECONSTRUCTIONS = ("estimated", "hues")
# Kim et al.'s released files: one per colour variance, a pickled dict of uint8 images and integer labels
KIM_RELEASED_VARIANCES = (0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050)
KIM_KEYS = ("train_image", "train_label", "test_image", "test_label", "test_gray")
# the link in the README of github.com/feidfoe/learning-not-to-learn (its dataset/colored_mnist/README.md links
# another copy: https://drive.google.com/file/d/1NSv4RCSHjcHois3dXjYw_PaLIoVlLgXu/view)
KIM_DATA_URL = "https://drive.google.com/file/d/11K-GmFD5cg3_KTtyBRkj9VBEnHl-hx_Q/view?usp=sharing"

KIM_CODE_BINS = 8  # per channel -> 3 * 8 = 24-dim code


def lff_bias_labels(targets: torch.Tensor, bias_aligned_ratio: float, num_classes: int = 10) -> torch.Tensor:
    """Assign a colour index to every image: LfF's cumulative-milestone rule.

    For class c the colours 0..9 get shares ``bias_aligned_ratio`` (colour c) and
    ``(1 - bias_aligned_ratio) / 9`` (each other colour). Going through the class's images in data-set order,
    image i takes the first colour whose rounded cumulative share exceeds i. Rounding the *cumulative* counts
    (not each share) is what gives the published exact counts, e.g. 598 conflicting images at rho = 1%.
    """
    counts = torch.bincount(targets, minlength=num_classes).double()  # (C,)
    eye = torch.eye(num_classes, dtype=torch.float64)
    shares = bias_aligned_ratio * eye + (1 - bias_aligned_ratio) / (num_classes - 1) * (1 - eye)  # (C, C)
    milestones = torch.round(counts[:, None] * shares.cumsum(1))  # (C, C); round half to even, like NumPy
    # rank of each image within its class, in data-set order
    order = torch.argsort(targets, stable=True)
    rank = torch.empty_like(targets)
    starts = torch.cumsum(counts.long(), 0) - counts.long()
    rank[order] = torch.arange(len(targets)) - starts[targets[order]]
    # colour = number of milestones of its class that are <= its rank
    return (milestones[targets] <= rank[:, None].double()).sum(1)


def colourise(grey: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, H, W) digits in [0, 1] times (N, 3) colours -> (N, 3, H, W): coloured strokes on black."""
    return grey[:, None] * colours[:, :, None, None]


def colour_code(x: torch.Tensor, bins: int = KIM_CODE_BINS) -> torch.Tensor:
    """Kim et al.'s bias label: per-channel max over pixels, quantised into ``bins``, one-hot per channel.

    (N, 3, H, W) -> (N, 3 * bins) float, exactly three ones per row.
    """
    peak = x.flatten(2).amax(2)  # (N, 3): the stroke colour, since the background is black
    level = (peak * bins).long().clamp_(0, bins - 1)
    return F.one_hot(level, bins).flatten(1).float()


def colour_code_index(code: torch.Tensor, bins: int = KIM_CODE_BINS) -> torch.Tensor:
    """Kim's (N, 3 * bins) one-hot colour code as one discrete value per image: (N,) int64 in [0, bins^3).

    The index of the (red, green, blue) levels, red most significant: what a count-based statistic such as
    ``metrics.discrete_mutual_information`` needs.
    """
    if code.ndim != 2 or code.shape[1] != 3 * bins:
        raise ValueError(f"expected a colour code of shape (N, {3 * bins}), got {tuple(code.shape)}.")
    levels = code.view(-1, 3, bins).argmax(2)  # (N, 3)
    return levels[:, 0] * bins**2 + levels[:, 1] * bins + levels[:, 2]


def kim_folder(root: Path | str | None = None) -> Path:
    """Where Kim et al.'s released files are looked for: ``<data root>/kim``."""
    return Path(root or config.data_root()) / "kim"


def kim_filename(variance: float) -> str:
    """The released file's name for a colour variance (the authors write it with three decimals)."""
    return f"mnist_10color_jitter_var_{variance:.3f}.npy"


def kim_released_file(variance: float, root: Path | str | None = None) -> Path | None:
    """The released file for ``variance`` if the data root holds it, else ``None`` (the split is reconstructed)."""
    if not any(math.isclose(variance, v) for v in KIM_RELEASED_VARIANCES):
        return None
    path = kim_folder(root) / kim_filename(variance)
    return path if path.exists() else None


def load_kim_file(path: Path | str) -> dict[str, np.ndarray]:
    """Read and check one of Kim et al.'s released files: ``{key: array}`` for the keys of ``KIM_KEYS``.

    The file is a pickle, read with ``load_pickled_npy`` (NumPy arrays only; a file that asks for anything else is
    refused before it runs). Images must be (N, 28, 28, 3) uint8, labels (N,) integers in 0..9. Anything else
    raises one ``DatasetNotFoundError`` naming the file, what is wrong and how to get a good copy.
    """
    path = Path(path)

    def refuse(problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{path} is not a usable copy of Kim et al.'s Coloured MNIST: {problem}. Download it again from the "
            f"authors' link ({KIM_DATA_URL}, listed in the README of github.com/feidfoe/learning-not-to-learn) into "
            f"{path.parent}, or delete it to use fairlab's reconstruction of the data."
        )

    try:
        content = load_pickled_npy(path)
    except Exception as e:  # a truncated file, a foreign pickle, a refused class: all "not the released file"
        raise refuse(f"it cannot be read safely ({type(e).__name__}: {e})") from None
    if not isinstance(content, dict):
        raise refuse(f"it holds a {type(content).__name__}, not a dict of arrays")
    if sorted(content) != sorted(KIM_KEYS):
        raise refuse(f"its keys are {sorted(map(str, content))}, expected {sorted(KIM_KEYS)}")
    for part in ("train", "test"):
        images, labels = content[f"{part}_image"], content[f"{part}_label"]
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1:] != (28, 28, 3):
            raise refuse(f"{part}_image has shape {getattr(images, 'shape', None)}, expected (N, 28, 28, 3)")
        if images.dtype != np.uint8:
            raise refuse(f"{part}_image has dtype {images.dtype}, expected uint8")
        if not isinstance(labels, np.ndarray) or labels.shape != images.shape[:1]:
            raise refuse(f"{part}_label has shape {getattr(labels, 'shape', None)}, expected ({len(images)},)")
        if labels.dtype.kind not in "iu" or len(labels) and not (0 <= labels.min() and labels.max() <= 9):
            raise refuse(f"{part}_label must hold integers 0..9 (dtype {labels.dtype})")
    gray = content["test_gray"]
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or len(gray) != len(content["test_image"]):
        raise refuse(f"test_gray must be a uint8 array with one image per test image, got "
                     f"{getattr(gray, 'dtype', type(gray).__name__)} of shape {getattr(gray, 'shape', None)}")
    return content


def _kim_released(path: Path, split: str):
    """(x, targets, colour class) of one split of a released file. The training colour follows the digit; a test
    image's colour class is read off its strokes: the nearest colour of our palette estimate."""
    content = load_kim_file(path)
    x = torch.from_numpy(content[f"{split}_image"]).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 28, 28)
    targets = torch.from_numpy(content[f"{split}_label"].astype(np.int64))
    if split == "train":
        return x, targets, targets.clone()
    stroke = x.flatten(2).amax(2)  # (N, 3): the stroke colour, on a black background
    return x, targets, torch.cdist(stroke, KIM_ESTIMATED_COLOURS).argmin(1)


def _check(protocol, split, bias_conflicting_ratio, colour_std, colour_variance, subsample):
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown Coloured MNIST protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if split not in SPLITS[protocol]:
        raise ValueError(f"Protocol {protocol!r} has splits {SPLITS[protocol]}, not {split!r}.")
    if protocol == "lff":
        if not 0 < bias_conflicting_ratio < 1:
            raise ValueError(
                f"bias_conflicting_ratio (rho) must lie in (0, 1), got {bias_conflicting_ratio}; e.g. 0.01 for 1%."
            )
        if colour_variance is not None:
            raise ValueError("protocol 'lff' takes colour_std (sigma, default 0.005), not colour_variance.")
    else:
        if colour_std is not None:
            raise ValueError(f"protocol {protocol!r} takes colour_variance (sigma^2), not colour_std.")
        if bias_conflicting_ratio is not None:
            raise ValueError(f"protocol {protocol!r} has no bias_conflicting_ratio; only 'lff' does.")
    size = SPLIT_SIZES["nifr-train" if (protocol, split) == ("nifr", "train") else split]
    check_subsample(subsample, size, f"cmnist-{protocol}/{split}")
    for name, value in (("colour_std", colour_std), ("colour_variance", colour_variance)):
        # "not >= 0" also catches NaN, which would otherwise reach training as a NaN loss
        if value is not None and not (0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")


def coloured_mnist(
    protocol: str,
    split: str = "train",
    *,
    bias_conflicting_ratio: float | None = None,
    colour_std: float | None = None,
    colour_variance: float | None = None,
    seed: int = 0,
    subsample: int | None = None,
    root=None,
    download: bool = True,
    kim_reconstruction: str = "estimated",
) -> BiasedDataset:
    """Build a Coloured MNIST split.

    Args:
        protocol: ``"lff"``, ``"kim"`` or ``"nifr"`` (see the module docstring).
        split: ``"train"`` / ``"test"``; ``nifr`` also has ``"representative"`` (its ``"train"`` is the biased
            training set, s = y).
        bias_conflicting_ratio: ``lff`` only, rho in (0, 1), default 0.01. The test split always has 90% conflicting.
        colour_std: ``lff`` only, sigma of the per-image colour jitter, default 0.005 (LfF "severity 4").
        colour_variance: ``kim`` (default 0.02) and ``nifr`` (default 0.02): sigma^2 of the colour jitter. ``kim``
            reads the authors' released file for this variance from ``<data root>/kim/`` when it is there.
        seed: seeds colour noise (and the nifr split); the same seed gives the same tensors.
        subsample: keep a random subset of this many images (quick runs), at most the split's size; the protocol is
            applied first.
        kim_reconstruction: ``kim`` without the released file: ``"estimated"`` (default) or ``"hues"`` (see the
            module docstring).
    """
    if protocol == "lff" and bias_conflicting_ratio is None:
        bias_conflicting_ratio = 0.01
    _check(protocol, split, bias_conflicting_ratio, colour_std, colour_variance, subsample)
    if kim_reconstruction not in KIM_RECONSTRUCTIONS:
        raise ValueError(f"kim_reconstruction must be one of {', '.join(KIM_RECONSTRUCTIONS)}, got "
                         f"{kim_reconstruction!r}.")
    # a different stream per split, so train and test colours are independent draws
    gen = torch.Generator().manual_seed(seed * 1000 + SPLITS[protocol].index(split))
    # kim: the authors' released file when the data root has the one for this variance (then MNIST is not read)
    released = kim_released_file(0.02 if colour_variance is None else colour_variance, root) \
        if protocol == "kim" else None
    if released is None:
        images, targets = load_mnist("test" if split == "test" else "train", root=root, download=download)
        grey = images.float() / 255.0  # (N, 28, 28)
    info = {"protocol": protocol, "split": split, "seed": seed}
    group = None  # = s, except for kim where s is a 24-dim code

    if protocol == "lff":
        rho = 0.9 if split == "test" else bias_conflicting_ratio
        std = 0.005 if colour_std is None else colour_std
        bias = lff_bias_labels(targets, 1 - rho)
        colours = (LFF_COLOURS[bias] + std * torch.randn(len(bias), 3, generator=gen)).clamp(0, 1)
        keep = _subsample(len(targets), subsample, gen)
        grey, targets, bias, colours = grey[keep], targets[keep], bias[keep], colours[keep]
        # LfF stores uint8 images; quantise the same way so pixel values match
        x = torch.round(colourise(grey, colours) * 255) / 255
        s, aligned, num_groups = bias, bias == targets, 10
        info.update(bias_conflicting_ratio=rho, colour_std=std)
    elif protocol == "kim":
        variance = 0.02 if colour_variance is None else colour_variance
        if released is not None:
            x, targets, colour_class = _kim_released(released, split)
            keep = _subsample(len(targets), subsample, gen)
            x, targets, colour_class = x[keep], targets[keep], colour_class[keep]
            info.update(source=f"released file {released.name}")
        else:
            # training colours follow the digit; test colours follow a random class, so colour carries no label
            colour_class = targets if split == "train" else torch.randint(0, 10, targets.shape, generator=gen)
            jitter = variance**0.5 * torch.randn(len(targets), 3, generator=gen)
            keep = _subsample(len(targets), subsample, gen)
            grey, targets, colour_class, jitter = grey[keep], targets[keep], colour_class[keep], jitter[keep]
            if kim_reconstruction == "estimated":
                # flat strokes: every stroke pixel has exactly the image's colour, as in the authors' samples
                x = colourise((grey > 0.5).float(), (KIM_ESTIMATED_COLOURS[colour_class] + jitter).clamp(0, 1))
            else:
                x = colourise(grey, (KIM_HUES[colour_class] + jitter).clamp(0, 1))
            info.update(source="reconstruction", reconstruction=kim_reconstruction)
        s, aligned, num_groups = colour_code(x), colour_class == targets, 3 * KIM_CODE_BINS
        group = colour_class  # group metrics use the colour's class
        info.update(colour_variance=variance)
    else:  # nifr
        variance = 0.02 if colour_variance is None else colour_variance
        split_gen = torch.Generator().manual_seed(seed)  # the same 24k/36k partition for both train-side splits
        if split != "test":
            order = torch.randperm(len(targets), generator=split_gen)
            keep = order[:24_000] if split == "representative" else order[24_000:]
            grey, targets = grey[keep], targets[keep]
        bias = targets.clone() if split == "train" else torch.randint(0, 10, targets.shape, generator=gen)
        colours = (NIFR_COLOURS[bias] + variance**0.5 * torch.randn(len(bias), 3, generator=gen)).clamp(0, 1)
        x = F.pad(colourise((grey > 0.5).float(), colours), (2, 2, 2, 2))  # (N, 3, 32, 32)
        x = quantise(x, gen, bits=5)  # 5-bit levels plus U(0, 1/32) dequantisation noise
        s, aligned, num_groups = bias, bias == targets, 10
        info.update(colour_variance=variance)

    data = BiasedDataset(
        x=x.float(), y=targets, s=s, aligned=aligned, group=group, num_classes=10, num_groups=num_groups,
        name=f"cmnist-{protocol}/{split}", info=info,
    )
    if protocol == "nifr" and subsample is not None and subsample < len(data):
        # (lff and kim subsample before colouring, above: the same images, drawn the same way)
        data = data.subset(_subsample(len(data), subsample, gen))
    return data


def _subsample(n: int, subsample: int | None, gen: torch.Generator) -> torch.Tensor | slice:
    """Which of n images a quick run keeps: a random ``subsample`` of them, drawn from ``gen`` after the protocol's
    own draws (so the colours of the kept images do not depend on whether the others are built)."""
    if subsample is None or subsample >= n:
        return slice(None)
    return torch.randperm(n, generator=gen)[:subsample]
