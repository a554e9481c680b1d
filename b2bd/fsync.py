"""Making a directory entry durable.

After a file is created, renamed or removed, fsyncing the file is not enough: the directory
holding the name must be fsynced too, or a crash can forget the name (the ALICE study; etcd and
LevelDB do the same).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
