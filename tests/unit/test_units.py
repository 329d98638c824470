"""Sizes and durations for people (coursestack.units): read, written, and read back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coursestack.units import GB, KB, MB, format_duration, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1G", 1024**3),
        ("512M", 512 * MB),
        ("1.5GB", 1536 * MB),
        ("800MiB", 800 * MB),
        ("2 gb", 2 * 1024**3),
        ("64k", 64 * 1024),
        ("65536B", 65536),
        ("1T", 1024**4),
    ],
)
def test_sizes_people_write_are_understood(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["lots", "", "1", "-1G", "0M", "1X", "1e3G", "G", "1 G B", "nanG", "1.G"]
)
def test_anything_else_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_sizes_read_well() -> None:
    assert [format_size(n) for n in (512, 4000, 2**20 * 41, 2**30 * 3)] == [
        "512 bytes",
        "3.9 KB",
        "41 MB",
        "3.0 GB",
    ]


def test_a_missing_size_or_duration_reads_as_the_placeholder() -> None:
    assert format_size(None) == "-" and format_size(None, "\u2013") == "\u2013"
    assert format_duration(None) == "-" and format_duration(None, "n/a") == "n/a"


@given(st.integers(min_value=KB, max_value=1024 * GB))
def test_a_written_size_reads_back_within_its_rounding(count: int) -> None:
    # One decimal below 10 of a unit, whole numbers above: at most 5 % off.
    read_back = parse_size(format_size(count))
    assert abs(read_back - count) <= 0.05 * count + 1


@given(st.integers(min_value=0, max_value=KB - 1))
def test_a_size_under_a_kilobyte_is_exact(count: int) -> None:
    assert format_size(count) == f"{count} bytes"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (-3, "0 s"),
        (59.9, "59 s"),
        (60, "1 min 0 s"),
        (187, "3 min 7 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (7500, "2 h 5 min"),
        (90000, "25 h 0 min"),
    ],
)
def test_durations_read_like_the_dashboard(seconds: float, words: str) -> None:
    assert format_duration(seconds) == words


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_a_written_duration_is_never_above_the_span(seconds: float) -> None:
    parts = format_duration(seconds).split()
    scale = {"h": 3600, "min": 60, "s": 1}
    pairs = zip(parts[::2], parts[1::2], strict=True)
    total = sum(int(number) * scale[unit] for number, unit in pairs)
    assert seconds - (60 if seconds >= 3600 else 1) < total <= seconds
