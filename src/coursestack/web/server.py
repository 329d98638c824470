"""uvicorn as the daemon runs it: without uvicorn's command line, and with its WebSocket
protocol loaded when the first WebSocket arrives.

- `import uvicorn` runs `uvicorn/__init__.py`, which imports `uvicorn.main`, its command
  line: click, multiprocessing and the reload supervisors, ~1.3 MB of the daemon's RSS
  for nothing. The daemon needs `uvicorn.config` and `uvicorn.server` only, so the
  package is registered without running its `__init__`; any other attribute of
  `uvicorn` (say `uvicorn.run`, from a library in the same process) still works: it
  runs the real `__init__` then.
- uvicorn loads its WebSocket protocol (the `websockets` server, ~2 MB) at start-up.
  Only a notebook's kernel channel through the front door needs it, so the daemon hands
  uvicorn a factory that imports it on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from collections.abc import Generator
from typing import Any, cast


def _package_without_init(name: str) -> None:
    """Register package `name` so that its submodules import without its `__init__`."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> object:
        """Something only the full package has: run its `__init__` now, once."""
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = complete
    sys.modules[name] = package


_package_without_init("uvicorn")

from uvicorn.config import Config  # noqa: E402  (after the package is registered)
from uvicorn.server import Server  # noqa: E402

# What uvicorn's own modules take from the package (`from uvicorn import Config` in
# uvicorn/lifespan/off.py), so that they do not run its `__init__` either.
for _name, _value in (("Config", Config), ("Server", Server)):
    sys.modules["uvicorn"].__dict__.setdefault(_name, _value)


class QuietServer(Server):
    """uvicorn without its own signal handling: the daemon stops services first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def websocket_protocol(**options: Any) -> asyncio.Protocol:
    """uvicorn's WebSocket protocol (websockets' sans-I/O one), imported on first use."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    return WebSocketsSansIOProtocol(**options)


def server_for(app: Any, certfile: str | None, keyfile: str | None) -> QuietServer:
    """The server of the daemon's ASGI app (HTTPS when given a certificate)."""
    config = Config(app, log_level="warning", access_log=False, ssl_certfile=certfile,
                    ssl_keyfile=keyfile, lifespan="off",
                    ws=cast(type[asyncio.Protocol], websocket_protocol),
                    timeout_graceful_shutdown=2,
                    proxy_headers=False)  # no proxy is trusted: see web/auth.py
    return QuietServer(config)

