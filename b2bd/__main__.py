from __future__ import annotations

import sys

from b2bd.cli import main

sys.exit(main())
