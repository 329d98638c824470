"""Run several programs as one service (a replica set's members): start them all, stop
them all when asked, and exit as soon as any of them exits so the supervisor notices.

    python -m coursestack.members "mongod --port 1 ..." "mongod --port 2 ..."
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from types import FrameType


def main(commands: list[str]) -> int:
    """Start each command line; return the first exit status seen."""
    children = [subprocess.Popen(shlex.split(command)) for command in commands]

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                forward(signal.SIGTERM, None)
                for other in children:
                    other.wait()
                return code
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
