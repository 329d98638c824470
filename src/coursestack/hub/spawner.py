"""CoursestackSpawner: each student's own complete course environment, as their unix user.

Like JupyterHub's LocalProcessSpawner (whose start/poll/stop it follows), but:
- the student gets a unix account of their own (users.py; TLJH-style names), home 0700,
  their state folder and secrets in it; with `create_users = False` (PAM) the students'
  existing accounts are used;
- the process is `coursestack singleuser` run AS that user, so every service of the
  instance runs as the student too (coursestack only switches users when it is root);
- the instance's ports come from the student's block, closed to other students by
  nftables (network.py), and kernels use unix sockets;
- the whole instance sits in one memory cgroup sized from the course's `memory_budget`
  (where a cgroup hierarchy is writable), so one student's runaway notebook cannot take
  another's memory;
- get_state/load_state keep the pid and its start time, so a restarted Hub re-attaches
  to environments that kept running (and never mistakes a reused pid for one).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sys
from pathlib import Path
from subprocess import Popen
from typing import Any

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Integer, Unicode

from coursestack import cgroups
from coursestack.hub import network, users
from coursestack.ports import port_is_free
from coursestack.state import StateFolder


def instance_key(unix_name: str) -> str:
    return f"hub-{unix_name}"


class CoursestackSpawner(LocalProcessSpawner):  # type: ignore[misc]
    """One coursestack instance per student, as the student's own unix user."""

    course_spec = Unicode(
        "",
        config=True,
        help="Path of the course.toml every student runs ('' = the embedded sample course).",
    )
    hub_dir = Unicode(
        "/var/lib/coursestack-hub",
        config=True,
        help="The hub's own folder: user registry, port blocks, logs.",
    )
    unix_prefix = Unicode("cs-", config=True, help="Prefix of the unix accounts made for students.")
    create_users = Bool(
        True,
        config=True,
        help="Create a unix account per student (False: use existing accounts, as with PAM).",
    )
    state_subdir = Unicode(
        "coursestack", config=True, help="The student's state folder, relative to their home."
    )
    instance_memory_limit = Integer(
        0, config=True, help="Bytes for the whole instance (0: no limit)."
    )
    firewall = Bool(
        True, config=True, help="Close each student's port block to other users with nftables."
    )
    disposable = Bool(
        False, config=True, help="Delete the account and all its data when the user is deleted."
    )
    started_at = Unicode("")
    unix_name = Unicode("")

    # -- who ---------------------------------------------------------------------------------

    @property
    def registry(self) -> users.Registry:
        return users.Registry(Path(self.hub_dir) / "users.json", self.unix_prefix)

    @property
    def blocks(self) -> network.PortBlocks:
        return network.PortBlocks(Path(self.hub_dir) / "ports.json")

    def student(self) -> users.Student:
        if not self.unix_name:
            self.unix_name = (
                self.registry.unix_name(self.user.name) if self.create_users else self.user.name
            )
        return users.ensure_student(self.user.name, self.unix_name, self.create_users)

    def state_dir(self, student: users.Student) -> Path:
        return student.home / self.state_subdir

    def make_preexec_fn(self, name: str) -> Any:
        """Into the instance's memory cgroup (as root), then become the student."""
        become = super().make_preexec_fn(name)
        procs = self._cgroup_procs

        def preexec() -> None:
            if procs:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))
            become()

        return preexec

    _cgroup_procs = ""

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self.unix_name)
        env.update(USER=entry.pw_name, HOME=entry.pw_dir, SHELL=entry.pw_shell)
        return env

    # -- the verbs ---------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        student = self.student()
        block = self.blocks.block_for(student.unix_name)
        self.apply_firewall()
        users.grant_traverse(self._paths_students_need())
        self.ip = "127.0.0.1"
        self.port = next(
            port for port in range(block.last, block.first - 1, -1) if port_is_free(port)
        )
        self._cgroup_procs = ""
        if self.instance_memory_limit:
            group = cgroups.create(
                instance_key(student.unix_name), "instance", int(self.instance_memory_limit), None
            )
            if group is not None:
                self._cgroup_procs = str(group.procs)
        env = self.get_env()
        env["COURSESTACK_PORT_RANGE"] = block.as_env()
        env["COURSESTACK_HOME"] = str(student.home / ".coursestack")
        env.setdefault("JUPYTERHUB_ACTIVITY_INTERVAL", "60")
        state = self.state_dir(student)
        template = Path(self.hub_dir) / "template"
        if self.disposable and not state.exists() and StateFolder(template).instance_file.exists():
            state.mkdir(mode=0o700)
            from coursestack.hub.template import copy_for

            copy_for(template, state, student.uid, student.gid)
        cmd = [sys.executable, "-m", "coursestack", "singleuser", "--state", str(state)]
        if self.course_spec:
            cmd.insert(4, self.course_spec)
        logs = Path(self.hub_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = open(logs / f"{student.unix_name}.log", "ab")  # noqa: SIM115
        self.log.info(
            "starting coursestack for %s as %s in %s", self.user.name, student.unix_name, state
        )
        try:
            self.proc = Popen(
                cmd,
                env=env,
                cwd=str(student.home),
                stdout=log_file,
                stderr=log_file,
                stdin=open(os.devnull),  # noqa: SIM115
                preexec_fn=self.make_preexec_fn(student.unix_name),
                start_new_session=True,
            )
        finally:
            log_file.close()
        self.pid = self.proc.pid
        self.started_at = str(psutil.Process(self.pid).create_time())
        return (self.ip, self.port)

    async def poll(self) -> int | None:
        status: int | None = await super().poll()
        if status is None and self.proc is None and self.started_at:
            # Re-attached after a Hub restart: make sure the pid is still ours.
            try:
                same = str(psutil.Process(self.pid).create_time()) == self.started_at
            except psutil.Error:
                same = False
            if not same:
                self.clear_state()
                return 0
        return status

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._remove_cgroup()

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.unix_name:
            state["unix_name"] = self.unix_name
        if self.pid and self.started_at:
            state["started_at"] = self.started_at
            state["port"] = self.port
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.unix_name = state.get("unix_name", self.unix_name)
        self.started_at = state.get("started_at", "")
        if state.get("port"):
            self.port = int(state["port"])
            self.ip = "127.0.0.1"

    def clear_state(self) -> None:
        super().clear_state()
        self.started_at = ""

    def delete_forever(self) -> None:
        """The Hub deleted the user: a disposable session leaves nothing behind."""
        if not self.disposable:
            return
        unix_name = self.unix_name or self.registry.all().get(self.user.name, "")
        if not unix_name:
            return
        if self.pid:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        users.remove_student(unix_name)
        self._remove_cgroup(unix_name)
        self.blocks.release(unix_name)
        self.registry.forget(self.user.name)
        self.apply_firewall()

    # -- helpers ---------------------------------------------------------------------------

    def apply_firewall(self) -> None:
        if not self.firewall:
            return
        owners: dict[int, network.PortBlock] = {}
        for unix_name, block in self.blocks.all().items():
            try:
                owners[pwd.getpwnam(unix_name).pw_uid] = block
            except KeyError:
                continue
        network.apply(owners)

    def _paths_students_need(self) -> list[Path]:
        paths = [Path(sys.executable), Path(__file__)]
        paths += [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if self.course_spec:
            paths.append(Path(self.course_spec))
        return paths

    def _remove_cgroup(self, unix_name: str = "") -> None:
        name = unix_name or self.unix_name
        if not name:
            return
        for version_root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")):
            group = version_root / "coursestack" / instance_key(name)
            for folder in (group / "instance", group):
                with contextlib.suppress(OSError):
                    folder.rmdir()
