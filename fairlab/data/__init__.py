"""Biased data sets: every one is a ``BiasedDataset`` (x, y, s, aligned) that batches itself on the device."""
from fairlab.data._files import DatasetNotFoundError
from fairlab.data.adult import adult
from fairlab.data.base import Batch, BiasedDataset
from fairlab.data.binary_cmnist import binary_coloured_mnist
from fairlab.data.celeba import celeba, celeba_available
from fairlab.data.coloured_mnist import PROTOCOLS, coloured_mnist
from fairlab.data.mnist import load_mnist
from fairlab.data.check import check_data

__all__ = ["Batch", "BiasedDataset", "DatasetNotFoundError", "PROTOCOLS", "adult", "binary_coloured_mnist",
           "celeba", "celeba_available", "check_data", "coloured_mnist", "load_mnist"]
