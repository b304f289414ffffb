"""ulmfit: Universal Language Model Fine-tuning (Howard & Ruder 2018) on fastai."""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample_data"
SHIPPED_DIR = PACKAGE_DIR / "pretrained"  # the LMs shipped inside the package (ulmfit/shipped.py); every Store shows them

from ulmfit.errors import UsageError  # noqa: E402

__all__ = ["__version__", "PACKAGE_DIR", "SAMPLE_DIR", "SHIPPED_DIR", "UsageError"]
