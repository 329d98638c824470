"""The REST API fuzzed against its own OpenAPI schema (schemathesis), on a running daemon.

Every operation of `/api/openapi.json` gets up to `FUZZ_EXAMPLES` generated requests
(valid and invalid path parameters, queries, missing credentials), sent with the instance
token to the shared sample instance. Each answer must be no 5xx and must conform to the
schema: a documented status code, content type and body.

Left out, so the shared instance stays up for the other tests: `POST /api/shutdown`, and
stop/restart of a real service (those two are fuzzed with names of services that do not
exist). The event streams (`/api/events`, `.../logs/stream`) never end, so they are left
to the security tests.

Bounded: `FUZZ_EXAMPLES` (25) per operation, no shrinking deadline, about 30 s in all.
Replay: every run prints its seed (`fuzz seed: N`); run again with
`COURSESTACK_FUZZ_SEED=N pytest tests/web/test_web_fuzz.py` (pytest's own
`--hypothesis-seed=N` works too when the variable is unset).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis import Case
from schemathesis.schemas import BaseSchema

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("COURSESTACK_FUZZ_EXAMPLES", "25"))
FUZZ_SEED = int(os.environ.get("COURSESTACK_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
#: Operations that would stop services of the shared instance if given a real name.
STOPPING = r"^/api/services/\{name\}/(stop|restart)$"


@pytest.fixture(scope="module")
def api_schema(daemon: Any) -> BaseSchema:
    auth = {"Authorization": f"Bearer {daemon.token}"}
    loaded = schemathesis.openapi.from_url(f"{daemon.url}api/openapi.json", headers=auth,
                                           timeout=30)
    loaded.config.update(headers=auth, request_timeout=30)
    real = set(_service_names(daemon))

    schema = loaded

    @schema.hook
    def filter_path_parameters(context: Any, path_parameters: dict[str, Any]) -> bool:
        """Never stop or restart a real service of the shared instance."""
        operation = getattr(context, "operation", None)
        path = getattr(operation, "path", "")
        if path.endswith(("/stop", "/restart")):
            return str(path_parameters.get("name")) not in real
        return True

    print(f"fuzz seed: {FUZZ_SEED} (replay: COURSESTACK_FUZZ_SEED={FUZZ_SEED})")
    return schema


def _service_names(daemon: Any) -> list[str]:
    with daemon.bearer() as client:
        return [service["name"] for service in client.get("/api/services").json()]


# Filters go on the lazy schema: it replaces the fixture's own filters with these.
lazy_schema = (schemathesis.pytest.from_fixture("api_schema")
               .exclude(path="/api/shutdown")
               .exclude(path_regex=r"/(events|logs/stream)$"))


@lazy_schema.parametrize()
@seed(FUZZ_SEED)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, print_blob=True,
          phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case: Case) -> None:
    started = time.monotonic()
    print("CALL", case.method, case.formatted_path, case.path_parameters, case.query, flush=True)
    response = case.call()
    print("  ->", response.status_code, flush=True)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:500]} (fuzz seed {FUZZ_SEED})")
    case.validate_response(response)
    assert time.monotonic() - started < 30
