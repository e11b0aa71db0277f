"""Kim et al.'s Coloured MNIST: the released files are read safely (and refused when they are not what the authors
ship), and without them the reconstruction paints binarised digits one flat colour per image."""
import os
import pickle

import numpy as np
import pytest
import torch

from fairlab.data import DatasetNotFoundError, coloured_mnist
from fairlab.data._files import UnsafePickleError, load_pickled_npy
from fairlab.data.check import check_data, data_complete
from fairlab.data.coloured_mnist import (
    KIM_ESTIMATED_COLOURS, KIM_RELEASED_VARIANCES, colour_code, kim_filename, load_kim_file,
)

from conftest import needs_data


def _stand_in(n_train=40, n_test=30, seed=0) -> dict:
    """A small file with the released keys: digit-like squares painted a palette colour (the class's in training,
    a random class's at test), as the authors' files hold them (N, 28, 28, 3) uint8."""
    rng = np.random.default_rng(seed)
    palette = np.round(KIM_ESTIMATED_COLOURS.numpy() * 255).astype(np.uint8)

    def split(n, colour_follows_label):
        labels = rng.integers(0, 10, n)
        colour_class = labels if colour_follows_label else rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28, 3), np.uint8)
        images[:, 8:20, 10:18] = palette[colour_class][:, None, None, :]
        return images, labels, colour_class

    train_image, train_label, _ = split(n_train, True)
    test_image, test_label, test_colour = split(n_test, False)
    content = {"train_image": train_image, "train_label": train_label, "test_image": test_image,
               "test_label": test_label, "test_gray": test_image.max(3, keepdims=True).repeat(3, 3)}
    return content, test_colour


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An empty data root with a kim/ folder, as FAIRLAB_DATA."""
    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    (tmp_path / "kim").mkdir()
    return tmp_path


def _write(root, content, variance=0.02):
    path = root / "kim" / kim_filename(variance)
    np.save(path, content, allow_pickle=True)  # what the authors did: a dict saved as a 0-d object array
    return path


def test_the_released_file_is_what_coloured_mnist_returns(data_root):
    content, test_colour = _stand_in()
    _write(data_root, content)
    train = coloured_mnist("kim", "train", colour_variance=0.02)
    test = coloured_mnist("kim", "test", colour_variance=0.02)
    assert train.info["source"] == "released file mnist_10color_jitter_var_0.020.npy"
    expected = torch.from_numpy(content["train_image"]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(train.x, expected) and train.x.shape == (40, 3, 28, 28)
    assert torch.equal(train.y, torch.from_numpy(content["train_label"]))
    assert torch.equal(train.s, colour_code(train.x)) and bool(train.aligned.all())
    # a test image's colour class is read off its strokes (the nearest palette colour)
    assert torch.equal(test.group, torch.from_numpy(test_colour))
    assert torch.equal(test.aligned, test.group == test.y)
    part = coloured_mnist("kim", "train", colour_variance=0.02, subsample=10)  # a quick run subsamples the file
    assert len(part) == 10 and part.info["source"].startswith("released")


def test_a_numpy_1_file_reads_too(data_root):
    """The authors' files were written by NumPy 1 (and Python 2): their pickles name numpy.core, not numpy._core."""
    content, _ = _stand_in()
    path = data_root / "kim" / kim_filename(0.02)
    with open(path, "wb") as f:  # the npy header, then a protocol-3 pickle: it names classes as "module\nname\n"
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(content, dtype=object), f, protocol=3)
    raw = path.read_bytes()
    if b"numpy._core.multiarray\n" in raw:  # written by NumPy 2 here: name the module as NumPy 1 did
        path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert b"numpy.core.multiarray\n" in path.read_bytes()
    loaded = load_kim_file(path)
    assert all(np.array_equal(loaded[key], content[key]) for key in content)


