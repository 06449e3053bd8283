"""``python -m instantdb_local``: the same as the ``instantdb-local`` command."""

import sys

from instantdb_local.cli import main

sys.exit(main())
