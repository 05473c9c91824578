"""Application Auto Scaling schedule expressions: ``at(...)``, ``rate(...)`` and ``cron(...)``.

AWS's cron has six fields, ``minutes hours day-of-month month day-of-week year``, with the
wildcards of the EventBridge cron reference: ``,`` lists, ``-`` ranges, ``*`` all, ``/`` steps
(``0/15``, ``*/10``, ``5-50/5``), ``?`` any (exactly one of day-of-month and day-of-week must be
``?``), ``L`` the last day of the month (day-of-month) or of the week (day-of-week; ``5L``: the
last Thursday), ``W`` the weekday nearest a day of the month (``15W``, ``LW``) and ``#`` the n-th
weekday of the month (``2#1``: the first Monday). Months are 1-12 or JAN-DEC, days of the week
1-7 or SUN-SAT (1 is Sunday), years 1970-2199.

A cron or at expression is read in its ``Timezone`` (UTC by default). On a daylight-saving change
AWS's schedulers skip a local time that does not exist (spring forward) and run a local time that
occurs twice only once, at its first occurrence (autumn); so does :func:`fire_times`
(EventBridge Scheduler's documented behaviour, which Application Auto Scaling's cron follows).

>>> s = parse_schedule("cron(0 7 ? * MON-FRI *)")
>>> [t.isoformat() for t in fire_times(s, datetime(2024, 1, 5, tzinfo=UTC),
...                                     datetime(2024, 1, 9, tzinfo=UTC))]
['2024-01-05T07:00:00+00:00', '2024-01-08T07:00:00+00:00']
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tuner.errors import PolicyError

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
# (name, low, high, names) of the six fields
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)
_RATE_UNITS = {
    "minute": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
}
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+) ([a-z]+)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")


def timezone(name: str | None, where: str = "Timezone") -> tzinfo:
    """The IANA zone ``name`` (None: UTC); unknown names raise PolicyError."""
    if name is None or name in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(
            f"{where} must be an IANA time zone name such as Europe/Paris, got {name!r}"
        ) from None


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    """Plain values (after lists, ranges and steps)."""
    last: bool = False
    """``L``: the last day of the month (day-of-month) or ``nL`` last weekday n (day-of-week)."""
    last_weekdays: frozenset[int] = frozenset()
    nearest_weekday: frozenset[int] = frozenset()
    """``nW`` days of the month; 0 stands for ``LW``."""
    nth: frozenset[tuple[int, int]] = frozenset()
    """``d#n``: (day-of-week, n)."""
    any: bool = False
    """``?``."""


