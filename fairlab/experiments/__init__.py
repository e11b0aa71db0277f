"""What the chapters do *with* the methods: one module per chapter's experiment (sweeps, published tables, result
tables, the data behind figures). Methods never import from here; the chapters and the command line do."""
