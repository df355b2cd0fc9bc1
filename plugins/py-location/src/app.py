"""Location-based discount in Python: a percentage off by country or postal-code prefix.

Same behaviour and configuration as the Rust ``location-based`` policy (the parity test
runs the same cases through both). The address is the shipping address
(``collected_information.shipping_details``), the billing address the customer entered
(``customer_details.address``), or the first of the two, as ``address`` says. The
longest matching ``postal.<CC>.<prefix>`` rule wins over ``country.<CC>``. No address
yet, or no rule for it: the session's discounts are cleared.

Configuration (strings):
    address               ``shipping``, ``billing`` or ``shipping_then_billing`` (default)
    country.<CC>          percent off in that two-letter country, such as ``country.FR = "10"``
    postal.<CC>.<prefix>  percent off for postal codes starting with ``prefix`` there
    name                  coupon name, default ``Regional discount`` (at most 40 characters)
A bad value is a deployment error: an ``error`` log naming the key and a ``reject``.

Types: records are dataclasses with snake_case fields, an absent option is ``None``,
s64 is ``int``, a variant case is a class such as ``types.Decision_Apply(value)``.
"""

import re
from typing import List, Optional, Tuple

import wit_world
from wit_world.imports import host, types

DEFAULT_NAME = "Regional discount"
UNAVAILABLE = "This discount is unavailable right now"
# Compiled when the module is, so when the component is built, not on a call.
PERCENT = re.compile(r"(\d*)(?:\.(\d*))?")


class ConfigError(Exception):
    """A configuration value the policy cannot use; names the key."""

    def __init__(self, key: str, value: str, reason: str):
        super().__init__(f"invalid value {value!r} for `{key}`: {reason}")
        self.key = key


def log(level: host.LogLevel, message: str, fields: List[Tuple[str, str]]) -> None:
    host.log(level, message, fields)


def config_percent(key: str) -> Optional[float]:
    """A percentage with the SDK's rules (``10``, ``12.5``, ``7.25%``): 0 < p <= 100."""
    raw = host.config(key)
    if raw is None:
        return None
    text = raw.strip()
    if text.endswith("%"):
        text = text[:-1].rstrip()
    match = PERCENT.fullmatch(text)
    if match is None or (match.group(1) == "" and not match.group(2)):
        raise ConfigError(key, raw, "not a decimal number such as 10 or 12.5")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > 4:
        raise ConfigError(key, raw, "more than 4 decimals")
    if len(whole.lstrip("0")) > 9:
        raise ConfigError(key, raw, "too large")
    value = (int(whole or "0") * 10_000 + int((frac + "0000")[:4])) / 10_000
    if not 0 < value <= 100:
        raise ConfigError(key, raw, "must be greater than 0 and at most 100")
    return value


def non_empty(text: Optional[str]) -> Optional[str]:
    return text.strip() or None if text is not None else None


def normalize_postal(postal: str) -> str:
    return "".join(c.upper() for c in postal if not c.isspace() and c != "-")


def location(session: types.CheckoutSession, source: str) -> Optional[Tuple[str, str, str]]:
    """(country, postal code, which address) of the address to go by."""

    def of(address: Optional[types.Address], name: str) -> Optional[Tuple[str, str, str]]:
        country = non_empty(address.country) if address is not None else None
        if country is None:
            return None
        return country, non_empty(address.postal_code) or "", name

    shipping = of(session.shipping_details.address if session.shipping_details else None, "shipping")
    billing = of(session.customer_details.address if session.customer_details else None, "billing")
    found = {"shipping": shipping, "billing": billing}.get(source, shipping or billing)
    if found is None:
        return None
    country, postal, name = found
    return country.strip().upper(), normalize_postal(postal), name


def rate(country: str, postal: str) -> Optional[Tuple[str, float]]:
    """The rule for this place: the longest matching postal prefix, else the country."""
    prefix = f"postal.{country}."
    best: Optional[Tuple[int, str]] = None
    for key, _ in host.config_entries():
        if key.startswith(prefix):
            p = normalize_postal(key[len(prefix):])
            if p and postal.startswith(p) and (best is None or len(p) > best[0]):
                best = (len(p), key)
    key = best[1] if best else f"country.{country}"
    percent = config_percent(key)
    return None if percent is None else (key, percent)


def coupon_name(name: str) -> Optional[str]:
    return name.strip()[:40] or None


class WitWorld(wit_world.WitWorld):
    def evaluate(self, session: types.CheckoutSession, request: types.PolicyRequest) -> types.Decision:
        try:
            source = (host.config("address") or "shipping_then_billing").strip()
            if source not in ("shipping", "billing", "shipping_then_billing"):
                raise ConfigError("address", source, "must be shipping, billing or shipping_then_billing")
            place = location(session, source)
            if place is None:
                log(host.LogLevel.INFO, "no address yet; clearing discounts", [])
                return types.Decision_Clear()
            country, postal, which = place
            found = rate(country, postal)
        except ConfigError as e:
            log(host.LogLevel.ERROR, "invalid location-based configuration", [("key", e.key), ("error", str(e))])
            return types.Decision_Reject(UNAVAILABLE)
        if found is None:
            log(host.LogLevel.INFO, "no discount for this location; clearing discounts",
                [("country", country), ("address", which)])
            return types.Decision_Clear()
        key, percent = found
        log(host.LogLevel.INFO, "applying location discount", [("country", country), ("address", which), ("rule", key)])
        return types.Decision_Apply(
            types.Discount_CouponData(
                types.CouponData(
                    name=coupon_name(configured_name if (configured_name := host.config("name")) is not None else DEFAULT_NAME),
                    amount_off=None,
                    currency=None,
                    percent_off=min(percent, 100.0),
                    duration=None,
                    metadata=[("region", country), ("region_rule", key)],
                )
            )
        )
