"""The null-sampling data (Coloured MNIST ``nifr``, Adult ``nifr``, CelebA), point by point against the brief.

CelebA is tested only on a small stand-in with the official layout, generated here in tmp_path: never real images.
"""
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fairlab.data import BiasedDataset, DatasetNotFoundError, adult, celeba, coloured_mnist, load_mnist
from fairlab.data import nifr
from fairlab.data.coloured_mnist import NIFR_COLOURS

from conftest import needs_data


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces: partition, eta mixing, quantisation
# ---------------------------------------------------------------------------------------------------------------
def test_partition_is_sixty_forty_with_two_thirds_representative():
    parts = nifr.partition(1000, torch.Generator().manual_seed(0))
    assert {k: len(v) for k, v in parts.items()} == {"representative": 400, "test": 200, "pool": 400}
    every = torch.cat(list(parts.values()))
    assert sorted(every.tolist()) == list(range(1000))  # disjoint and covering


@pytest.mark.parametrize("eta, same, differ", [(0.0, 60, 0), (0.25, 60, 20), (0.5, 60, 40), (0.8, 24, 40),
                                               (1.0, 0, 40)])
def test_eta_mix_keeps_the_counts_the_brief_promises(eta, same, differ):
    # a pool of 60 samples with s == y and 40 with s != y
    y = torch.tensor([0] * 30 + [1] * 30 + [0] * 20 + [1] * 20)
    s = torch.tensor([0] * 30 + [1] * 30 + [1] * 20 + [0] * 20)
    keep = nifr.eta_mix(y, s, eta, torch.Generator().manual_seed(1))
    assert int((s[keep] == y[keep]).sum()) == same and int((s[keep] != y[keep]).sum()) == differ
    assert len(set(keep.tolist())) == len(keep)


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_eta_outside_zero_one_is_refused(eta):
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        nifr.check_eta(eta)


def test_quantise_keeps_five_bit_levels_and_adds_noise_below_one_level():
    x = torch.tensor([0.0, 0.5, 0.99, 1.0]).repeat(1000)
    q = nifr.quantise(x, torch.Generator().manual_seed(0), bits=5)
    assert torch.equal(torch.floor(q * 32), torch.tensor([0.0, 16.0, 31.0, 31.0]).repeat(1000))  # 1.0 folds into 31
    assert 0 <= float(q.min()) and float(q.max()) <= 1
    noise = q * 32 - torch.floor(q * 32)
    assert abs(float(noise.mean()) - 0.5) < 0.02 and abs(float(noise.std()) - 12**-0.5) < 0.02


# ---------------------------------------------------------------------------------------------------------------
# Coloured MNIST, null-sampling protocol
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nifr_mnist_zero_variance():
    return {split: coloured_mnist("nifr", split, colour_variance=0.0, seed=0)
            for split in ("representative", "train", "test")}


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x * 32).to(torch.uint8)  # the 5-bit level of every value, noise removed


def _digit_masks(data) -> torch.Tensor:
    return (_levels(data.x) > 0).any(1)  # (N, 32, 32): some channel above level 0 = a stroke pixel


@needs_data
def test_nifr_mnist_split_sizes_and_bias(nifr_mnist_zero_variance):
    rep, train, test = (nifr_mnist_zero_variance[k] for k in ("representative", "train", "test"))
    assert (len(rep), len(train), len(test)) == (24_000, 36_000, 10_000)
    assert all(isinstance(d, BiasedDataset) and d.num_groups == 10 for d in (rep, train, test))
    assert torch.equal(train.s, train.y) and bool(train.aligned.all())  # biased set: colour index = digit
    # representative and test: a uniformly random colour, s available and independent of the digit
    for data in (rep, test):
        assert data.s.shape == (len(data),) and data.s.dtype == torch.int64
        assert torch.bincount(data.s, minlength=10).min() > 0.08 * len(data)
        assert 0.08 < float(data.aligned.float().mean()) < 0.12


@needs_data
def test_nifr_mnist_partitions_the_training_digits_binarised_at_one_half(nifr_mnist_zero_variance):
    rep, train, test = (nifr_mnist_zero_variance[k] for k in ("representative", "train", "test"))
    images, labels = load_mnist("train")
    expected = F.pad(images, (2, 2, 2, 2)) > 127.5  # binarised at 0.5, padded to 32x32

    def fingerprints(masks, ys):
        return Counter((m.numpy().tobytes(), int(c)) for m, c in zip(masks, ys))

    # the representative and biased sets together hold every training digit exactly once
    together = fingerprints(_digit_masks(rep), rep.y) + fingerprints(_digit_masks(train), train.y)
    assert together == fingerprints(expected, labels)
    test_images, _ = load_mnist("test")
    assert torch.equal(_digit_masks(test), F.pad(test_images, (2, 2, 2, 2)) > 127.5)


