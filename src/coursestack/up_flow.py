"""What `up` does before its daemon starts, without the CLI's libraries.

The fast entry (entry.py) and typer's `up` (cli.py) both call `prepare_up`; the fast
entry then forks the daemon before typer and rich are imported (daemon_start.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from coursestack.instances import Instance, set_up_instance
from coursestack.spec import CourseSpec, StartPolicy
from coursestack.up_options import UpRequest


@dataclass(frozen=True)
class PreparedUp:
    """An instance set up for `up`: its course, what `up` waits for, what to say first."""

    request: UpRequest
    instance: Instance
    course: CourseSpec
    #: Kind packages that failed to load (the other kinds still work).
    warnings: tuple[str, ...]
    #: The daemon already runs: `up` changes nothing.
    running: bool

    @property
    def update_due(self) -> bool:
        """The course asks for its material to be updated before the services start."""
        content = self.course.content
        return content is not None and content.update == "on-up"

    def wanted(self, course: CourseSpec | None = None) -> list[str]:
        """The services `up` waits for: `--only` or every `start = "always"` one, and
        what they depend on (of `course`, if an update delivered a new one)."""
        course = course or self.course
        chosen = list(self.request.only) or [
            name for name, service in course.services.items() if service.start is StartPolicy.ALWAYS
        ]
        return sorted(course.with_dependencies(chosen))


def prepare_up(request: UpRequest) -> PreparedUp:
    """Validate the spec and record it in the instance's state folder."""
    from coursestack.registry import problem_lines

    instance, course = set_up_instance(
        request.spec, request.instance, request.state, list(request.only)
    )
    return PreparedUp(request, instance, course, tuple(problem_lines()), instance.daemon_alive())
