"""What the chapters do *with* the methods: one module per chapter's experiment (sweeps, published tables, result
tables, the data behind figures). Methods never import from here; the chapters and the command line do."""
from fairlab.experiments.results import read_results  # noqa: F401  (a sweep's RESULTS.jsonl as a DataFrame)
