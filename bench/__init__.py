"""Benchmarks of the ulmfit framework against stock fastai: ``python -m bench`` (see README)."""
