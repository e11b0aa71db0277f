"""UCI Adult (census income): y = income > 50K, s = sex (1 = Male), tabular features.

Preprocessing (the null-sampling brief's): rows with a missing value (``?``) dropped, ``fnlwgt`` (a sampling weight,
not a person's attribute) and ``sex`` (the sensitive attribute itself) removed from the features, native country
collapsed to US / non-US, categoricals one-hot encoded, continuous columns standardised with the statistics of the
protocol's training rows.

Protocols:
- ``"uci"``: the official split, ``adult.data`` (train) and ``adult.test`` (test).
- ``"nifr"``: both files pooled and shuffled (seeded); 60% is unbiased, of which 2/3 is the ``"representative"`` set
  and 1/3 the ``"test"`` set; the other 40% is a pool from which the biased ``"train"`` set is drawn with the mixing
  factor ``eta``: eta = 0 keeps only s == y, eta = 1 only s != y; eta < 0.5 keeps all s == y plus a fraction
  2 * eta of s != y; eta >= 0.5 all s != y plus 2 * (1 - eta) of s == y (``fairlab.data.nifr``, shared with CelebA).
  The continuous columns are standardised with the statistics of the representative set and the whole pool, so the
  features of a sample do not depend on eta. (The released code swaps train and test when unpacking them; we do not.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairlab import config
from fairlab.data._files import ensure_files
from fairlab.data.base import BiasedDataset, check_subsample, subsample_index
from fairlab.data.nifr import check_eta, eta_mix, partition

RESOURCES = [
    ("adult.data", "5d7c39d7b8804f071cdd1f2a7c460872"),
    ("adult.test", "35238206dfdf7f1fe215bbb874adecdc"),
    ("adult.names", "1a7cdb3ff7a1b709968b1c7a11def63e"),
]
MIRRORS = ["https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"]
COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]
CONTINUOUS = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "native-country"]
SPLITS = {"uci": ("train", "test"), "nifr": ("representative", "train", "test")}


def _read(path: Path) -> pd.DataFrame:
    # adult.test starts with "|1x3 Cross validator"; a space follows every comma; test labels end with "."
    frame = pd.read_csv(
        path, header=None, names=COLUMNS, sep=",", skipinitialspace=True, na_values="?", comment="|",
        skip_blank_lines=True,
    )
    frame = frame.dropna().reset_index(drop=True)
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


def load_adult_frame(root=None, download: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two raw tables (train, test) as pandas DataFrames, rows with missing values dropped."""
    folder = ensure_files("UCI Adult", Path(root or config.data_root()) / "adult", RESOURCES, MIRRORS, download)
    return _read(folder / "adult.data"), _read(folder / "adult.test")


def _encode(frame: pd.DataFrame, categories: dict, mean: pd.Series, std: pd.Series):
    frame = frame.copy()
    frame["native-country"] = np.where(frame["native-country"] == "United-States", "United-States", "Other")
    parts = [(frame[CONTINUOUS] - mean) / std]
    for col in CATEGORICAL:
        values = pd.Categorical(frame[col], categories=categories[col])
        parts.append(pd.get_dummies(values, prefix=col, dtype=np.float32))
    features = pd.concat([p.reset_index(drop=True) for p in parts], axis=1)
    x = torch.tensor(features.to_numpy(np.float32))
    y = torch.tensor((frame["income"] == ">50K").to_numpy(), dtype=torch.int64)
    s = torch.tensor((frame["sex"] == "Male").to_numpy(), dtype=torch.int64)
    return x, y, s, list(features.columns)


def adult(
    split: str = "train",
    *,
    protocol: str = "uci",
    eta: float | None = None,
    seed: int = 0,
    subsample: int | None = None,
    root=None,
    download: bool = True,
) -> BiasedDataset:
    """UCI Adult as a ``BiasedDataset`` (x float32 features, y income > 50K, s sex with 1 = Male).

    Args:
        split: ``"train"`` / ``"test"``; the ``nifr`` protocol also has ``"representative"`` (its ``"train"`` is the
            biased training set drawn with ``eta``).
        protocol: ``"uci"`` (the official split) or ``"nifr"`` (null-sampling's, see the module docstring).
        eta: ``nifr`` only, the mixing factor of the biased training set in [0, 1], default 1 (only s != y). The
            representative and test splits do not depend on it.
        seed: ``nifr``: seeds the partition and the eta draw.
        subsample: keep a random subset of this many rows (quick runs); the protocol is applied first.

    ``aligned`` marks s == y (male and > 50K, or female and <= 50K), the pairing the biased train set of the
    ``nifr`` protocol controls with ``eta``.
    """
    if protocol not in SPLITS:
        raise ValueError(f"Unknown Adult protocol {protocol!r}; choose one of {tuple(SPLITS)}.")
    if split not in SPLITS[protocol]:
        raise ValueError(f"Adult protocol {protocol!r} has splits {SPLITS[protocol]}, not {split!r}.")
    if protocol == "nifr":
        eta = 1.0 if eta is None else check_eta(eta)
    elif eta is not None:
        raise ValueError(f"eta belongs to the null-sampling protocol: pass protocol='nifr' with eta={eta}.")
    check_subsample(subsample)
    train_frame, test_frame = load_adult_frame(root, download)
    if protocol == "uci":
        fit_frame, frame = train_frame, (train_frame if split == "train" else test_frame)
        rows = None
    else:
        pooled = pd.concat([train_frame, test_frame], ignore_index=True)
        gen = torch.Generator().manual_seed(seed)
        parts = partition(len(pooled), gen)
        fit_frame = pooled.iloc[torch.cat([parts["representative"], parts["pool"]]).numpy()]
        frame = pooled.iloc[parts["pool" if split == "train" else split].numpy()]
        rows = gen if split == "train" else None
    categories = {col: sorted(pd.concat([train_frame, test_frame])[col].unique()) for col in CATEGORICAL}
    categories["native-country"] = ["Other", "United-States"]
    mean, std = fit_frame[CONTINUOUS].mean(), fit_frame[CONTINUOUS].std()
    x, y, s, names = _encode(frame, categories, mean, std)
    if rows is not None:
        keep = eta_mix(y, s, eta, rows)
        x, y, s = x[keep], y[keep], s[keep]
    info = {"protocol": protocol, "split": split, "feature_names": names, "seed": seed}
    if protocol == "nifr":
        info["eta"] = eta
    data = BiasedDataset(
        x=x, y=y, s=s, aligned=s == y, num_classes=2, num_groups=2, name=f"adult-{protocol}/{split}", info=info
    )
    check_subsample(subsample, len(data), data.name)
    if subsample is not None and subsample < len(data):
        data = data.subset(subsample_index(len(data), subsample, torch.Generator().manual_seed(seed)))
    return data
