"""`coursestack plan`: how much memory a course is expected to use, and whether it fits.

Each kind has a documented estimate (its kind class's `memory_estimate`), measured on
Linux x86-64 with the sample course: resident memory (RSS) of the service's whole
process tree, idle, right after start. They are planning figures, not limits: a
student's queries and notebooks use more. When the instance is running, the measured
RSS of each service is shown next to the estimate.

`[course] memory_budget` is a size such as "1G", "512M", "1.5GB" or "800MiB" (binary
units: 1G = 1024 MiB). A budget that is not a size is a SpecError naming the file, the
line and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coursestack.errors import SpecError
from coursestack.spec import CourseSpec
from coursestack.spec_errors import locate_key
from coursestack.units import MB, format_size, parse_size


@dataclass(frozen=True)
class KindEstimate:
    """Expected idle memory of one kind of service, in MiB."""

    base_mb: int
    #: Extra MiB for each unit of work the kind multiplies (kernels for Jupyter).
    per_unit_mb: int = 0
    unit: str = ""
    basis: str = ""


#: What `plan` assumes of a kind that says nothing better (an arbitrary program).
DEFAULT_ESTIMATE = KindEstimate(50, basis="~50 MB (a guess: any program)")

#: Open kernels per Jupyter service that `plan` assumes unless told otherwise.
DEFAULT_KERNELS = 2


@dataclass(frozen=True)
class ServicePlan:
    """Expected (and, when running, measured) memory of one service."""

    name: str
    kind: str
    expected: int
    basis: str
    start: str
    measured: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "expected": self.expected,
            "basis": self.basis,
            "start": self.start,
            "measured": self.measured,
        }


@dataclass(frozen=True)
class MemoryPlan:
    """The whole course: per-service figures, totals, budget and verdict.

    `expected_total` counts the services `coursestack up` starts; `expected_peak` also
    counts those that start only on request (manual, on-demand), as if all ran at once.
    """

    course: str
    services: list[ServicePlan]
    budget: int | None
    budget_text: str | None
    kernels: int
    running: bool = False

    @property
    def expected_total(self) -> int:
        return sum(s.expected for s in self.services if s.start == "always")

    @property
    def expected_peak(self) -> int:
        return sum(s.expected for s in self.services)

    @property
    def on_request(self) -> list[str]:
        return [s.name for s in self.services if s.start != "always"]

    @property
    def measured_total(self) -> int | None:
        if not self.running:
            return None
        return sum(s.measured or 0 for s in self.services)

    @property
    def fits(self) -> bool | None:
        """True/False against the budget (expected and measured); None without a budget."""
        if self.budget is None:
            return None
        measured = self.measured_total or 0
        return self.expected_total <= self.budget and measured <= self.budget

    @property
    def fits_at_peak(self) -> bool | None:
        """Whether everything, on-request services included, fits the budget."""
        return None if self.budget is None else self.expected_peak <= self.budget

    def verdict(self) -> str:
        """What the figures mean, in a sentence or two a person can act on."""
        expected = format_size(self.expected_total)
        peak = ""
        if self.on_request:
            names = ", ".join(self.on_request)
            peak = (
                f" With {names} started too (on request), about {format_size(self.expected_peak)}"
            )
            if self.budget is not None and not self.fits_at_peak:
                peak += ": over the budget while they run"
            peak += "."
        if self.budget is None:
            return (
                f"`coursestack up` starts about {expected}.{peak} The course declares no "
                'memory_budget (add one under [course], e.g. memory_budget = "1G").'
            )
        budget = format_size(self.budget)
        measured = self.measured_total
        if self.fits:
            return f"Fits: about {expected} expected within the budget of {budget}.{peak}"
        if self.expected_total > self.budget:
            return (
                f"Does not fit: about {expected} expected, budget {budget}. Raise "
                "memory_budget, or plan for fewer services or kernels."
            )
        assert measured is not None
        return (
            f"Does not fit right now: the running services use {format_size(measured)}, "
            f"budget {budget}. Close unused notebooks (their kernels), or raise "
            "memory_budget."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "course": self.course,
            "services": [s.as_dict() for s in self.services],
            "expected_total": self.expected_total,
            "expected_peak": self.expected_peak,
            "on_request": self.on_request,
            "measured_total": self.measured_total,
            "budget": self.budget,
            "budget_text": self.budget_text,
            "kernels": self.kernels,
            "running": self.running,
            "fits": self.fits,
            "fits_at_peak": self.fits_at_peak,
            "verdict": self.verdict(),
        }


def budget_of(spec: CourseSpec) -> int | None:
    """The course's memory_budget in bytes (None if unset); SpecError if it is not a size."""
    text = spec.course.memory_budget
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        try:
            source = spec.path.read_text(encoding="utf-8")
            line = locate_key(source, ("course", "memory_budget"))
        except OSError:
            line = 1
        raise SpecError(
            f"course.memory_budget: {error}",
            where=f"{spec.path}:{line}",
            hint='write a number and a unit, e.g. memory_budget = "1G" or "512M" '
            "(K, M, G or T; binary units)",
        ) from None


def expected_memory(
    kind: str,
    service: Any = None,
    kernels: int = DEFAULT_KERNELS,
) -> tuple[int, str]:
    """Expected bytes for one service of `kind`, and the basis in words (the kind's own
    `expected_memory`; see `memory_estimate` in each kind module)."""
    from coursestack.registry import registry

    found = registry().get(kind)
    if found is not None:
        result: tuple[int, str] = found.expected_memory(service, kernels)
        return result
    estimate = DEFAULT_ESTIMATE
    return estimate.base_mb * MB, estimate.basis


def __getattr__(name: str) -> Any:
    """`ESTIMATES`: each known kind's documented estimate, as its kind module states it."""
    if name == "ESTIMATES":
        from coursestack.registry import registry

        return {kind: cls.memory_estimate for kind, cls in registry().load_all().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_plan(
    spec: CourseSpec, measured: dict[str, int | None] | None = None, kernels: int = DEFAULT_KERNELS
) -> MemoryPlan:
    """The memory plan of a course; `measured` is RSS per service of a running instance."""
    budget = budget_of(spec)
    services = []
    for name, service in spec.services.items():
        expected, basis = expected_memory(service.kind, service, kernels)
        services.append(
            ServicePlan(
                name=name,
                kind=service.kind,
                expected=expected,
                basis=basis,
                start=str(service.start),
                measured=(measured or {}).get(name),
            )
        )
    return MemoryPlan(
        course=spec.course.name,
        services=services,
        budget=budget,
        budget_text=spec.course.memory_budget,
        kernels=kernels,
        running=measured is not None,
    )
