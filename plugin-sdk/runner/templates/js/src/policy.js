// {{title}}: a percentage off carts of at least `min_subtotal`.
//
// Configuration (policy.toml, [config]): percent (default "10"), min_subtotal (default
// "5000", smallest currency unit), name (default "{{title}}").
//
// WIT types in JavaScript: records are objects with camelCase fields, s64 is a BigInt,
// an absent option is `undefined`, a variant is `{ tag: 'kebab-name', val }`, an enum is
// its kebab-case name ('info', 'once').
import { log, config } from 'stripe-discount:policy/host@0.1.0';

const UNAVAILABLE = 'This discount is unavailable right now';

export function evaluate(session, _request) {
  // Configuration errors are deployment errors: log them and refuse politely.
  const percent = Number(config('percent') ?? '10');
  const minText = config('min_subtotal') ?? '5000';
  if (!(percent > 0 && percent <= 100) || !/^\d+$/.test(minText.trim())) {
    log('error', 'invalid configuration', [['percent', String(config('percent'))], ['min_subtotal', minText]]);
    return { tag: 'reject', val: UNAVAILABLE };
  }
  // Always the subtotal (before discounts): the total moves when a discount applies.
  const subtotal = session.amountSubtotal;
  if (!session.currency || subtotal === undefined) {
    log('warn', 'no currency or subtotal; leaving the session as it is', []);
    return { tag: 'keep' };
  }
  if (subtotal < BigInt(minText.trim())) {
    log('info', 'cart too small; clearing discounts', [['subtotal', String(subtotal)]]);
    return { tag: 'clear' };
  }
  log('info', 'applying discount', [['subtotal', String(subtotal)]]);
  return {
    tag: 'apply',
    val: {
      tag: 'coupon-data',
      val: {
        name: config('name') ?? '{{title}}',
        amountOff: undefined,
        currency: undefined,
        percentOff: percent,
        duration: undefined,
        metadata: [],
      },
    },
  };
}
