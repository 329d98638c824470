"""Log tails and rotation."""

from __future__ import annotations

from pathlib import Path

from coursestack.logs import rotate_if_large, tail_lines


def test_tail_reads_the_end_of_a_big_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    assert tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_lines(tmp_path / "missing.log", 3) == []


def test_rotation_keeps_n_files_and_truncates_in_place(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    with open(log, "ab") as writer:  # a service's open O_APPEND handle
        for round_number in range(5):
            writer.write(f"round {round_number}\n".encode() * 1000)
            writer.flush()
            assert rotate_if_large(log, 1000, keep=2)
        writer.write(b"after\n")
        writer.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log", "svc.log.1", "svc.log.2"]
    assert log.read_bytes() == b"after\n"  # the writer went on at the new end
    assert (tmp_path / "svc.log.1").read_text().startswith("round 4")
    assert (tmp_path / "svc.log.2").read_text().startswith("round 3")
    assert not rotate_if_large(log, 1000, keep=2)
