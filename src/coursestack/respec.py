"""Run a changed course spec on a running instance, touching only what changed.

The composer's "Run": services the new spec adds are started (if they start with `up`),
services it removes are stopped and forgotten (their data folders are kept), services
whose settings changed are stopped and started again with their new settings (if they
were running, or start with `up`); every other service keeps running untouched.
Course-level settings (`[course]`, `[dashboard]`, `[logs]`) take effect at the next
`coursestack up`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from coursestack.endpoints import EndpointTable
from coursestack.kinds import Context, Kind, build_unit
from coursestack.privileges import RunAs, ensure_reachable
from coursestack.spec import CourseSpec, StartPolicy
from coursestack.supervisor import Supervisor


@dataclass
class SpecChanges:
    """Which services a new spec adds, removes, changes, and leaves alone; what started."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "started": self.started,
        }


def compare(old: CourseSpec, new: CourseSpec) -> SpecChanges:
    """What differs between two specs, service by service (settings compared by value)."""
    return SpecChanges(
        added=[name for name in new.services if name not in old.services],
        removed=[name for name in old.services if name not in new.services],
        changed=[
            name
            for name, service in new.services.items()
            if name in old.services and old.services[name] != service
        ],
        unchanged=[
            name
            for name, service in new.services.items()
            if name in old.services and old.services[name] == service
        ],
    )


@dataclass
class Respec:
    """What the daemon hands over to change its spec: its services and their context."""

    supervisor: Supervisor
    units: dict[str, Kind]  # type: ignore[type-arg]
    context: Context
    run_as: RunAs | None
    publish_connections: Callable[[], None]
    endpoints: EndpointTable

    async def apply(self, new: CourseSpec) -> SpecChanges:
        """Stop what was removed or changed, bind the new settings, start what should run."""
        changes = compare(self.context.spec, new)
        leaving = [*changes.removed, *changes.changed]
        was_running = {name for name in leaving if self.supervisor.services[name].active}
        await self.supervisor.stop(leaving)
        # From here to the start, no await: nobody sees a half-changed instance.
        self.context.spec = new
        fresh: list[Kind] = []  # type: ignore[type-arg]
        for name in changes.removed:
            self.units.pop(name).release()
            self.endpoints.drop(name)
        for name in [*changes.changed, *changes.added]:
            old_unit = self.units.get(name)
            if old_unit is not None:
                old_unit.release()
            unit = build_unit(name, new.services[name], self.context)
            self._choose_ports(name, unit)
            self.units[name] = unit
            fresh.append(unit)
        self.supervisor.replace_units(fresh, changes.removed)
        self.publish_connections()
        if self.run_as is not None:
            needed = [path for unit in fresh for path in unit.needed_paths()]
            # Data folders are the account's from creation, made by each kind's prepare.
            ensure_reachable(needed, self.run_as)
        changes.started = sorted(
            name
            for name in [*changes.changed, *changes.added]
            if name in was_running or new.services[name].start is StartPolicy.ALWAYS
        )
        self.supervisor.start(changes.started)
        return changes

    def _choose_ports(self, name: str, unit: Kind) -> None:  # type: ignore[type-arg]
        current = self.endpoints.get(name)
        preferred = unit.spec.port or (current.port if current else None) or unit.default_port
        self.endpoints.choose(name, preferred, unit.port_count)
