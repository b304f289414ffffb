"""ulmfit: Universal Language Model Fine-tuning (Howard & Ruder 2018) on fastai."""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample_data"

from ulmfit.errors import UsageError  # noqa: E402

__all__ = ["__version__", "PACKAGE_DIR", "SAMPLE_DIR", "UsageError"]
