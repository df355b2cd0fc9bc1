"""{{title}}: a percentage off carts of at least ``min_subtotal``.

Configuration (policy.toml, [config]): percent (default "10"), min_subtotal (default
"5000", smallest currency unit), name (default "{{title}}").

WIT types in Python: records are dataclasses with snake_case fields, s64 is ``int``, an
absent option is ``None``, a variant case is a class (``types.Decision_Apply(...)``),
an enum is an ``Enum`` (``host.LogLevel.INFO``).
"""

import wit_world
from wit_world.imports import host, types

UNAVAILABLE = "This discount is unavailable right now"


class WitWorld(wit_world.WitWorld):
    def evaluate(self, session: types.CheckoutSession, request: types.PolicyRequest) -> types.Decision:
        # Configuration errors are deployment errors: log them and refuse politely.
        try:
            percent = float(host.config("percent") or "10")
            min_subtotal = int(host.config("min_subtotal") or "5000")
            if not 0 < percent <= 100:
                raise ValueError("percent must be in (0, 100]")
        except ValueError as e:
            host.log(host.LogLevel.ERROR, "invalid configuration", [("error", str(e))])
            return types.Decision_Reject(UNAVAILABLE)
        # Always the subtotal (before discounts): the total moves when a discount applies.
        subtotal = session.amount_subtotal
        if not session.currency or subtotal is None:
            host.log(host.LogLevel.WARN, "no currency or subtotal; leaving the session as it is", [])
            return types.Decision_Keep()
        if subtotal < min_subtotal:
            host.log(host.LogLevel.INFO, "cart too small; clearing discounts", [("subtotal", str(subtotal))])
            return types.Decision_Clear()
        host.log(host.LogLevel.INFO, "applying discount", [("subtotal", str(subtotal))])
        name = host.config("name")
        return types.Decision_Apply(
            types.Discount_CouponData(
                types.CouponData(
                    name="{{title}}" if name is None else name,
                    amount_off=None,
                    currency=None,
                    percent_off=percent,
                    duration=None,
                    metadata=[],
                )
            )
        )
