"""Deterministic campaign data: a pure function of (seed, app id, UTC day) and the clock.

The base attributes of the campaigns sent on one UTC day come from their own
`random.Random(f"{seed}:{app_id}:{day}")`, so any day can be generated on its own, in any
order, in any process. Counters are not stored: they are derived at request time from the
base and the simulated "now", which is what makes them move as the clock moves.
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any

from ._time import format_rfc3339, from_us, require_aware, to_us, utc_day_start_us

DEFAULT_SEED = 20221107
DEFAULT_APPS: dict[str, str] = {
    "sim-app-1": "sim-token-sim-app-1",
    "sim-app-2": "sim-token-sim-app-2",
}
FIRST_DAY = date(2020, 1, 1)
"""Campaigns exist for every UTC day from this one onward."""

# Two apps of visibly different size, and a busy one (about 60,000 campaigns a year) for
# production-scale tests and benchmarks; any other app id gets a range derived from the seed.
_KNOWN_VOLUMES: Mapping[str, tuple[int, int]] = {
    "sim-app-1": (20, 60),
    "sim-app-2": (5, 25),
    "sim-busy-app": (140, 185),
}
_MAX_PER_DAY = 255  # the per-day index is packed into 8 bits of the id

# Renames are spread over these years so that any one-year window inside holds one.
_RENAME_FROM = date(2022, 1, 1)
_RENAME_UNTIL = date(2028, 12, 31)

_MAX_RECIPIENTS = 5000
_SETTLE_MIN_S = 2 * 3600.0
_SETTLE_MAX_S = 10 * 86_400.0
SETTLE_MAX = timedelta(seconds=_SETTLE_MAX_S)
"""Every campaign's counters are final this long after it was sent."""

_OFFSETS_MIN = (480, -300, 330, 540, -180, 60, -420, 600, 345, -240)

