"""What every method is: one record (``Method``), its hyperparameters declared once, and the loop over runs.

A method file defines

- ``HParams``, a dataclass whose defaults are the paper's (written there and nowhere else); each field is made with
  ``hparam(default, help)`` so the command line can build its option (``--field-name``) with that help text;
- ``fit(train, hp=None, *, val=None, seed=0, device=None, progress=None, **overrides) -> (model, history)``:
  ``overrides`` replace fields of ``hp`` (``fit(train, epochs=5)`` is ``fit(train, HParams(epochs=5))``);
- ``fit_members(trains, seeds, hp=None, *, vals=None, device=None, progress=None, **overrides)
  -> (models, histories)`` where several runs can be trained stacked, in one process and one step
  (``fairlab.ensemble``), else nothing;
- ``predict(model, data) -> LongTensor (n,)`` and ``representation(model, data) -> Tensor (n, ...)``: what the
  method decides, and what an auditor would probe;
- and the record, ``METHOD = Method(...)``, which ``fairlab.methods.METHODS`` finds by name.

``fit_runs`` trains several runs of any method the same way: stacked where the method can, one by one elsewhere.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

# the labels a method may read in training: y everywhere, s on the training set, s on a small representative set
NEEDS = ("y", "s", "s_representative")


def hparam(default: Any, help: str, **metadata) -> Any:
    """A hyperparameter field: its default (the paper's) and one line of help for the command line.

    Metadata the command line reads: ``flag`` (the option's name when it is not ``--field-name``), ``choices``,
    ``positive=True`` (a count: a whole number >= 1), ``cli=False`` (not an option: set from the chapter's
    protocol or by code).
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (or None) as a hyperparameter's default: a list or dict would be shared")
    return field(default=default, metadata={"help": help, **metadata})


def resolve(hparams_type: type, hp=None, overrides: dict | None = None):
    """``hp`` (default: ``hparams_type()``, the paper's) with ``overrides`` replacing its fields.

    An override that is not a field is an error naming the fields there are (a typo never passes silently).
    """
    if hp is None:
        hp = hparams_type()
    elif isinstance(hp, dict):
        hp = hparams_type(**hp)
    elif not isinstance(hp, hparams_type):
        raise TypeError(f"hp must be a {hparams_type.__name__} (or a dict of its fields), got {type(hp).__name__}.")
    overrides = overrides or {}
    names = {f.name for f in dataclasses.fields(hparams_type)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{hparams_type.__name__} has no field(s) {unknown}; its fields are {sorted(names)}.")
    return dataclasses.replace(hp, **overrides) if overrides else hp


def field_types(hparams_type: type) -> dict[str, type]:
    """Each field's value type, ``X | None`` read as ``X`` (for the command line's parsers)."""
    hints = typing.get_type_hints(hparams_type)
    found = {}
    for f in dataclasses.fields(hparams_type):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = args[0]
        found[f.name] = typing.get_origin(hint) or hint
    return found


def epochs_trained(model, history, **_) -> dict:
    """A ``Method.summary`` for methods whose only number of their own is how many epochs they trained."""
    return {"epochs": len(history)}


@dataclass(frozen=True)
class Method:
    """One method behind the interface every chapter, the command line and the comparison share.

    ``summary(model, history, *, train, test, hp, predictions, seed) -> dict``, when given, adds the method's own
    numbers to the command line's JSON line (e.g. the final MI estimate); ``predictions`` are ``predict``'s on test.
    """

    name: str
    hparams: type
    fit: Callable
    predict: Callable
    representation: Callable
    needs: tuple[str, ...]
    datasets: tuple[str, ...]
    fit_members: Callable | None = None
    summary: Callable | None = None
    description: str = ""

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.hparams):
            raise TypeError(f"{self.name}: hparams must be a dataclass type.")
        wrong = [n for n in self.needs if n not in NEEDS]
        if wrong:
            raise ValueError(f"{self.name}: needs {wrong} are not among {NEEDS}.")

    def hp(self, hp=None, **overrides):
        """The method's hyperparameters: the paper's defaults, ``hp``, then ``overrides``."""
        return resolve(self.hparams, hp, overrides)

    def check_dataset(self, dataset: str) -> None:
        """Raise ``ValueError`` (before any data is built) if the method does not run on ``dataset``."""
        if dataset not in self.datasets:
            raise ValueError(f"{self.name} does not run on {dataset!r}; it runs on {', '.join(self.datasets)}.")

    @property
    def can_stack(self) -> bool:
        return self.fit_members is not None


def fit_runs(method: Method, trains: Sequence, seeds: Sequence[int], hp=None, *, vals: Sequence | None = None,
             stack: bool = True, device=None, progress: bool | None = None, **options):
    """Train one run per (training set, seed) pair; returns ``(models, histories)`` in that order.

    Stacked in one process (``method.fit_members``) where the method can and ``stack`` is true, else one ``fit``
    after the other. ``options`` are passed to every run (e.g. ``representative=`` for null-sampling).
    """
    if len(trains) != len(seeds):
        raise ValueError(f"one seed per training set: got {len(trains)} sets and {len(seeds)} seeds.")
    if vals is not None and len(vals) != len(trains):
        raise ValueError(f"one validation set per training set: got {len(vals)} for {len(trains)}.")
    if stack and method.can_stack and not options:
        return method.fit_members(trains, seeds, hp, vals=vals, device=device, progress=progress)
    models, histories = [], []
    for k, (train, seed) in enumerate(zip(trains, seeds)):
        val = vals[k] if vals is not None else None
        model, history = method.fit(train, hp, val=val, seed=seed, device=device, progress=progress, **options)
        models.append(model)
        histories.append(history)
    return models, histories