class _Exploit:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_refused_without_running(data_root):
    marker = data_root / "exploited"
    exploit = _Exploit()
    exploit.marker = marker
    path = data_root / "kim" / kim_filename(0.02)
    np.save(path, np.array({"train_image": exploit}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError, match="refused"):
        load_pickled_npy(path)
    with pytest.raises(DatasetNotFoundError, match=r"cannot be read safely.*Download it again"):
        coloured_mnist("kim", "train", colour_variance=0.02)
    assert not marker.exists()


@pytest.mark.parametrize("break_it, message", [
    (lambda c: c.pop("test_gray"), "its keys are"),
    (lambda c: c.update(extra=np.zeros(1)), "its keys are"),
    (lambda c: c.update(train_image=c["train_image"][:, :, :, :1]), r"train_image has shape \(40, 28, 28, 1\)"),
    (lambda c: c.update(test_image=c["test_image"].astype(np.float32)), "test_image has dtype float32"),
    (lambda c: c.update(train_label=c["train_label"][:5]), r"train_label has shape \(5,\)"),
    (lambda c: c.update(test_label=c["test_label"] + 10), "integers 0..9"),
])
def test_a_file_with_the_wrong_content_gets_one_clear_error(data_root, break_it, message):
    content, _ = _stand_in()
    break_it(content)
    path = _write(data_root, content)
    with pytest.raises(DatasetNotFoundError, match=message) as error:
        coloured_mnist("kim", "test", colour_variance=0.02)
    assert str(path) in str(error.value) and "drive.google.com" in str(error.value)


def test_a_file_that_is_not_a_pickle_is_refused(data_root):
    np.save(data_root / "kim" / kim_filename(0.03), np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="not a usable copy"):
        coloured_mnist("kim", "train", colour_variance=0.03)
    (data_root / "kim" / kim_filename(0.03)).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetNotFoundError, match="cannot be read safely"):
        coloured_mnist("kim", "train", colour_variance=0.03)


def test_kims_files_are_listed_as_optional(data_root):
    rows = [row for row in check_data() if row["optional"]]
    assert [os.path.basename(row["path"]) for row in rows] == [kim_filename(v) for v in KIM_RELEASED_VARIANCES]
    assert all(row["status"] == "missing" for row in rows)
    # the required files are missing from this empty root; only those make the data incomplete
    assert not data_complete(check_data())
    assert data_complete([{**row, "status": "ok"} if not row["optional"] else row for row in check_data()])


@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_the_estimated_reconstruction_paints_binarised_strokes_one_flat_colour(split):
    data = coloured_mnist("kim", split, colour_variance=0.03, subsample=500, kim_reconstruction="estimated")
    assert data.info["source"] == "reconstruction" and data.info["reconstruction"] == "estimated"
    stroke = data.x.sum(1) > 0  # (N, 28, 28)
    for image, mask in zip(data.x, stroke):
        colours = image[:, mask]  # (3, number of stroke pixels)
        assert torch.equal(colours, colours[:, :1].expand_as(colours))  # one flat colour per image
        assert bool((image[:, ~mask] == 0).all())  # a black background
    if split == "train":
        assert torch.equal(data.group, data.y)  # the training colour's class is the digit
    # the 24-dim code is the quantised flat colour
    assert torch.equal(data.s, colour_code(data.x)) and bool((data.s.sum(1) == 3).all())


@needs_data
def test_the_estimated_reconstruction_without_jitter_has_the_palette_colours():
    data = coloured_mnist("kim", "train", colour_variance=0.0, subsample=200, kim_reconstruction="estimated")
    peak = data.x.flatten(2).amax(2)  # (N, 3)
    torch.testing.assert_close(peak, KIM_ESTIMATED_COLOURS[data.y])


@needs_data
def test_the_default_reconstruction_is_the_estimated_one_and_hues_remains_an_option():
    data = coloured_mnist("kim", "train", colour_variance=0.0, subsample=200)
    assert data.info["reconstruction"] == "estimated"
    torch.testing.assert_close(data.x.flatten(2).amax(2), KIM_ESTIMATED_COLOURS[data.y])
    hues = coloured_mnist("kim", "train", colour_variance=0.0, subsample=200, kim_reconstruction="hues")
    assert hues.info["reconstruction"] == "hues"
    assert len(torch.unique(hues.x[0][hues.x[0] > 0])) > 3  # the grey, anti-aliased digit: not one flat level
    with pytest.raises(ValueError, match="kim_reconstruction"):
        coloured_mnist("kim", "train", subsample=10, kim_reconstruction="flat")
