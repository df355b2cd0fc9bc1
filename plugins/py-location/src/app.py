"""Location-based discount: a percentage off by the customer's country or postal code.

The country comes from the shipping address (``collected_information.shipping_details``)
and, when there is none, from the billing address the customer entered
(``customer_details.address``). A ``postal.<CC>.<prefix>`` rule beats a ``country.<CC>``
rule, and a longer prefix beats a shorter one. No rule for the address: the session's
discounts are cleared. No address at all: the session is left as it is (``keep``).

Configuration (strings):
    country.<CC>           percent off for that two-letter country, such as ``country.FR = "10"``
    postal.<CC>.<prefix>   percent off for postal codes starting with ``prefix`` in that country
    name                   coupon name, default ``Regional discount``
An invalid percentage is a deployment error: an ``error`` log naming the key, and a
``reject`` with a neutral message.
"""

from typing import List, Optional, Tuple

import wit_world
from wit_world.imports import host, types

UNAVAILABLE = "This discount is unavailable right now"
DEFAULT_NAME = "Regional discount"


class ConfigError(Exception):
    """A configuration value the policy cannot use; names the key."""

    def __init__(self, key: str, value: str, reason: str):
        super().__init__(f"{key}={value!r}: {reason}")
        self.key = key


def log(level: host.LogLevel, message: str, **fields: str) -> None:
    host.log(level, message, [(k, str(v)) for k, v in fields.items()])


def percent(key: str, value: str) -> float:
    try:
        p = float(value.strip().rstrip("%"))
    except ValueError:
        raise ConfigError(key, value, "must be a number") from None
    if not 0 < p <= 100:
        raise ConfigError(key, value, "must be in (0, 100]")
    return p


def address(session: types.CheckoutSession) -> Tuple[Optional[types.Address], str]:
    """The address to go by, and where it came from."""
    shipping = session.shipping_details
    if shipping is not None and shipping.address is not None and shipping.address.country:
        return shipping.address, "shipping"
    details = session.customer_details
    if details is not None and details.address is not None and details.address.country:
        return details.address, "billing"
    return None, "none"


def rule(entries: List[Tuple[str, str]], country: str, postal: str) -> Optional[Tuple[str, float]]:
    """The best matching rule: the longest postal prefix, else the country."""
    best: Optional[Tuple[int, str, float]] = None
    normalized = postal.replace(" ", "").upper()
    for key, value in entries:
        parts = key.split(".", 2)
        if parts[0] == "country" and len(parts) == 2 and parts[1].upper() == country:
            rank = 0
        elif parts[0] == "postal" and len(parts) == 3 and parts[1].upper() == country:
            prefix = parts[2].replace(" ", "").upper()
            if not prefix or not normalized.startswith(prefix):
                continue
            rank = len(prefix)
        else:
            continue
        p = percent(key, value)
        if best is None or rank > best[0]:
            best = (rank, key, p)
    return None if best is None else (best[1], best[2])


class WitWorld(wit_world.WitWorld):
    def evaluate(self, session: types.CheckoutSession, request: types.PolicyRequest) -> types.Decision:
        addr, source = address(session)
        if addr is None:
            log(host.LogLevel.WARN, "session has no address with a country; leaving it as it is", session=session.id)
            return types.Decision_Keep()
        country = (addr.country or "").upper()
        try:
            entries = host.config_entries()
            found = rule(entries, country, addr.postal_code or "")
        except ConfigError as e:
            log(host.LogLevel.ERROR, "invalid location-based configuration", key=e.key, error=str(e))
            return types.Decision_Reject(UNAVAILABLE)
        if found is None:
            log(host.LogLevel.INFO, "no discount for this location; clearing discounts", country=country, source=source)
            return types.Decision_Clear()
        key, p = found
        name = (host.config("name") or DEFAULT_NAME)[:40]
        log(host.LogLevel.INFO, "location matched; applying discount", rule=key, percent=f"{p:g}", source=source)
        return types.Decision_Apply(
            types.Discount_CouponData(
                types.CouponData(
                    name=name,
                    amount_off=None,
                    currency=None,
                    percent_off=p,
                    duration=types.Duration.ONCE,
                    metadata=[("policy", "py-location"), ("rule", key)],
                )
            )
        )