@dataclass(frozen=True)
class Cron:
    """A parsed six-field AWS cron expression (without the ``cron(...)`` wrapper)."""

    text: str
    minutes: _Field
    hours: _Field
    dom: _Field
    months: _Field
    dow: _Field
    years: _Field

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` (a local calendar date) is one the expression runs on."""
        if day.month not in self.months.values or day.year not in self.years.values:
            return False
        if self.dom.any:
            return _dow_matches(self.dow, day)
        return _dom_matches(self.dom, day)

    def local_times(self, start: date, end: date) -> Iterator[datetime]:
        """Naive local datetimes it runs at, for days in [start, end], in order."""
        minutes = sorted(self.minutes.values)
        hours = sorted(self.hours.values)
        day = start
        while day <= end:
            if day.year > 2199:
                return
            if self.matches_day(day):
                for h in hours:
                    for m in minutes:
                        yield datetime(day.year, day.month, day.day, h, m)
            day += timedelta(days=1)


def _aws_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1  # Monday=0 in Python; AWS: 1 = Sunday .. 7 = Saturday


def _dow_matches(f: _Field, day: date) -> bool:
    wd = _aws_weekday(day)
    if wd in f.values:
        return True
    last_day = calendar.monthrange(day.year, day.month)[1]
    if f.last_weekdays and wd in f.last_weekdays and day.day + 7 > last_day:
        return True
    return (wd, (day.day - 1) // 7 + 1) in f.nth


def _dom_matches(f: _Field, day: date) -> bool:
    last_day = calendar.monthrange(day.year, day.month)[1]
    if day.day in f.values or (f.last and day.day == last_day):
        return True
    for n in f.nearest_weekday:
        target = min(last_day if n == 0 else n, last_day)
        wd = date(day.year, day.month, target).weekday()
        if wd == 5:  # Saturday: the Friday before, unless that leaves the month
            target = target - 1 if target > 1 else target + 2
        elif wd == 6:  # Sunday: the Monday after, unless that leaves the month
            target = target + 1 if target < last_day else target - 2
        if day.day == target:
            return True
    return False


def _number(token: str, names: dict[str, int], where: str) -> int:
    key = token.upper()
    if key in names:
        return names[key]
    if not token.isdigit():
        raise PolicyError(f"{where}: {token!r} is not a number{' or a name' if names else ''}")
    return int(token)


def _parse_field(text: str, index: int, where: str) -> _Field:
    name, lo, hi, names = _FIELDS[index]
    where = f"{where} {name} field {text!r}"
    if text == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise PolicyError(f"{where}: '?' is allowed only in day-of-month or day-of-week")
        return _Field(frozenset(), any=True)
    values: set[int] = set()
    last = False
    last_weekdays: set[int] = set()
    nearest: set[int] = set()
    nth: set[tuple[int, int]] = set()

    def check(v: int) -> int:
        if not lo <= v <= hi:
            raise PolicyError(f"{where}: values must be in {lo}..{hi}, got {v}")
        return v

    for part in text.split(","):
        upper = part.upper()
        if name == "day-of-month" and upper in ("L", "LW"):
            if upper == "L":
                last = True
            else:
                nearest.add(0)
            continue
        if name == "day-of-month" and upper.endswith("W") and upper[:-1].isdigit():
            nearest.add(check(int(upper[:-1])))
            continue
        if name == "day-of-week" and upper == "L":
            values.add(7)  # the last day of the week: Saturday
            continue
        if name == "day-of-week" and upper.endswith("L"):
            last_weekdays.add(check(_number(part[:-1], names, where)))
            continue
        if name == "day-of-week" and "#" in part:
            d, _, n = part.partition("#")
            if not n.isdigit() or not 1 <= int(n) <= 5:
                raise PolicyError(f"{where}: the n of d#n must be in 1..5, got {n!r}")
            nth.add((check(_number(d, names, where)), int(n)))
            continue
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise PolicyError(f"{where}: a step must be a positive integer, got {step_text!r}")
            step = int(step_text)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            first, _, second = rng.partition("-")
            a, b = check(_number(first, names, where)), check(_number(second, names, where))
            if a > b:
                raise PolicyError(f"{where}: a range must run low-high, got {rng!r}")
        else:
            a = check(_number(rng, names, where))
            b = hi if step_text else a  # "0/15": from 0 every 15
        values.update(range(a, b + 1, step))
    return _Field(
        frozenset(values),
        last=last,
        last_weekdays=frozenset(last_weekdays),
        nearest_weekday=frozenset(nearest),
        nth=frozenset(nth),
    )


def parse_cron(fields: str, where: str = "Schedule") -> Cron:
    """Parse the inside of ``cron(...)``: six fields separated by spaces."""
    parts = fields.split()
    if len(parts) != 6:
        raise PolicyError(
            f"{where}: cron needs 6 fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(parts)} in {fields!r}"
        )
    parsed = [_parse_field(p, i, where) for i, p in enumerate(parts)]
    dom, dow = parsed[2], parsed[4]
    if dom.any == dow.any:
        raise PolicyError(
            f"{where}: exactly one of day-of-month and day-of-week must be '?', got "
            f"{parts[2]!r} and {parts[4]!r}"
        )
    return Cron(" ".join(parts), *parsed)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule expression: exactly one of ``at`` (naive local), ``rate_s``, ``cron``."""

    expression: str
    at: datetime | None = None
    rate_s: int | None = None
    cron: Cron | None = None


def parse_schedule(expression: str, where: str = "Schedule") -> Schedule:
    """Parse ``at(yyyy-mm-ddThh:mm:ss)``, ``rate(N minute|minutes|hour|hours|day|days)`` or
    ``cron(six fields)``; anything else raises PolicyError naming the forms."""
    if not isinstance(expression, str):
        raise PolicyError(f"{where} must be a string, got {expression!r}")
    text = expression.strip()
    if m := _AT.match(text):
        try:
            return Schedule(text, at=datetime.fromisoformat(m.group(1)))
        except ValueError:
            raise PolicyError(f"{where}: {m.group(1)!r} is not a valid date and time") from None
    if m := _RATE.match(text):
        value, unit = int(m.group(1)), m.group(2)
        if unit not in _RATE_UNITS or value < 1:
            raise PolicyError(
                f"{where}: rate(value unit) needs a positive integer and one of "
                f"{', '.join(_RATE_UNITS)}, got {text!r}"
            )
        return Schedule(text, rate_s=value * _RATE_UNITS[unit])
    if m := _CRON.match(text):
        return Schedule(text, cron=parse_cron(m.group(1), where))
    raise PolicyError(
        f"{where} must be at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(6 fields), "
        f"got {expression!r}"
    )


def _resolve(local: datetime, zone: tzinfo) -> datetime | None:
    """The UTC instant of a naive local time; None if the time does not exist (DST gap)."""
    first = local.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != local:
        return None  # spring forward: skipped
    return utc  # fold=0 is the first of two occurrences (autumn): run once


def fire_times(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    *,
    zone: tzinfo = UTC,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> list[datetime]:
    """UTC instants in [start, end) at which ``schedule`` runs, in order.

    ``start_time``/``end_time`` are the action's StartTime/EndTime (UTC): a recurring schedule
    runs only between them. A rate schedule counts from ``start_time`` (or ``start``).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    lo = max(start, start_time) if start_time else start
    hi = min(end, end_time) if end_time else end
    if schedule.at is not None:
        t = _resolve(schedule.at, zone)
        return [t] if t is not None and start <= t < end else []
    if hi <= lo:
        return []
    if schedule.rate_s is not None:
        origin = start_time or start
        step = timedelta(seconds=schedule.rate_s)
        k = max(0, -(-(lo - origin) // step))
        out = []
        t = origin + k * step
        while t < hi:
            out.append(t)
            t += step
        return out
    assert schedule.cron is not None
    first_day = lo.astimezone(zone).date() - timedelta(days=1)
    last_day = hi.astimezone(zone).date() + timedelta(days=1)
    # "If you specify a start time, Application Auto Scaling performs the action at this time,
    # and then performs the action based on the specified recurrence" (AAS user guide).
    out = [start_time] if start_time is not None and start <= start_time < hi else []
    for local in schedule.cron.local_times(first_day, last_day):
        t = _resolve(local, zone)
        if t is not None and lo <= t < hi and t not in out:
            out.append(t)
    return sorted(out)
