"""``python -m athena_orch`` is the ``athena-orch`` command."""

import sys

from .cli import main

sys.exit(main())