@needs_data
def test_nifr_mnist_colours_are_the_palette_and_background_is_black(nifr_mnist_zero_variance):
    palette_levels = torch.floor(NIFR_COLOURS * 32).clamp(max=31).to(torch.uint8)  # (10, 3)
    # the brief's palette: cyan, blue, magenta, dark green, green, maroon, navy, purple, red, yellow
    assert (NIFR_COLOURS * 255).round().long().tolist() == [
        [0, 255, 255], [0, 0, 255], [255, 0, 255], [0, 128, 0], [0, 255, 0],
        [128, 0, 0], [0, 0, 128], [128, 0, 128], [255, 0, 0], [255, 255, 0],
    ]
    for data in nifr_mnist_zero_variance.values():
        levels, mask = _levels(data.x), _digit_masks(data)
        assert data.x.shape[1:] == (3, 32, 32) and data.x.dtype == torch.float32
        assert 0 <= float(data.x.min()) and float(data.x.max()) <= 1
        assert int(levels[:, :, :2].max()) == 0 and int(levels[:, :, :, -2:].max()) == 0  # the 2-pixel padding
        # every stroke pixel has exactly the palette colour of the image's s (variance 0), the rest is level 0
        expected = palette_levels[data.s][:, :, None, None] * mask[:, None]
        assert torch.equal(levels, expected)


@needs_data
def test_nifr_mnist_dequantisation_noise_is_uniform_below_one_level(nifr_mnist_zero_variance):
    x = nifr_mnist_zero_variance["test"].x
    noise = x * 32 - torch.floor(x * 32)
    assert abs(float(noise.mean()) - 0.5) < 0.01 and abs(float(noise.std()) - 12**-0.5) < 0.01


@needs_data
def test_nifr_mnist_colour_is_drawn_per_image_with_the_given_variance():
    variance = 0.02
    rep = coloured_mnist("nifr", "representative", colour_variance=variance, seed=1)
    levels = _levels(rep.x).flatten(2)  # (N, 3, 1024)
    stroke = levels.amax(2)  # (N, 3) the image's colour level: one colour for every stroke pixel
    mask = _digit_masks(rep).flatten(1)
    one_colour = (levels == stroke[:, :, None]) | ~mask[:, None]
    assert bool(one_colour.all())
    # dark green (s = 3) has G = 128/255: far from the clipping bounds, so its spread is the variance's
    green = (stroke[rep.s == 3, 1].double() + 0.5) / 32  # colour value recovered from the level
    assert abs(float(green.mean()) - 128 / 255) < 0.01
    assert abs(float(green.var()) - (variance + 1 / (12 * 32**2))) < 0.003


@needs_data
def test_nifr_mnist_is_deterministic_and_the_partition_follows_the_seed():
    a = coloured_mnist("nifr", "representative", seed=5, subsample=200)
    b = coloured_mnist("nifr", "representative", seed=5, subsample=200)
    assert torch.equal(a.x, b.x) and torch.equal(a.s, b.s)


# ---------------------------------------------------------------------------------------------------------------
# Adult, null-sampling protocol
# ---------------------------------------------------------------------------------------------------------------
@needs_data
def test_adult_nifr_splits_are_sixty_forty():
    n = 30_162 + 15_060  # both files pooled, rows with a missing value dropped
    rep = adult("representative", protocol="nifr")
    test = adult("test", protocol="nifr")
    pool = adult("train", protocol="nifr", eta=0.5)  # eta = 0.5 keeps the whole pool
    n_unbiased = int(0.6 * n)
    assert len(rep) == round(n_unbiased * 2 / 3) and len(test) == n_unbiased - len(rep)
    assert len(pool) == n - n_unbiased
    # s is there on the representative set; both unbiased splits hold every (y, s) pair
    for data in (rep, test):
        assert set(data.s.unique().tolist()) == {0, 1} and set(data.y.unique().tolist()) == {0, 1}
        assert set((2 * data.y + data.s).unique().tolist()) == {0, 1, 2, 3}
    # the representative and test splits do not depend on eta
    assert torch.equal(adult("test", protocol="nifr", eta=0.0).x, test.x)


