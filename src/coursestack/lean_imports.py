"""Optional imports the daemon (and `up`, which forks it) never uses, kept out.

Libraries import some packages only because they happen to be installed: httpx imports
its command line (click, rich, pygments) and httpcore imports trio. Together ~9 MB of
the daemon's RSS and, for `up`, the UI libraries the forked daemon must not carry
(docs/benchmarks-core.md).
"""

from __future__ import annotations

import sys

UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")


def keep_out_unused_imports() -> None:
    """Make the optional imports the daemon never uses fail (a None entry in sys.modules
    makes `import NAME` raise ImportError, which is their fallback)."""
    for name in UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
