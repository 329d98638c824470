"""Isolation of student services on one host: a port block per student, closed by nftables.

Every student's instance gets its own block of loopback ports (`COURSESTACK_PORT_RANGE`,
honoured by `coursestack.ports.choose_port`), and Jupyter kernels talk over unix sockets
(the `ipc` transport) in the student's 0700 home instead of random TCP ports. One
nftables table then rejects, on the loopback interface, every new TCP connection into a
student's block from any uid but that student's and root's (the Hub and its proxy): the
sender's uid is known in the output hook (`meta skuid`), which is where loopback traffic
is filtered. A student with a shell can still open ports of their own outside the block
(it is their own program); they cannot reach anybody else's services, including those
with no authentication of their own (the MongoDB stand-in, OpenRefine).

Blocks sit below Linux's ephemeral range (32768+), so outgoing connections never take
a port a student's service needs.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from coursestack.errors import UserError
from coursestack.state import OWNER_ONLY, atomic_write_json, read_json

TABLE = "coursestack_hub"
FIRST_PORT = 20000
BLOCK_SIZE = 40
LAST_PORT = 32000


class FirewallError(UserError):
    """The nftables rules could not be applied."""


@dataclass(frozen=True)
class PortBlock:
    """The loopback ports one student's services may use."""

    first: int
    last: int

    def as_env(self) -> str:
        return f"{self.first}-{self.last}"


class PortBlocks:
    """Which block belongs to which unix user (a JSON file the hub owns)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def block_for(self, unix_name: str) -> PortBlock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            slots: dict[str, int] = read_json(self.path, {}) or {}
            if unix_name not in slots:
                used = set(slots.values())
                slot = next(n for n in range(len(used) + 1) if n not in used)
                if FIRST_PORT + (slot + 1) * BLOCK_SIZE > LAST_PORT:
                    raise FirewallError(
                        "no port block is left for another student",
                        hint="remove students that left, or run a second "
                        "host (see docs/hosting.md)",
                    )
                slots[unix_name] = slot
                atomic_write_json(self.path, slots, OWNER_ONLY)
            first = FIRST_PORT + slots[unix_name] * BLOCK_SIZE
            return PortBlock(first, first + BLOCK_SIZE - 1)

    def release(self, unix_name: str) -> None:
        with FileLock(str(self.path) + ".lock"):
            slots: dict[str, int] = read_json(self.path, {}) or {}
            if slots.pop(unix_name, None) is not None:
                atomic_write_json(self.path, slots, OWNER_ONLY)

    def all(self) -> dict[str, PortBlock]:
        slots: dict[str, int] = read_json(self.path, {}) or {}
        return {
            name: PortBlock(
                FIRST_PORT + slot * BLOCK_SIZE, FIRST_PORT + (slot + 1) * BLOCK_SIZE - 1
            )
            for name, slot in slots.items()
        }


def ruleset(owners: dict[int, PortBlock], table: str = TABLE) -> str:
    """The nftables script for these blocks (uid -> block); replaces the whole table."""
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
    ]
    for uid, block in sorted(owners.items()):
        lines.append(
            f'    oifname "lo" tcp dport {block.first}-{block.last} '
            f"meta skuid != {{ 0, {uid} }} reject with tcp reset"
        )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def nft_available() -> bool:
    return shutil.which("nft") is not None


def apply(owners: dict[int, PortBlock], table: str = TABLE) -> None:
    """Load the rules (atomically: nft applies the whole script or nothing)."""
    nft = shutil.which("nft")
    if nft is None:
        raise FirewallError(
            "nft is not installed, so students' services would be open to each other",
            hint="apt-get install nftables",
        )
    result = subprocess.run(
        [nft, "-f", "-"], input=ruleset(owners, table), text=True, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise FirewallError(
            "nftables refused the isolation rules",
            where="nft -f",
            hint=result.stderr.strip()
            or "is this host allowed to set firewall rules (CAP_NET_ADMIN)?",
        )


def remove(table: str = TABLE) -> None:
    nft = shutil.which("nft")
    if nft is not None:
        subprocess.run([nft, "delete", "table", "inet", table], capture_output=True, check=False)