@needs_data
@pytest.mark.parametrize("eta", [0.0, 0.2, 0.7, 1.0])
def test_adult_nifr_eta_mixing_counts(eta):
    pool = adult("train", protocol="nifr", eta=0.5)
    same, differ = int(pool.aligned.sum()), int((~pool.aligned).sum())
    train = adult("train", protocol="nifr", eta=eta)
    got = (int(train.aligned.sum()), int((~train.aligned).sum()))
    if eta < 0.5:
        assert got == (same, round(2 * eta * differ))
    else:
        assert got == (round(2 * (1 - eta) * same), differ)
    assert torch.equal(train.aligned, train.s == train.y)


@needs_data
def test_adult_nifr_features():
    rep = adult("representative", protocol="nifr")
    pool = adult("train", protocol="nifr", eta=0.5)
    names = rep.info["feature_names"]
    assert [n for n in names if n.startswith("native-country")] == ["native-country_Other",
                                                                     "native-country_United-States"]
    assert not any(n.startswith(("sex", "fnlwgt", "income")) for n in names)
    # one-hot: every categorical column group sums to one per row
    for prefix in ("workclass_", "education_", "marital-status_", "occupation_", "relationship_", "race_",
                   "native-country_"):
        columns = [i for i, n in enumerate(names) if n.startswith(prefix)]
        assert torch.equal(rep.x[:, columns].sum(1), torch.ones(len(rep)))
    # continuous columns standardised with the non-test rows (representative + pool)
    fit_rows = torch.cat([rep.x, pool.x])
    for column in ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week"):
        values = fit_rows[:, names.index(column)]
        assert abs(float(values.mean())) < 1e-4 and abs(float(values.std()) - 1) < 1e-3


# ---------------------------------------------------------------------------------------------------------------
# CelebA on a generated stand-in with the official layout
# ---------------------------------------------------------------------------------------------------------------
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
N_FAKE = 60


def make_fake_celeba(root, n=N_FAKE):
    """<root>/celeba with n small generated JPEGs (178 x 218 like the aligned crops) and the two list files.

    Every image has red bands, 15 pixels high, at the top and bottom and is blue in between: Resize(64) makes it
    64 x 78 and CenterCrop(64) cuts 7 rows from each end, which removes the bands.
    """
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(n, len(ATTRIBUTE_NAMES)))
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[:, :, 2] = 255
    pixels[:15, :, 0] = pixels[-15:, :, 0] = 255
    pixels[:15, :, 2] = pixels[-15:, :, 2] = 0
    for name in names:
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    # the official files: a count, the names (trailing space), then "name  v  v ..." with -1/1 padded to width 2
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(ATTRIBUTE_NAMES) + " \n" + "\n".join(rows) + "\n")
    partition = [0 if i < 0.8 * n else (1 if i < 0.9 * n else 2) for i in range(n)]
    (folder / "list_eval_partition.txt").write_text("".join(f"{m} {p}\n" for m, p in zip(names, partition)))
    return folder, names, values, partition


@pytest.fixture
def fake_celeba(tmp_path):
    return make_fake_celeba(tmp_path)


def _column(values, name):
    return torch.tensor((values[:, ATTRIBUTE_NAMES.index(name)] == 1).astype(np.int64))


def test_celeba_reads_the_layout_into_a_biased_dataset(fake_celeba, tmp_path):
    folder, names, values, _ = fake_celeba
    data = celeba("representative", root=tmp_path)
    assert isinstance(data, BiasedDataset) and data.num_classes == 2 and data.num_groups == 2
    assert data.x.shape == (len(data), 3, 64, 64) and data.x.dtype == torch.float32
    assert -1 <= float(data.x.min()) and float(data.x.max()) <= 1
    rows = [names.index(f) for f in data.info["files"]]
    assert torch.equal(data.y, _column(values, "Smiling")[rows])  # y = Smiling, s = Male by default
    assert torch.equal(data.s, _column(values, "Male")[rows])
    assert torch.equal(data.aligned, data.s == data.y)


def test_celeba_images_are_resized_centre_cropped_and_quantised(fake_celeba, tmp_path):
    data = celeba("test", root=tmp_path)
    levels = torch.floor((data.x + 1) / 2 * 32)  # back to [0, 1], then the 5-bit level
    # the red bands at the top and bottom are cropped away: every pixel is blue
    assert int(levels[:, 0].max()) <= 1 and int(levels[:, 2].min()) >= 30
    assert 0 <= int(levels.min()) and int(levels.max()) <= 31
    noise = (data.x + 1) / 2 * 32 - levels
    assert abs(float(noise.mean()) - 0.5) < 0.02  # dequantisation noise U(0, 1/32)


