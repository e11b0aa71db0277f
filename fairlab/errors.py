"""The errors fairlab raises on purpose, each saying what went wrong and how to fix it.

``FairlabError`` is their base; the command line prints any of them (and a ``ValueError``, what every argument
check raises) as one line, ``fairlab: error: ...``, and shows the traceback only with ``--debug`` or
``FAIRLAB_DEBUG=1``. Each subclass is also the built-in exception a Python user would expect, so
``except FileNotFoundError`` still catches missing data.

- ``DatasetNotFoundError`` (a ``FileNotFoundError``): a data set's files are missing, corrupted or cannot be fetched.
- ``NonFiniteLossError`` (a ``FloatingPointError``): training diverged (a NaN/inf loss, validation loss, weight or
  model output).
- ``DeviceError`` (a ``RuntimeError``): the requested device does not exist on this machine.
- ``CheckpointFolderError`` (a ``PermissionError``): no folder fairlab may write trained weights to.
"""


class FairlabError(Exception):
    """Base of the errors fairlab raises on purpose."""


class DatasetNotFoundError(FairlabError, FileNotFoundError):
    """A data set's files are missing, corrupted or cannot be fetched."""


class NonFiniteLossError(FairlabError, FloatingPointError):
    """Training diverged: a loss, a validation loss, a weight or a model output became NaN or infinite."""


class DeviceError(FairlabError, RuntimeError):
    """The requested device (``FAIRLAB_DEVICE`` or ``--device``) is not usable on this machine."""


class CheckpointFolderError(FairlabError, PermissionError):
    """No folder fairlab may write checkpoints to (``FAIRLAB_CHECKPOINTS`` or the user cache)."""
