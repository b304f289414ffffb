"""Scripts that regenerate the reported numbers into experiments/results/; run each from the repository root as
``python -m experiments.<script> ...`` (experiments/README.md lists them with their recipes and results)."""