def test_celeba_nifr_splits_and_eta(fake_celeba, tmp_path):
    _, names, values, _ = fake_celeba
    files = {split: celeba(split, eta=0.5, root=tmp_path).info["files"] for split in ("representative", "train", "test")}
    assert [len(f) for f in files.values()] == [24, 24, 12]  # 60% unbiased (2/3, 1/3), 40% pool (eta 0.5: all)
    assert sorted(sum(files.values(), [])) == names  # disjoint and covering
    pool = [names.index(f) for f in files["train"]]
    same = int((_column(values, "Male")[pool] == _column(values, "Smiling")[pool]).sum())
    only_same = celeba("train", eta=0.0, root=tmp_path)
    only_differ = celeba("train", eta=1.0, root=tmp_path)
    assert len(only_same) == same and bool(only_same.aligned.all())
    assert len(only_differ) == len(pool) - same and not bool(only_differ.aligned.any())
    assert celeba("train", root=tmp_path).info["files"] == only_differ.info["files"]  # default eta = 1


def test_celeba_attributes_are_arguments(fake_celeba, tmp_path):
    _, names, values, _ = fake_celeba
    data = celeba("test", target_attribute="Attractive", sensitive_attribute="Young", root=tmp_path)
    rows = [names.index(f) for f in data.info["files"]]
    assert torch.equal(data.y, _column(values, "Attractive")[rows])
    assert torch.equal(data.s, _column(values, "Young")[rows])
    with pytest.raises(ValueError, match="'Smiles' is not a CelebA attribute.*'Smiling'"):
        celeba("test", target_attribute="Smiles", root=tmp_path)
    with pytest.raises(ValueError, match="both 'Male'"):
        celeba("test", target_attribute="Male", root=tmp_path)


def test_celeba_official_partition_subsample_and_determinism(fake_celeba, tmp_path):
    _, names, _, partition = fake_celeba
    valid = celeba("valid", protocol="official", root=tmp_path)
    assert valid.info["files"] == [n for n, p in zip(names, partition) if p == 1]
    small = celeba("train", protocol="official", subsample=5, seed=3, root=tmp_path)
    again = celeba("train", protocol="official", subsample=5, seed=3, root=tmp_path)
    assert len(small) == 5 and torch.equal(small.x, again.x) and small.info["files"] == again.info["files"]
    with pytest.raises(ValueError, match="eta belongs to the null-sampling protocol"):
        celeba("train", protocol="official", eta=0.5, root=tmp_path)
    with pytest.raises(ValueError, match="larger than celeba-official/valid, which has 6 samples"):
        celeba("valid", protocol="official", subsample=7, root=tmp_path)


@pytest.mark.parametrize(
    "damage, fragments",
    [
        ("no folder", ["the folder does not exist", "img_align_celeba.zip", "list_attr_celeba.txt"]),
        ("empty folder", ["no img_align_celeba/ folder; no list_attr_celeba.txt; no list_eval_partition.txt"]),
        ("zip not extracted", ["img_align_celeba.zip is there: unzip it"]),
        ("images one level too deep", ["one level too deep"]),
        ("an image missing", ["1 of the 60 images listed in list_attr_celeba.txt are missing", "000007.jpg"]),
        ("attribute list truncated", ["declares 60 images but lists 59"]),
        ("partition list missing", ["no list_eval_partition.txt"]),
        ("an image corrupted", ["000003.jpg cannot be read"]),
    ],
)
def test_missing_or_incomplete_celeba_gets_one_clear_error(tmp_path, damage, fragments):
    folder = tmp_path / "celeba"
    if damage != "no folder":
        folder, *_ = make_fake_celeba(tmp_path)
    images = folder / "img_align_celeba"
    if damage == "empty folder":
        for path in [*images.iterdir(), images, folder / "list_attr_celeba.txt", folder / "list_eval_partition.txt"]:
            path.unlink() if path.is_file() else path.rmdir()
    elif damage in ("zip not extracted", "images one level too deep"):
        target = folder / "img_align_celeba.zip" if damage == "zip not extracted" else folder / "tmp"
        images.rename(target)
        if damage == "images one level too deep":
            images.mkdir()
            target.rename(images / "img_align_celeba")
    elif damage == "an image missing":
        (images / "000007.jpg").unlink()
    elif damage == "attribute list truncated":
        path = folder / "list_attr_celeba.txt"
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    elif damage == "partition list missing":
        (folder / "list_eval_partition.txt").unlink()
    elif damage == "an image corrupted":
        (images / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetNotFoundError) as info:
        celeba("train", protocol="official", root=tmp_path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "not downloaded automatically" in message and str(folder) in message
