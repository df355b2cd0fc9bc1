// Time-limited offer in JavaScript: a discount active between `starts_at` and `ends_at`.
//
// Same behaviour and configuration as the Rust `time-limited` policy (the parity test runs
// the same cases through both). The time is the host's (`now()`), which the runner fixes
// for reproducible tests. Inside the window the policy applies a one-off coupon
// (`percent` or `amount_off`); outside it, not started yet or over, it clears the
// session's discounts, so an offer that ended during checkout is removed on the next call.
//
// Configuration (strings):
//   starts_at     start, inclusive: RFC 3339 (2026-11-27T00:00:00Z) or Unix seconds
//   ends_at       end, exclusive, after starts_at
//   percent       percentage off (0 < p <= 100, up to 4 decimals); or
//   amount_off    amount off in the session currency's smallest unit
//   min_subtotal  smallest subtotal that gets the offer (default 0)
//   name          coupon name (default "Limited-time offer", at most 40 characters)
// A bad value is a deployment error: an `error` log naming the key and a `reject`.
//
// Types: s64 values are BigInt, an absent option is `undefined`, a variant is
// `{ tag, val }` with kebab-case tags, an enum is its kebab-case name, record fields are
// camelCase.
import { log, config, now } from 'stripe-discount:policy/host@0.1.0';

const DEFAULT_NAME = 'Limited-time offer';
const UNAVAILABLE = 'This discount is unavailable right now';
const EXPECTED = 'expected Unix seconds or RFC 3339 like 2026-11-27T00:00:00Z';
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

class ConfigError extends Error {
  constructor(key, value, reason) {
    super(`invalid value ${JSON.stringify(value)} for \`${key}\`: ${reason}`);
    this.key = key;
  }
}

// An i64 written in decimal (optional sign), as Rust's `str::parse::<i64>` reads it.
function parseI64(text) {
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const v = BigInt(text);
  return v < I64_MIN || v > I64_MAX ? undefined : v;
}

// Unix seconds, or RFC 3339 (`2026-11-27T00:00:00Z`, `...T01:00:00+01:00`), as BigInt.
function parseTime(raw) {
  const t = raw.trim();
  const secs = parseI64(t);
  if (secs !== undefined) return secs;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d*)?(Z|z|[+-]\d{2}:\d{2})$/.exec(t);
  if (!m) throw EXPECTED;
  const [y, mo, d, hh, mm, ss] = m.slice(1, 7).map(Number);
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (mo < 1 || mo > 12 || d < 1 || d > monthDays[mo - 1] || hh > 23 || mm > 59 || ss > 59) {
    throw 'no such date or time';
  }
  const local = BigInt(Date.UTC(y, mo - 1, d, hh, mm, ss) / 1000);
  const zone = m[7];
  if (zone === 'Z' || zone === 'z') return local;
  const offset = BigInt(Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  return zone[0] === '+' ? local - offset : local + offset;
}

// A percentage with the SDK's rules: `10`, `12.5`, `7.25%`; at most 4 decimals.
function parsePercent(raw) {
  let t = raw.trim();
  if (t.endsWith('%')) t = t.slice(0, -1).trimEnd();
  const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[1] === '' && (m[2] ?? '') === '')) return [undefined, 'not a decimal number such as 10 or 12.5'];
  if ((m[2] ?? '').length > 4) return [undefined, 'more than 4 decimals'];
  if (m[1].replace(/^0+/, '').length > 9) return [undefined, 'too large'];
  return [Number(`${m[1] || '0'}.${m[2] || '0'}`), undefined];
}

// The settings, parsed on the first call. They are the same for every call of a version, so
// with `warm_up` the parsed settings are in the snapshot every instance starts from.
let parsed;

function settings() {
  parsed ??= parseSettings();
  return parsed;
}