_FIRST_NAMES = (
    "Alice", "Ben", "Carmen", "Daniel", "Eva", "Felix", "Grace", "Hugo", "Ivy", "Jason",
    "Kelly", "Leo", "Mandy", "Nathan", "Olivia", "Peter", "Queenie", "Raymond", "Sara", "Tommy",
    "Ursula", "Victor", "Wendy", "Xavier", "Yvonne", "Zach", "Priya", "Kenji", "Mei", "Omar",
)  # fmt: skip
_LAST_NAMES = (
    "Chan", "Wong", "Lee", "Cheung", "Lau", "Ng", "Ho", "Tam", "Smith", "Garcia",
    "Tan", "Lim", "Sato", "Kim", "Patel", "Singh", "Müller", "Rossi", "Silva", "Nguyen",
)  # fmt: skip
_BRANDS = (
    "CINNOX", "ACME", "ACMEBANK", "MTEL", "HKPOST", "FOODIE", "TRAVELGO", "SHOPLY", "FITCLUB",
    "MEDICARE", "EDUPRO", "AUTOHUB", "PETPALS", "GREENGAS", "CITYBUS", "BOOKIT", "CLOUDPAY",
    "HOMEFIX", "STYLEUP", "GAMEON",
)  # fmt: skip
_SENDER_SUFFIXES = ("", "HK", "SG", "INFO", "OTP", "PAY", "NEWS")
_DEPARTMENTS = (
    "Support", "Sales", "Marketing", "Billing", "Care", "Alerts", "Concierge", "Promotions",
    "Orders", "Helpdesk",
)  # fmt: skip
_REGIONS = ("HK", "SG", "UK", "US", "MY", "TW", "JP", "AU")
_SOURCES = (
    "360dialog", "Meta Business Manager", "CINNOX Template Library", "WhatsApp Cloud API",
    "Imported",
)  # fmt: skip
_TEMPLATE_TOPICS = (
    "order", "payment", "delivery", "appointment", "account", "promo", "loyalty", "booking",
    "invoice", "subscription", "event", "survey", "password", "shipping", "refund", "welcome",
    "renewal", "claim", "ticket", "reservation",
)  # fmt: skip
_TEMPLATE_ACTIONS = (
    "update", "reminder", "confirmation", "alert", "notice", "offer", "followup", "status",
    "receipt", "invite",
)  # fmt: skip
_THEMES = (
    "Spring sale", "Summer promo", "Autumn deals", "Winter clearance", "Flash deal",
    "Weekly newsletter", "Payment reminder", "Order update", "Loyalty rewards", "Product launch",
    "Customer survey", "Holiday greetings", "Renewal notice", "Appointment reminder",
    "Service notice", "VIP preview",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Staff:
    """A staff member of an app: `createdBy` shows the name, `sender.senderEID` the EID."""

    name: str
    eid: str


@dataclass(frozen=True, slots=True)
class WhatsAppSender:
    """A WhatsApp channel; about one in ten is renamed from `renamed_on` onward."""

    phone: str
    channel_name: str
    source_name: str
    renamed_to: str | None = None
    renamed_on: date | None = None

    def channel_name_on(self, day: date) -> str:
        if self.renamed_to is not None and self.renamed_on is not None and day >= self.renamed_on:
            return self.renamed_to
        return self.channel_name


@dataclass(frozen=True, slots=True)
class AppProfile:
    """The fixed pools one app's campaigns draw from."""

    app_id: str
    volume: tuple[int, int]
    staff: tuple[Staff, ...]
    sms_senders: tuple[str, ...]
    whatsapp_senders: tuple[WhatsAppSender, ...]
    templates: tuple[str, ...]
    id_mask: int
    # Skewed weights: a few staff and senders do most of the work, as in real accounts.
    staff_cum_weights: tuple[float, ...]
    sms_cum_weights: tuple[float, ...]
    whatsapp_cum_weights: tuple[float, ...]
    template_cum_weights: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class _Campaign:
    """What never changes about a campaign; counters are derived from it and the clock."""

    id: str
    sent_us: int
    date: str
    name: str
    whatsapp: bool
    created_by: str
    phone: str
    channel_name: str | None
    source_name: str | None
    sender_eid: str | None
    subject: str | None
    total: int
    delivered_final: int
    failed_final: int
    read_final: int
    replied_final: int
    settle_s: float

    def progress(self, now_us: int) -> float:
        """Share of the final outcome reached at `now`: fast at first, then tailing off."""
        age_s = (now_us - self.sent_us) / 1e6
        if age_s <= 0:
            return 0.0
        if age_s >= self.settle_s:
            return 1.0
        rest = 1.0 - age_s / self.settle_s
        return 1.0 - rest * rest

    def record(self, now_us: int) -> dict[str, Any]:
        """The API record at `now`; keys exactly as the doc's Availability column says."""
        g = self.progress(now_us)
        # int() floors here because every factor is non-negative; g <= 1 and g*g <= g keep
        # read <= delivered <= total, and rounding is monotone so counters never go down.
        delivered = int(self.delivered_final * g)
        if not self.whatsapp:
            return {
                "id": self.id,
                "date": self.date,
                "campaignName": self.name,
                "channel": "SMS",
                "createdBy": self.created_by,
                "sender": {"phone": self.phone, "senderEID": self.sender_eid},
                "totalRecipients": self.total,
                "delivered": delivered,
            }
        g2 = g * g
        failed = int(self.failed_final * g)
        return {
            "id": self.id,
            "date": self.date,
            "campaignName": self.name,
            "channel": "WhatsApp",
            "createdBy": self.created_by,
            "sender": {
                "phone": self.phone,
                "channelName": self.channel_name,
                "sourceName": self.source_name,
            },
            "subject": self.subject,
            "totalRecipients": self.total,
            "delivered": delivered,
            "read": int(self.read_final * g2),
            "replied": int(self.replied_final * (g2 * g)),
            "pending": self.total - delivered - failed,
            "failed": failed,
        }


class CampaignUniverse:
    """Every campaign of every app, generated on demand and reproducible from the seed.

    >>> from datetime import UTC, datetime
    >>> universe = CampaignUniverse(seed=1)
    >>> day = datetime(2024, 3, 1, tzinfo=UTC)
    >>> rows = universe.campaigns("sim-app-1", day, day + timedelta(days=1), now=day + SETTLE_MAX)
    >>> rows[0]["channel"] in ("SMS", "WhatsApp") and all(r["date"] for r in rows)
    True
    """

    def __init__(self, seed: int = DEFAULT_SEED, apps: Sequence[str] = tuple(DEFAULT_APPS)) -> None:
        self.seed = seed
        self.apps: tuple[str, ...] = tuple(apps)
        self._profiles = {app_id: self._make_profile(app_id) for app_id in self.apps}
        # Per-instance caches (not on the class) so two universes never share entries.
        self._day = functools.lru_cache(maxsize=4096)(self._generate_day)
        self._select = functools.lru_cache(maxsize=32)(self._select_uncached)

    def __repr__(self) -> str:
        return f"CampaignUniverse(seed={self.seed}, apps={self.apps!r})"

    def profile(self, app_id: str) -> AppProfile:
        """The pools of one app; KeyError for an app this universe does not know."""
        try:
            return self._profiles[app_id]
        except KeyError:
            raise KeyError(f"unknown app id {app_id!r}; known: {', '.join(self.apps)}") from None

    def campaigns(self, app_id: str, start: datetime, end: datetime, now: datetime) -> list[dict[str, Any]]:
        """Records sent in [start, end) and before `now`, counters as at `now`, sorted by id."""
        now_us = to_us(require_aware(now, "now"))
        return [c.record(now_us) for c in self._window(app_id, start, end, now_us)]

    def page(
        self,
        app_id: str,
        start: datetime,
        end: datetime,
        now: datetime,
        offset: int,
        limit: int,
    ) -> tuple[int, list[dict[str, Any]]]:
        """`(total, records[offset:offset + limit])`, building only the records returned."""
        now_us = to_us(require_aware(now, "now"))
        selected = self._window(app_id, start, end, now_us)
        return len(selected), [c.record(now_us) for c in selected[offset : offset + limit]]

    def _window(self, app_id: str, start: datetime, end: datetime, now_us: int) -> tuple[_Campaign, ...]:
        self.profile(app_id)
        start_us = to_us(require_aware(start, "start"))
        end_us = to_us(require_aware(end, "end"))
        if end_us < start_us:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        return self._select(app_id, start_us, min(end_us, now_us))

    def _select_uncached(self, app_id: str, start_us: int, upper_us: int) -> tuple[_Campaign, ...]:
        # Cached per (window, now) because a client pages through the same window many times.
        if upper_us <= start_us:
            return ()
        selected = [
            campaign
            for day in _days(from_us(start_us).date(), from_us(upper_us - 1).date())
            for campaign in self._day(app_id, day)
            if start_us <= campaign.sent_us < upper_us
        ]
        # Sorted by id: stable across requests, and deliberately not chronological.
        selected.sort(key=lambda campaign: campaign.id)
        return tuple(selected)

    def _make_profile(self, app_id: str) -> AppProfile:
        rng = random.Random(f"{self.seed}:{app_id}:profile")
        volume = _KNOWN_VOLUMES.get(app_id)
        if volume is None:
            low = rng.randint(3, 30)
            volume = (low, low + rng.randint(5, 40))

        names = rng.sample([f"{f} {last}" for f in _FIRST_NAMES for last in _LAST_NAMES], 50)
        staff = tuple(Staff(name, str(uuid.UUID(int=rng.getrandbits(128), version=4))) for name in names)

        sms_senders = _unique(150, lambda: _sms_sender(rng))
        whatsapp_senders = _whatsapp_senders(rng, 100)
        templates = _unique(
            200,
            lambda: f"{rng.choice(_TEMPLATE_TOPICS)}_{rng.choice(_TEMPLATE_ACTIONS)}_v{rng.randint(1, 5)}",
        )
        return AppProfile(
            app_id=app_id,
            volume=volume,
            staff=staff,
            sms_senders=sms_senders,
            whatsapp_senders=whatsapp_senders,
            templates=templates,
            id_mask=rng.getrandbits(32),
            staff_cum_weights=_zipf_cum_weights(len(staff)),
            sms_cum_weights=_zipf_cum_weights(len(sms_senders)),
            whatsapp_cum_weights=_zipf_cum_weights(len(whatsapp_senders)),
            template_cum_weights=_zipf_cum_weights(len(templates)),
        )

    def _generate_day(self, app_id: str, day: date) -> tuple[_Campaign, ...]:
        profile = self.profile(app_id)
        if day < FIRST_DAY:
            return ()
        rng = random.Random(f"{self.seed}:{app_id}:{day.isoformat()}")
        low, high = profile.volume
        count = min(rng.randint(low, high), _MAX_PER_DAY)
        day_us = utc_day_start_us(day)
        day_index = (day - FIRST_DAY).days
        month = day.strftime("%Y-%m")
        campaigns = []
        for index in range(count):
            sent_us = day_us + rng.randrange(86_400_000) * 1000
            # Random high bits make id order unrelated to time; the low 32 bits (day, index)
            # XOR a per-app mask make ids unique within the app without looking sequential.
            suffix = ((day_index << 8) | index) ^ profile.id_mask
            campaign_id = f"{rng.getrandbits(64):016x}{suffix & 0xFFFFFFFF:08x}"
            offset_min = rng.choice(_OFFSETS_MIN) if rng.random() < 0.3 else 0
            whatsapp = rng.random() < 0.6
            staff = rng.choices(profile.staff, cum_weights=profile.staff_cum_weights)[0]
            name = f"{rng.choice(_THEMES)} {month} #{index + 1}"

            total = 0 if rng.random() < 0.01 else _recipients(rng)
            if whatsapp:
                failed = int(total * rng.uniform(0.0, 0.10))
                delivered = total - failed
                read = int(delivered * rng.uniform(0.30, 0.95))
                replied = int(read * rng.uniform(0.0, 0.30))
            else:
                delivered, failed, read, replied = (
                    int(total * rng.uniform(0.85, 1.0)),
                    0,
                    0,
                    0,
                )
            settle_s = math.exp(rng.uniform(math.log(_SETTLE_MIN_S), math.log(_SETTLE_MAX_S)))

            channel_name: str | None
            source_name: str | None
            subject: str | None
            sender_eid: str | None
            if whatsapp:
                sender = rng.choices(profile.whatsapp_senders, cum_weights=profile.whatsapp_cum_weights)[0]
                template = rng.choices(profile.templates, cum_weights=profile.template_cum_weights)
                phone, channel_name, source_name = (
                    sender.phone,
                    sender.channel_name_on(day),
                    sender.source_name,
                )
                sender_eid, subject = None, template[0]
            else:
                phone = rng.choices(profile.sms_senders, cum_weights=profile.sms_cum_weights)[0]
                channel_name = source_name = subject = None
                sender_eid = staff.eid

            campaigns.append(
                _Campaign(
                    id=campaign_id,
                    sent_us=sent_us,
                    date=format_rfc3339(from_us(sent_us), offset_min),
                    name=name,
                    whatsapp=whatsapp,
                    created_by=staff.name,
                    phone=phone,
                    channel_name=channel_name,
                    source_name=source_name,
                    sender_eid=sender_eid,
                    subject=subject,
                    total=total,
                    delivered_final=delivered,
                    failed_final=failed,
                    read_final=read,
                    replied_final=replied,
                    settle_s=settle_s,
                )
            )
        return tuple(campaigns)


def _days(first: date, last: date) -> Iterator[date]:
    day = max(first, FIRST_DAY)
    while day <= last:
        yield day
        day += timedelta(days=1)


def _recipients(rng: random.Random) -> int:
    # Log-uniform: most campaigns are small, a few reach thousands.
    return max(
        1,
        min(
            _MAX_RECIPIENTS,
            int(math.exp(rng.uniform(0.0, math.log(_MAX_RECIPIENTS + 1)))),
        ),
    )


def _zipf_cum_weights(n: int) -> tuple[float, ...]:
    return tuple(accumulate(1.0 / (rank + 1) ** 0.8 for rank in range(n)))


def _unique(n: int, make: Callable[[], str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(make(), None)
    return tuple(seen)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _sms_sender(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:  # HK virtual (mobile-range) number
        return f"+852{rng.choice('5679')}{_digits(rng, 7)}"
    if kind < 0.70:  # service number: toll-free or hotline
        return rng.choice((f"+852800{_digits(rng, 6)}", f"+8523{_digits(rng, 7)}"))
    # Alphanumeric sender IDs are at most 11 characters.
    return (rng.choice(_BRANDS) + rng.choice(_SENDER_SUFFIXES))[:11]


def _whatsapp_phone(rng: random.Random) -> str:
    country = rng.choice(("852", "852", "852", "65", "44", "1", "60", "886"))
    length = {"852": 8, "65": 8, "44": 10, "1": 10, "60": 9, "886": 9}[country]
    return f"+{country}{rng.choice('6789')}{_digits(rng, length - 1)}"


def _whatsapp_senders(rng: random.Random, n: int) -> tuple[WhatsAppSender, ...]:
    phones = _unique(n, lambda: _whatsapp_phone(rng))
    taken: set[str] = set()

    def channel_name() -> str:
        while True:
            brand = rng.choice(_BRANDS).title().replace("Cinnox", "CINNOX")
            name = f"{brand} {rng.choice(_DEPARTMENTS)} {rng.choice(_REGIONS)}"
            if name in taken:
                name = f"{name} {rng.randint(2, 9)}"
            if name not in taken:
                taken.add(name)
                return name

    senders = [WhatsAppSender(p, channel_name(), rng.choice(_SOURCES)) for p in phones]
    renamed = sorted(rng.sample(range(n), max(1, n // 10)))
    span = (_RENAME_UNTIL - _RENAME_FROM).days
    for slot, position in enumerate(renamed):
        # One per equal slice, jittered only within its middle 40%: gaps stay under 1.4
        # slices (< 365 days for 10 renames over 7 years) yet the days look irregular.
        offset = int((slot + 0.3 + 0.4 * rng.random()) * span / len(renamed))
        old = senders[position]
        senders[position] = WhatsAppSender(
            old.phone,
            old.channel_name,
            old.source_name,
            renamed_to=channel_name(),
            renamed_on=_RENAME_FROM + timedelta(days=offset),
        )
    return tuple(senders)
