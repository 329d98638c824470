"""What the web layer needs of the daemon that serves it, and nothing more.

The daemon is the composition root: it builds the web app and hands itself in. The web
layer names only this Protocol, never the daemon's class, so imports flow one way
(cli -> daemon -> web) and a test or the hub's single-user server can serve the same app
from anything that has these members.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from coursestack.kinds import Kind
    from coursestack.respec import SpecChanges
    from coursestack.spec import CourseSpec
    from coursestack.state import StateFolder
    from coursestack.supervisor import Supervisor


class InstanceHost(Protocol):
    """One running instance as its dashboard, API and front door see it."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> StateFolder: ...

    @property
    def spec(self) -> CourseSpec: ...

    @property
    def units(self) -> Mapping[str, Kind[Any]]: ...

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str: ...

    @property
    def started(self) -> float: ...

    @property
    def shutdown_requested(self) -> asyncio.Event: ...

    def note_activity(self, name: str) -> None:
        """A request for service `name` went through the front door."""

    def ensure_started(self, name: str) -> str:
        """Start a stopped on-demand service for a front-door request; its state."""

    def autostart(self) -> list[str]:
        """The services `up` starts."""

    async def apply_spec(self, spec: CourseSpec) -> SpecChanges:
        """Apply an edited course spec to the running instance."""
