"""The timeline picture's geometry: every coordinate inside the picture whatever the dates, ticks bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certloop.renewer.timeline import LABEL, WIDTH, timeline

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def test_bars_and_marks_stay_inside_the_picture_for_any_dates() -> None:
    picture = timeline([
        ("five-years", NOW + timedelta(days=1826), NOW + timedelta(days=1200)),
        ("expired", NOW - timedelta(days=3), NOW - timedelta(days=10)),
        ("nothing", None, NOW),
        ("week", NOW + timedelta(days=6), NOW + timedelta(days=2)),
    ], NOW)
    for bar in picture.bars:
        assert LABEL <= bar.x_end <= WIDTH and (bar.x_due is None or LABEL <= bar.x_due <= WIDTH)
    expired = picture.bars[1]
    assert expired.expired and expired.x_end == LABEL and expired.days_left == -3.0
    assert picture.bars[2].days_left is None
    assert picture.bars[3].x_due is not None and picture.bars[3].x_due < picture.bars[3].x_end
    assert 1 <= len(picture.ticks) <= 10, [t.label for t in picture.ticks]


def test_a_short_horizon_gets_weekly_ticks() -> None:
    picture = timeline([("a", NOW + timedelta(days=20), NOW + timedelta(days=10))], NOW)
    assert [t.label for t in picture.ticks][:2] == ["+7d", "+14d"]
