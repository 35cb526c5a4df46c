"""The on-call roster: the shipped example, validation errors naming file/line/field, weekly rotations (DST),
business hours, and `coffee-scraper oncall show` on a real roster file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from coffee_scraper.incidents.oncall import ROLES, BusinessHours, RosterError, load_roster, parse_roster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "oncall.example.toml"
BERLIN = ZoneInfo("Europe/Berlin")

ROTATION = """
[people.ann]
name = "Ann"
email = "ann@example.com"
[people.ben]
name = "Ben"
email = "ben@example.com"
timezone = "America/New_York"
[people.cat]
name = "Cat"
[roles]
engineering_manager = "cat"
[rotations.oncall_primary]
people = ["ann", "ben"]
handoff = "mon 09:00"
timezone = "Europe/Berlin"
start = 2026-03-02
"""


def test_example_roster_holds_the_runbook_contacts_for_every_role() -> None:
    roster = load_roster(EXAMPLE)
    at = datetime(2026, 12, 24, 3, 0, tzinfo=UTC)
    for role in ROLES:
        person = roster.who(role, at)
        assert person is not None, role
        assert person.phone == "+00 0000 000000"
        assert person.email == "oncall@example.com"
        assert person.slack == "@system-owner"
    assert roster.who("oncall_secondary", at).name == "System Owner (Backup)"  # type: ignore[union-attr]


def test_missing_file_is_an_empty_roster(tmp_path: Path) -> None:
    roster = load_roster(tmp_path / "nope.toml")
    assert roster.source is None
    assert roster.who("oncall_primary", datetime.now(UTC)) is None


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[people.a]\nname = "A"\n[roles]\nsenior_engineer = "zed"\n', "oncall.toml:4: roles.senior_engineer"),
        ('[people.a]\nname = "A"\n[roles]\nintern = "a"\n', "oncall.toml:4: roles.intern: unknown role"),
        ('[people.a]\nname = "A"\ntimezone = "Mars/Olympus"\n', "oncall.toml:3: people.a.timezone"),
        ('[people.a]\nname = "A"\nemail = "not-an-address"\n', "oncall.toml:3: people.a.email"),
        ('[people.a]\nslack = "@a"\n', "oncall.toml:1: people.a.name: missing"),
        ('[people.a]\nname = "A"\npager = "x"\n', "oncall.toml:3: people.a.pager: unknown field"),
        (
            '[people.a]\nname = "A"\n[rotations.oncall_primary]\npeople = ["a"]\nhandoff = "someday"\n',
            "oncall.toml:5: rotations.oncall_primary.handoff",
        ),
        ('[people.a]\nname = "A"\n[rotations.cto]\npeople = ["a"]\n', "oncall.toml:3: rotations.cto"),
        ("[people.a\nname = 1\n", "oncall.toml: not valid TOML"),
    ],
)
def test_validation_errors_name_file_line_and_field(text: str, where: str) -> None:
    with pytest.raises(RosterError) as info:
        parse_roster(text, "oncall.toml")
    assert str(info.value).startswith(where), str(info.value)


def test_weekly_rotation_hands_off_at_local_time_across_dst() -> None:
    roster = parse_roster(ROTATION)

    def on_call(local: datetime) -> str:
        person = roster.who("oncall_primary", local.replace(tzinfo=BERLIN).astimezone(UTC))
        assert person is not None
        return person.key

    assert on_call(datetime(2026, 3, 2, 9, 0)) == "ann"  # the first hand-off on/after start
    assert on_call(datetime(2026, 3, 9, 8, 59)) == "ann"
    assert on_call(datetime(2026, 3, 9, 9, 0)) == "ben"
    # Europe switches to summer time on 2026-03-29: the hand-off stays at 09:00 local (07:00 UTC, not 08:00)
    assert on_call(datetime(2026, 3, 30, 8, 59)) == "ben"
    assert on_call(datetime(2026, 3, 30, 9, 0)) == "ann"
    assert roster.who("oncall_primary", datetime(2026, 3, 30, 7, 0, tzinfo=UTC)).key == "ann"  # type: ignore[union-attr]
    assert roster.who("engineering_manager", datetime(2026, 3, 30, tzinfo=UTC)).key == "cat"  # type: ignore[union-attr]
    assert roster.who("senior_engineer", datetime(2026, 3, 30, tzinfo=UTC)) is None


def test_primary_falls_back_to_secondary_and_owner_references_resolve() -> None:
    roster = parse_roster(
        '[people.a]\nname = "A"\nslack = "@alpha"\nemail = "a@x.io"\n[roles]\noncall_secondary = "a"\n'
    )
    assert roster.who("oncall_primary", datetime.now(UTC)).key == "a"  # type: ignore[union-attr]
    for ref in ("a", "@a", "@alpha", "alpha", "A@X.IO"):
        assert roster.resolve(ref).key == "a"  # type: ignore[union-attr]
    assert roster.resolve("@stranger") is None


def test_business_hours_next_open_in_the_persons_time_zone() -> None:
    bh = BusinessHours.parse("09:00-17:00", "mon,tue,wed,thu,fri")
    ny = ZoneInfo("America/New_York")
    wednesday_noon_utc = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 07:00 in New York
    assert bh.next_open(wednesday_noon_utc, ZoneInfo("UTC")) == wednesday_noon_utc
    assert bh.next_open(wednesday_noon_utc, ny) == datetime(2026, 11, 25, 9, 0, tzinfo=ny).astimezone(UTC)
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert bh.next_open(saturday, BERLIN) == datetime(2026, 11, 30, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    friday_evening = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    assert bh.next_open(friday_evening, ZoneInfo("UTC")) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="BUSINESS_HOURS"):
        BusinessHours.parse("17:00-09:00", "mon")
    with pytest.raises(ValueError, match="BUSINESS_DAYS"):
        BusinessHours.parse("09:00-17:00", "mon,funday")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COFFEE_SCRAPER_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from coffee_scraper.cli import main; main()", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_oncall_show_json_applies_rotation_and_lists_channels(tmp_path: Path) -> None:
    roster = tmp_path / "oncall.toml"
    roster.write_text(ROTATION)
    env = {
        "COFFEE_SCRAPER_ONCALL_FILE": str(roster),
        "COFFEE_SCRAPER_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/x",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path),
    }
    result = _cli("oncall", "show", "--at", "2026-03-09T08:30Z", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["roles"]["oncall_primary"]["key"] == "ben"
    assert data["roles"]["senior_engineer"] is None
    assert data["policy"]["P0"]["people"] == ["ben", "cat"]
    assert data["policy"]["P3"]["business_hours_only"] is True
    assert [lv["after_min"] for lv in data["escalation_levels"]] == [0, 30, 60, 120]
    assert data["channels"]["slack"]["on"] is True
    assert data["channels"]["github"] == {
        "on": False,
        "detail": "off: set COFFEE_SCRAPER_GITHUB_REPO and COFFEE_SCRAPER_GITHUB_TOKEN",
    }
    table = _cli("oncall", "show", "--at", "2026-03-09T08:30Z", env=env)
    assert table.returncode == 0, table.stderr
    assert "Ben (ben)" in table.stdout and "off: set COFFEE_SCRAPER_SMTP_HOST" in table.stdout


def test_oncall_show_reports_a_broken_roster_with_its_line(tmp_path: Path) -> None:
    roster = tmp_path / "oncall.toml"
    roster.write_text('[people.a]\nname = "A"\n[roles]\ncto = "nobody"\n')
    result = _cli(
        "oncall", "show", env={"COFFEE_SCRAPER_ONCALL_FILE": str(roster), "COFFEE_SCRAPER_LOG_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert f"{roster}:4: roles.cto" in " ".join(result.stderr.split())
