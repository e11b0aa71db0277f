"""fairlab: fair and debiased representation learning, the package behind the course.

Layout: ``data`` (biased data sets), ``models`` (networks), ``methods`` (one file per method, each behind one record
in ``methods.METHODS``), ``losses`` (shared by several methods), ``train`` (the one training loop), ``metrics``,
``protocols`` (the chapters' settings per profile), ``experiments`` (what the chapters do with the methods),
``pretrained`` (frozen generators), ``viz`` (figures), ``config`` (environment variables).
"""
__version__ = "0.1.0"

from fairlab.config import by_profile, device, profile, run_info, seed_everything

__all__ = ["__version__", "by_profile", "device", "profile", "run_info", "seed_everything"]
