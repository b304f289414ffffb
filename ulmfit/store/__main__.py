"""``python -m ulmfit.store``: the store's command line (``ulmfit/store/cli.py``)."""

import sys

from ulmfit.store.cli import main

sys.exit(main())
