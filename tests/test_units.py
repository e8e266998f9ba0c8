from __future__ import annotations

import pytest

from hpcspawner.backends.slurm_words import slurm_time
from hpcspawner.units import format_size, mebibytes, parse_duration, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("12GiB", 12 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5GiB", 3 * 512 * 1024**2),
    ("2TiB", 2 * 1024**4), ("64KiB", 64 * 1024),
])
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["28 GB", "28GB", "12G", "lots", "", "-1GiB", "0GiB"])
def test_bad_sizes_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="GiB"):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("6h", 21600), ("30m", 1800), ("1d12h", 129600), ("90s", 90), ("06:00:00", 21600),
    ("1-00:00:00", 86400), ("2h30m", 9000),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["6 hours", "6", "h", "1h1h", "0h", "6hx", "25:99:00"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|unit"):
        parse_duration(text)


def test_bare_integer_duration_asks_for_a_unit() -> None:
    with pytest.raises(ValueError, match="no unit"):
        parse_duration(6)


def test_scheduler_forms() -> None:
    assert slurm_time(21600) == "06:00:00"
    assert slurm_time(129600) == "1-12:00:00"
    assert mebibytes(20 * 1024**3) == 20480
    assert mebibytes(1) == 1
    assert format_size(12 * 1024**3) == "12GiB"


def test_every_written_duration_comes_from_one_split() -> None:
    """The people's form, profiles.yaml's and SLURM's D-HH:MM:SS are made from one split."""
    from hpcspawner.units import format_duration, split_duration, typed_duration

    assert split_duration(129_605) == (1, 12, 0, 5)
    assert (format_duration(129_605), typed_duration(129_605), slurm_time(129_605)) == (
        "1 d 12 h 5 s", "1d12h5s", "1-12:00:05")
    assert typed_duration(0) == "0s" and typed_duration(5400) == "1h30m"
