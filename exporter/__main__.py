"""``python -m exporter`` and the ``orders-export`` command.

Loading the command (aiohttp, anyio, click and the rest) takes a few tenths of a second. A Ctrl-C or a
SIGTERM then must end like one during the export, with one line and exit 130, not a traceback: the package
itself loads nothing (see ``exporter/__init__``), so this module catches it around that import.
"""

from __future__ import annotations

import signal
import sys


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from exporter.cli import main as command
    except KeyboardInterrupt:
        from exporter.errors import NOTHING_KEPT, Interrupted

        print(f"orders-export: {NOTHING_KEPT}", file=sys.stderr)
        sys.exit(Interrupted.exit_code)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    command()


if __name__ == "__main__":
    main()
