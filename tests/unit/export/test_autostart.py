"""autostart: the user unit or launch agent written, reported and removed (no service started)."""

from __future__ import annotations

from pathlib import Path

from export_readback import COURSES
from support import cli


def test_autostart_systemd_enable_status_disable(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    assert cli("autostart", "status", "--platform", "systemd", env=env, check=False).returncode == 3
    enabled = cli("autostart", "enable", "--platform", "systemd", env=env)
    unit = tmp_path / "config" / "systemd" / "user" / "coursestack-sample.service"
    link = unit.parent / "default.target.wants" / unit.name
    assert unit.is_file() and link.is_symlink() and link.resolve() == unit
    assert "starts at login" in enabled.stdout
    assert "ExecStart=" in unit.read_text()
    assert cli("autostart", "status", "--platform", "systemd", env=env).returncode == 0
    cli("autostart", "disable", "--platform", "systemd", env=env)
    assert not unit.exists() and not link.is_symlink()
    assert cli("autostart", "status", "--platform", "systemd", env=env, check=False).returncode == 3


def test_autostart_launchd_enable_status_disable(tmp_path: Path) -> None:
    import plistlib

    env = {"HOME": str(tmp_path)}
    cli("autostart", "enable", str(COURSES["lab-tools"]), "--platform", "launchd", env=env)
    agent_file = tmp_path / "Library" / "LaunchAgents" / "org.coursestack.lab-tools.plist"
    agent = plistlib.loads(agent_file.read_bytes())
    assert agent["Label"] == "org.coursestack.lab-tools"
    assert str(COURSES["lab-tools"]) in agent["ProgramArguments"]
    assert (
        cli(
            "autostart", "status", "--instance", "lab-tools", "--platform", "launchd", env=env
        ).returncode
        == 0
    )
    cli("autostart", "disable", "--instance", "lab-tools", "--platform", "launchd", env=env)
    assert not agent_file.exists()


def test_the_unit_knows_the_daemons_already_running_status() -> None:
    from coursestack.daemon import EXIT_ALREADY_RUNNING
    from coursestack.export import systemd

    assert systemd.EXIT_ALREADY_RUNNING == EXIT_ALREADY_RUNNING
