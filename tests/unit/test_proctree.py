"""Finding every process of a service without a cgroup: its tree, its group and session,
and whoever holds its output pipe (real processes, a second or so)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from coursestack.proctree import ProcessTree, pipe_inode
from support import wait_for

LEADER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '271828'], start_new_session=True)\n"
    "print(child.pid, flush=True)\ntime.sleep(10000)\n"
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_leader() -> tuple[subprocess.Popen[bytes], int]:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    return leader, child


def test_a_child_in_its_own_session_is_found_through_the_tree() -> None:
    leader, child = start_leader()
    try:
        tree = ProcessTree(leader.pid)
        assert {p.pid for p in tree.remember()} == {leader.pid, child}
        tree.kill_all()
        leader.wait(10)
        wait_for(lambda: gone(child), timeout=10, what="the child gone")
    finally:
        leader.kill()
        leader.wait()
        assert leader.stdout is not None
        leader.stdout.close()


def test_a_child_orphaned_by_its_leader_is_found_by_the_pipe_it_holds() -> None:
    leader, child = start_leader()
    assert leader.stdout is not None
    try:
        tree = ProcessTree(leader.pid, pipe_inode(leader.stdout.fileno()))
        os.kill(leader.pid, signal.SIGKILL)  # it crashed: its child now belongs to init
        leader.wait(10)
        assert psutil.Process(child).ppid() != leader.pid
        assert [p.pid for p in tree.remember()] == [child]
        tree.kill_all()
        wait_for(lambda: gone(child), timeout=10, what="the orphan gone")
    finally:
        leader.stdout.close()
        if not gone(child):
            os.kill(child, signal.SIGKILL)
