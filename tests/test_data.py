"""Data sets: exact counts of the protocols, determinism, and the errors a user sees."""
import os
import shutil

import pytest
import torch

from fairlab.data import BiasedDataset, DatasetNotFoundError, adult, coloured_mnist, load_mnist
from fairlab.data.adult import eta_mix
from fairlab.data.coloured_mnist import colour_code, lff_bias_labels

from conftest import needs_data


@needs_data
@pytest.mark.parametrize("rho, conflicting", [(0.005, 300), (0.01, 598), (0.02, 1199), (0.05, 3000)])
def test_lff_train_counts_match_the_protocol(rho, conflicting):
    data = coloured_mnist("lff", "train", bias_conflicting_ratio=rho)
    assert len(data) == 60_000
    assert int((~data.aligned).sum()) == conflicting
    assert int(data.aligned.sum()) == 60_000 - conflicting


@needs_data
def test_lff_test_split_is_ninety_percent_conflicting():
    data = coloured_mnist("lff", "test")
    assert (int((~data.aligned).sum()), int(data.aligned.sum())) == (9_000, 1_000)


def test_lff_rule_spreads_conflicting_samples_over_the_other_colours():
    targets = torch.arange(10).repeat_interleave(100)  # 100 images per class
    bias = lff_bias_labels(targets, bias_aligned_ratio=0.91)
    for c in range(10):
        counts = torch.bincount(bias[targets == c], minlength=10)
        assert counts[c] == 91
        assert counts.sum() == 100 and (counts[torch.arange(10) != c] == 1).all()


@needs_data
def test_lff_images_are_coloured_digits_on_black():
    data = coloured_mnist("lff", "train", subsample=500)
    assert data.x.shape == (500, 3, 28, 28) and data.x.dtype == torch.float32
    assert 0 <= float(data.x.min()) and float(data.x.max()) <= 1
    # background pixels stay black: the corner is 0 in every image and channel
    assert float(data.x[:, :, 0, 0].abs().max()) == 0.0


@needs_data
def test_generation_is_deterministic_for_a_seed():
    a = coloured_mnist("lff", "train", seed=3, subsample=1000)
    b = coloured_mnist("lff", "train", seed=3, subsample=1000)
    c = coloured_mnist("lff", "train", seed=4, subsample=1000)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


@needs_data
@pytest.mark.parametrize("protocol", ["lff", "kim"])
def test_a_subsample_is_a_subset_of_the_full_split(protocol):
    # lff and kim colour only the kept images (fast quick runs); the kept images must be exactly those of the full
    # split, with the same colours: which images are kept is drawn after the protocol's own draws
    full = coloured_mnist(protocol, "test", seed=2)
    part = coloured_mnist(protocol, "test", seed=2, subsample=300)
    gen = torch.Generator().manual_seed(2 * 1000 + 1)  # coloured_mnist's stream for the test split
    if protocol == "kim":
        torch.randint(0, 10, (len(full),), generator=gen)
    torch.randn(len(full), 3, generator=gen)
    keep = torch.randperm(len(full), generator=gen)[:300]
    for key in ("x", "y", "s", "aligned", "group"):
        assert torch.equal(getattr(part, key), getattr(full, key)[keep]), key


@needs_data
def test_kim_protocol_colours_follow_the_class_in_train_only():
    train = coloured_mnist("kim", "train", colour_variance=0.0, subsample=2000)
    test = coloured_mnist("kim", "test", colour_variance=0.0)
    assert train.s.shape == (2000, 24) and torch.all(train.s.sum(1) == 3)
    assert bool(train.aligned.all())
    # at test time colour is independent of the digit: about 1/10 aligned
    assert 0.07 < float(test.aligned.float().mean()) < 0.13
    # with zero variance, each class has one colour code in training
    for c in range(10):
        assert len(torch.unique(train.s[train.y == c], dim=0)) == 1


def test_colour_code_quantises_each_channel_into_eight_bins():
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 1, 1] = torch.tensor([1.0, 0.5, 0.0])
    code = colour_code(x)
    assert code.shape == (1, 24)
    assert torch.nonzero(code[0]).flatten().tolist() == [7, 8 + 4, 16 + 0]


