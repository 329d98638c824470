"""uvicorn as the daemon runs it: without what an idle daemon never uses.

- `import uvicorn` runs `uvicorn/__init__.py`, which imports `uvicorn.main`, its command
  line: click, multiprocessing and the reload supervisors, ~1.5 MB of the daemon's RSS
  for nothing. The daemon needs `uvicorn.config` and `uvicorn.server` only, so the
  package is registered without running its `__init__`.
- `uvicorn.config` imports `logging.config` (with `logging.handlers`, `socketserver`,
  `pickle`: ~1.1 MB) to apply its own logging set-up; the daemon passes no logging
  config (uvicorn's loggers go to the daemon's log through the root logger), so
  `logging.config` is registered the same way.
- In both cases, the first attribute anybody reads (say `uvicorn.run`, or
  `logging.config.dictConfig`, from a library in the same process) runs the real module
  then: nothing breaks, it only loads later.
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


def _load_on_first_use(name: str) -> None:
    """Register module `name` (a package's submodules import without its `__init__`);
    its code runs when one of its attributes is first read."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> object:
        """Something only the real module has: run its code now, once."""
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = complete
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:  # as an import would: `logging.config` is an attribute of `logging`
        setattr(sys.modules[parent], child, module)


_load_on_first_use("logging.config")
_load_on_first_use("uvicorn")

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
    config = Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        lifespan="off",
        ws=cast(type[asyncio.Protocol], websocket_protocol),
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )  # no proxy is trusted: see web/auth.py
    return QuietServer(config)
