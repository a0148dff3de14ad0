"""Settings that shape the asset graph itself, read once when the code location loads.

Which apps exist and where partitions start decide which assets and partitions Dagster
shows, so they cannot wait for run time. Everything else (URLs, tokens, page size, timeouts)
is resource config, resolved at run time through `EnvVar`. Every variable is listed in the
README's settings table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from cinnox.simulator import DEFAULT_APPS

DEFAULT_PARTITIONS_START = "2025-01-01"
DEFAULT_REFRESH_DAYS = 7
DEFAULT_REFRESH_CRON = "0 * * * *"  # hourly: receipts keep arriving through the day
# The settle sensor stops re-reading a day this old even if campaigns on it never settled
# (a campaign stuck "pending" at CINNOX would otherwise cost requests forever). 30 days because
# the warehouse counts complete counters first seen that late as settled at once
# (CINNOX_SETTLE_FINAL_DAYS), and the simulator's slowest campaigns settle after 10 days.
DEFAULT_SETTLE_MAX_AGE_DAYS = 30
DEFAULT_SETTLE_SENSOR_SECONDS = 3600  # as often as the refresh schedule
# Above this share of a window's records rejected, the run fails instead of loading the rest:
# that many bad records means CINNOX changed its format, not that a few records are odd.
DEFAULT_MAX_REJECT_SHARE = 0.05
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class SettingsError(ValueError):
    """A setting in the environment is missing or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class AppSettings:
    """One CINNOX app the pipeline reads, and where its App Token comes from."""

    app_id: str

    @property
    def slug(self) -> str:
        """The app id as Dagster names allow it (asset keys, pools): lowercase, `_` for the rest."""
        return re.sub(r"[^a-z0-9_]", "_", self.app_id.lower())

    @property
    def token_env_var(self) -> str:
        """CINNOX_TOKEN_<APP ID upper-cased, anything not a letter or digit as _>."""
        return "CINNOX_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", self.app_id.upper())


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    apps: tuple[AppSettings, ...]
    partitions_start: date
    refresh_days: int
    refresh_cron: str
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE
    settle_max_age_days: int = DEFAULT_SETTLE_MAX_AGE_DAYS
    settle_sensor_seconds: int = DEFAULT_SETTLE_SENSOR_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PipelineSettings:
        if "CINNOX_APP_IDS" in environ and not environ["CINNOX_APP_IDS"].replace(",", "").strip():
            # Set but empty is a mistake (an unset secret, a typo in a manifest), not a wish for
            # the simulator's demo apps.
            raise SettingsError(
                "CINNOX_APP_IDS is set but names no app: list the CINNOX App IDs, comma-separated, "
                "or unset it to use the simulator's apps"
            )
        raw_ids = environ.get("CINNOX_APP_IDS", "").strip()
        # With nothing configured, the simulator's apps: `make run` and `make dev` start it.
        ids = [part.strip() for part in raw_ids.split(",") if part.strip()] if raw_ids else list(DEFAULT_APPS)
        for app_id in ids:
            if not _APP_ID.fullmatch(app_id):
                raise SettingsError(f"CINNOX_APP_IDS: {app_id!r} is not a valid app id (letters, digits, _ . : -)")
        apps = tuple(AppSettings(app_id) for app_id in ids)
        seen: dict[str, str] = {}
        for app in apps:
            for name in (app.slug, app.token_env_var):
                if name in seen:
                    raise SettingsError(f"CINNOX_APP_IDS: {seen[name]!r} and {app.app_id!r} would share {name!r}")
                seen[name] = app.app_id
        start_text = environ.get("CINNOX_PARTITIONS_START", DEFAULT_PARTITIONS_START)
        try:
            start = date.fromisoformat(start_text)
        except ValueError:
            raise SettingsError(f"CINNOX_PARTITIONS_START: {start_text!r} is not a YYYY-MM-DD date") from None
        refresh_days = _whole(environ, "CINNOX_REFRESH_DAYS", DEFAULT_REFRESH_DAYS, "days")
        max_age = _whole(environ, "CINNOX_SETTLE_MAX_AGE_DAYS", DEFAULT_SETTLE_MAX_AGE_DAYS, "days")
        sensor_seconds = _whole(environ, "CINNOX_SETTLE_SENSOR_SECONDS", DEFAULT_SETTLE_SENSOR_SECONDS, "seconds")
        share_text = environ.get("CINNOX_MAX_REJECT_SHARE", str(DEFAULT_MAX_REJECT_SHARE)).strip()
        try:
            share = float(share_text)
        except ValueError:
            share = -1.0
        if not 0.0 <= share <= 1.0:
            raise SettingsError(f"CINNOX_MAX_REJECT_SHARE: {share_text!r} is not a fraction between 0 and 1")
        return cls(
            apps=apps,
            max_reject_share=share,
            partitions_start=start,
            refresh_days=refresh_days,
            refresh_cron=environ.get("CINNOX_REFRESH_CRON", DEFAULT_REFRESH_CRON),
            settle_max_age_days=max_age,
            settle_sensor_seconds=sensor_seconds,
        )


def _whole(environ: Mapping[str, str], name: str, default: int, unit: str) -> int:
    return whole_number(name, environ.get(name, str(default)), minimum=1, unit=unit)


def whole_number(name: str, text: str, *, minimum: int, unit: str = "") -> int:
    """The whole-number setting `name` whose value is `text`, at least `minimum`; a
    SettingsError naming it otherwise ("-1" included: a negative rate would silently mean
    "no limit")."""
    value = text.strip()
    if not value.isdigit() or int(value) < minimum:
        of = f" of {unit}" if unit else ""
        raise SettingsError(f"{name}: {text.strip()!r} is not a whole number{of} >= {minimum}")
    return int(value)
