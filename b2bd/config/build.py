"""Schema-valid documents -> model objects (pure).

Only called on documents that passed their JSON Schema, so shapes are trusted here; defaults
(b2bd.yaml ``defaults``, the settings' timezone) are applied here and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from b2bd.config.model import (
    DEFAULT_HISTORY_DAYS,
    DEFAULT_TIMEZONE,
    Base,
    BaseSelector,
    Cohort,
    CredentialSource,
    DataSpec,
    Endpoint,
    Policy,
    Settings,
    Task,
)
from b2bd.records.ncy import normalise_ncy
from b2bd.schedule import Monthly, Once, Rule, Schedule, Weekly

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DEFAULT_STATE_DIR = Path("/var/lib/b2bd")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LOOPBACK = "127.0.0.1"
_PORT = re.compile(r"[0-9]{1,5}")


def parse_duration(text: str) -> dt.timedelta:
    """``30s``, ``15m``, ``12h``, ``1d`` or combinations such as ``1h30m``."""
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return dt.timedelta(seconds=seconds)


def parse_listen(value: object) -> tuple[str, int] | None:
    """b2bd.yaml ``metrics: {listen: ...}``: ``HOST:PORT`` where HOST is an IPv4 address,
    ``[IPv6]`` or ``localhost``, or a port alone (then the loopback 127.0.0.1). None when it is
    none of these: host names are refused (resolved at start they could name an outside
    address), and so is ``:PORT``, which other tools read as every interface."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (LOOPBACK, value) if 0 < value < 65536 else None
    if not isinstance(value, str):
        return None
    host, port = LOOPBACK, value
    if not _PORT.fullmatch(value):
        head, colon, port = value.rpartition(":")
        if not colon or not head:
            return None
        try:
            if head.startswith("[") and head.endswith("]"):
                host = str(ipaddress.IPv6Address(head[1:-1]))
            elif head == "localhost":
                host = LOOPBACK
            else:
                host = str(ipaddress.IPv4Address(head))
        except ValueError:
            return None
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"7.166"`` -> (7, 166): versions compare by component, so 7.2 < 7.166."""
    return tuple(int(part) for part in text.split("."))


Place = Callable[[str], Path]
"""Where a path written in b2bd.yaml or bases.yaml points (the loader's
:func:`~b2bd.config.load.config_path`: relative ones are resolved against the config dir)."""


def build_policy(doc: dict[str, Any] | None, base: Policy) -> Policy:
    if not doc:
        return base
    durations = {
        k: parse_duration(v)
        for k, v in doc.items()
        if k in ("retry_backoff", "timeout", "starting_deadline", "jitter")
    }
    plain = {k: v for k, v in doc.items() if k in ("retries", "catch_up", "overlap")}
    return Policy(**{**base.__dict__, **plain, **durations})


def build_settings(
    doc: dict[str, Any], place: Place, default_state_dir: Path = DEFAULT_STATE_DIR
) -> Settings:
    """``place`` says where each path written in the file points; ``default_state_dir`` is the
    state dir when b2bd.yaml names none (the loader passes systemd's ``$STATE_DIRECTORY``)."""
    month, day = (int(x) for x in doc.get("academic_year_start", "08-01").split("-"))
    state = doc.get("state_dir")
    state_dir = place(state) if state else default_state_dir
    store = place(doc["la_store"]["path"])
    outbound = doc["la_store"].get("outbound")
    control = doc.get("control_socket")
    return Settings(
        la_code=doc["la"]["code"],
        la_name=doc["la"]["name"],
        one_version=doc["one_version"],
        timezone=ZoneInfo(doc["timezone"]) if "timezone" in doc else DEFAULT_TIMEZONE,
        academic_year_start=(month, day),
        state_dir=state_dir,
        la_store=Endpoint(type="directory", path=store),
        concurrency=int(doc.get("concurrency", 8)),
        defaults=build_policy(doc.get("defaults"), Policy()),
        la_outbound=place(outbound) if outbound else store / "outbound",
        control_socket=place(control) if control else None,
        metrics_listen=parse_listen((doc.get("metrics") or {}).get("listen")),
        history_days=int((doc.get("journal") or {}).get("history_days", DEFAULT_HISTORY_DAYS)),
        credentials={
            name: CredentialSource(
                path=place(ref["path"]) if "path" in ref else None, env=ref.get("env")
            )
            for name, ref in doc.get("credentials", {}).items()
        },
        ignore=frozenset(doc.get("ignore", ())),
    )


def build_base(doc: dict[str, Any], place: Place) -> Base:
    ep = doc["endpoint"]
    endpoint = Endpoint(
        type=ep["type"],
        path=place(ep["path"]) if "path" in ep else None,
        school_id=ep.get("school_id"),
        token_credential=(ep.get("token") or {}).get("credential"),
        url=ep.get("url"),
        ca_bundle=place(ep["ca_bundle"]) if "ca_bundle" in ep else None,
        tls_verify=ep.get("tls_verify", True),
    )
    return Base(
        id=doc["id"],
        name=doc["name"],
        phase=doc.get("phase", "secondary"),
        mis=doc["mis"],
        sims_version=doc["sims_version"],
        b2b_phase=doc["b2b_phase"],
        services_manager=doc["services_manager"],
        lockdown=doc.get("lockdown", False),
        endpoint=endpoint,
        tags=frozenset(doc.get("tags", ())),
        cross_border=doc.get("cross_border", False),
        enabled=doc.get("enabled", True),
    )


def _times(items: list[str]) -> tuple[dt.time, ...]:
    return tuple(sorted({dt.time.fromisoformat(t) for t in items}))


def build_schedule(doc: dict[str, Any], default_zone: ZoneInfo) -> Schedule:
    zone = ZoneInfo(doc["timezone"]) if "timezone" in doc else default_zone
    expires = dt.date.fromisoformat(doc["expires"]) if "expires" in doc else None
    starts = dt.date.fromisoformat(doc["starts"]) if "starts" in doc else None
    rule: Rule
    if "weekly" in doc:
        w = doc["weekly"]
        rule = Weekly(
            days=frozenset(WEEKDAYS.index(d) for d in w["days"]), times=_times(w["times"])
        )
    elif "monthly" in doc:
        m = doc["monthly"]
        months: set[int] = set()
        for item in m.get("months", ["all"]):
            if item == "all":
                months.update(range(1, 13))
            else:
                months.add(item if isinstance(item, int) else MONTHS.index(item) + 1)
        rule = Monthly(days=tuple(m["days"]), months=frozenset(months), times=_times(m["times"]))
    else:
        rule = Once(at=dt.datetime.strptime(doc["once"], "%Y-%m-%dT%H:%M"))
    return Schedule(rule=rule, timezone=zone, expires=expires, starts=starts)


def build_task(doc: dict[str, Any], file: str, settings_zone: ZoneInfo, defaults: Policy) -> Task:
    b = doc["bases"]
    d = doc["data"]
    c = doc.get("cohort", {"group": "ncy"})
    ncy = c.get("ncy", "all")
    return Task(
        id=doc["id"],
        file=file,
        description=doc.get("description", ""),
        enabled=doc.get("enabled", True),
        direction=doc["direction"],
        bases=BaseSelector(
            ids=tuple(b.get("ids", ())), tags=tuple(b.get("tags", ())), all=b.get("all", False)
        ),
        data=DataSpec(type=d["type"], attendance=d.get("attendance"), months=d.get("months")),
        cohort=Cohort(
            group=c["group"],
            ncy=None if ncy == "all" else frozenset(cast(str, normalise_ncy(v)) for v in ncy),
        ),
        schedule=build_schedule(doc["schedule"], settings_zone),
        policy=build_policy(doc.get("policy"), defaults),
    )
