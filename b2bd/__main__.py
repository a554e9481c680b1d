"""The ``b2bd`` command's entry point: ``python -m b2bd`` and the console script
(pyproject.toml ``[project.scripts]``) both run :func:`main`.

It imports the CLI itself, so that a Ctrl-C arriving while the CLI's modules are still being
imported (a few hundred milliseconds on a busy host) ends the command as quietly as one
arriving later: exit 130, no traceback. That is why it lives outside ``b2bd.cli``: importing
anything in there runs that package's imports before any handler of its could be in force.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def main() -> int:
    try:
        from b2bd.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