function parseSettings() {
  const time = (key) => {
    const raw = config(key);
    if (raw === undefined) throw new ConfigError(key, '', 'is required');
    try {
      return parseTime(raw);
    } catch (reason) {
      throw new ConfigError(key, raw, String(reason));
    }
  };
  const startsAt = time('starts_at');
  const endsAt = time('ends_at');
  if (endsAt <= startsAt) throw new ConfigError('ends_at', config('ends_at') ?? '', 'must be after starts_at');
  let percent;
  const rawPercent = config('percent');
  if (rawPercent !== undefined) {
    const [p, reason] = parsePercent(rawPercent);
    if (reason) throw new ConfigError('percent', rawPercent, reason);
    if (!(p > 0 && p <= 100)) throw new ConfigError('percent', rawPercent, 'must be greater than 0 and at most 100');
    percent = p;
  }
  const integer = (key, fallback) => {
    const raw = config(key);
    if (raw === undefined) return fallback;
    const v = parseI64(raw.trim());
    if (v === undefined) throw new ConfigError(key, raw, 'invalid digit found in string');
    return v;
  };
  const amount = integer('amount_off', undefined);
  let offer;
  if (percent !== undefined && amount === undefined) offer = { percent };
  else if (percent === undefined && amount !== undefined) {
    if (amount <= 0n) throw new ConfigError('amount_off', String(amount), 'must be positive');
    offer = { amount };
  } else if (percent !== undefined) {
    throw new ConfigError('amount_off', config('amount_off') ?? '', 'set either percent or amount_off, not both');
  } else {
    throw new ConfigError('percent', '', 'set percent or amount_off');
  }
  const minSubtotal = integer('min_subtotal', 0n);
  return { startsAt, endsAt, offer, minSubtotal, name: config('name') ?? DEFAULT_NAME };
}

// `amount_subtotal` in the session currency, else the sum of the line items' subtotals.
function subtotal(session) {
  const currency = session.currency?.trim();
  if (!currency) return undefined;
  let amount = session.amountSubtotal;
  if (amount === undefined) {
    if (session.lineItems.length === 0) return undefined;
    amount = session.lineItems.reduce((sum, item) => sum + item.amountSubtotal, 0n);
  }
  return { amount, currency: currency.toLowerCase() };
}

// Coupon name: trimmed, at most 40 characters (code points), absent when empty. A string
// of at most 40 UTF-16 units has at most 40 code points; only a longer one is split into
// code points, which the interpreter does one iterator step at a time.
function couponName(name) {
  let trimmed = name.trim();
  if (trimmed.length > 40) trimmed = [...trimmed].slice(0, 40).join('');
  return trimmed === '' ? undefined : trimmed;
}

function couponData(fields) {
  return {
    tag: 'apply',
    val: {
      tag: 'coupon-data',
      val: { name: undefined, amountOff: undefined, currency: undefined, percentOff: undefined,
        duration: undefined, metadata: [], ...fields },
    },
  };
}

export function evaluate(session, _request) {
  let s;
  try {
    s = settings();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    log('error', 'invalid time-limited configuration', [['key', e.key], ['error', e.message]]);
    return { tag: 'reject', val: UNAVAILABLE };
  }
  const t = now();
  if (t < s.startsAt) {
    log('info', 'offer not started yet; clearing discounts', [['now', String(t)], ['starts_at', String(s.startsAt)]]);
    return { tag: 'clear' };
  }
  if (t >= s.endsAt) {
    log('info', 'offer has ended; clearing discounts', [['now', String(t)], ['ends_at', String(s.endsAt)]]);
    return { tag: 'clear' };
  }
  const sub = subtotal(session);
  if (sub === undefined) {
    log('warn', 'session has no currency or subtotal; leaving it as it is', []);
    return { tag: 'keep' };
  }
  if (sub.amount < s.minSubtotal) {
    log('info', "cart under the offer's minimum; clearing discounts", [['subtotal', String(sub.amount)]]);
    return { tag: 'clear' };
  }
  const metadata = [['offer_ends_at', String(s.endsAt)]];
  let decision;
  if (s.offer.percent !== undefined) {
    decision = couponData({ name: couponName(s.name), percentOff: Math.min(s.offer.percent, 100), metadata });
  } else {
    // Never more than the cart: Stripe refuses an amount_off above the subtotal.
    const amount = s.offer.amount < sub.amount ? s.offer.amount : sub.amount;
    if (amount <= 0n) return { tag: 'clear' };
    decision = couponData({ name: couponName(s.name), amountOff: amount, currency: sub.currency, metadata });
  }
  log('info', 'offer active; applying discount', [['now', String(t)], ['ends_at', String(s.endsAt)]]);
  return decision;
}
