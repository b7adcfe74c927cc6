"""``python -m mdn_fast`` = the ``mdn-fast`` command line."""
import sys

from .cli import main

sys.exit(main())