@needs_data
def test_adult_preprocessing():
    train, test = adult("train"), adult("test")
    assert (len(train), len(test)) == (30_162, 15_060)  # rows with a missing value dropped
    assert train.x.shape[1] == test.x.shape[1]
    assert set(train.y.unique().tolist()) == {0, 1} and set(train.s.unique().tolist()) == {0, 1}
    # continuous columns standardised with the training split's statistics
    names = train.info["feature_names"]
    age = train.x[:, names.index("age")]
    assert abs(float(age.mean())) < 1e-4 and abs(float(age.std()) - 1) < 1e-3
    assert not any(name.startswith("sex") for name in names)  # s is not a feature
    assert abs(float(train.y.float().mean()) - 0.249) < 0.001  # 24.9% earn > 50K


def test_eta_mixing():
    y = torch.tensor([0, 0, 1, 1] * 25)
    s = torch.tensor([0, 1, 0, 1] * 25)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.all(s[eta_mix(y, s, 0.0, gen())] == y[eta_mix(y, s, 0.0, gen())])
    assert torch.all(s[eta_mix(y, s, 1.0, gen())] != y[eta_mix(y, s, 1.0, gen())])
    keep = eta_mix(y, s, 0.25, gen())  # all 50 s == y plus half of the 50 s != y
    assert len(keep) == 75 and int((s[keep] != y[keep]).sum()) == 25
    with pytest.raises(ValueError, match="eta"):
        eta_mix(y, s, 1.5, gen())


@needs_data
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(protocol="lfff"), "Unknown Coloured MNIST protocol"),
        (dict(protocol="lff", bias_conflicting_ratio=0.0), r"must lie in \(0, 1\)"),
        (dict(protocol="lff", bias_conflicting_ratio=1.5), r"must lie in \(0, 1\)"),
        (dict(protocol="kim", split="representative"), "has splits"),
        (dict(protocol="kim", bias_conflicting_ratio=0.1), "only 'lff'"),
        (dict(protocol="lff", colour_variance=0.1), "colour_std"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        coloured_mnist(**kwargs)


def test_missing_data_offline_names_the_folder_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist("train", download=False)
    text = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in text
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        assert name in text


@needs_data
def test_corrupted_file_is_detected(tmp_path, monkeypatch):
    import os

    source = os.environ["FAIRLAB_DATA"]
    shutil.copytree(f"{source}/adult", tmp_path / "adult")
    with open(tmp_path / "adult" / "adult.data", "ab") as f:
        f.write(b"tampered")
    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"corrupted \(md5 mismatch\): adult.data"):
        adult("train", download=False)


def test_read_only_data_root_is_refused_before_downloading(tmp_path, monkeypatch):
    import fairlab.data._files as files

    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    # root can write anywhere, so pretend the folder is read-only the way os.access would report it
    monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    monkeypatch.setattr(files, "_download", lambda *a, **k: pytest.fail("must not try to download"))
    with pytest.raises(DatasetNotFoundError, match="is read-only, so the files cannot be downloaded"):
        adult("train")


def test_data_root_that_cannot_be_created_is_reported(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FAIRLAB_DATA", str(blocker / "data"))
    with pytest.raises(DatasetNotFoundError, match="cannot be created"):
        adult("train")


def test_biased_dataset_batches_cover_every_sample_once():
    data = BiasedDataset(x=torch.randn(10, 2), y=torch.arange(10) % 3, s=torch.arange(10) % 2)
    seen = torch.cat([b.index for b in data.batches(4, shuffle=True)])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(b.y) for b in data.batches(4, drop_last=True)] == [4, 4]
    batch = next(data.batches(3))
    assert torch.equal(batch.x, data.x[:3]) and torch.equal(batch.y, data.y[:3])


def test_biased_dataset_rejects_bad_labels():
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        BiasedDataset(x=torch.zeros(3, 2), y=torch.tensor([0, 1]), s=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 2\)"):
        BiasedDataset(x=torch.zeros(2, 2), y=torch.tensor([0, 5]), s=torch.zeros(2, dtype=torch.long), num_classes=2)


def test_colour_code_index_inverts_the_one_hot_code():
    from fairlab.data.coloured_mnist import colour_code, colour_code_index

    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.26, 0.99]])
    x = colours[:, :, None, None].expand(3, 3, 28, 28)
    levels = torch.tensor([[7, 0, 0], [0, 0, 7], [4, 2, 7]])  # floor(8 * value), clamped to 7
    assert torch.equal(colour_code_index(colour_code(x)), levels[:, 0] * 64 + levels[:, 1] * 8 + levels[:, 2])
    with pytest.raises(ValueError, match=r"shape \(N, 24\)"):
        colour_code_index(torch.zeros(3, 10))
