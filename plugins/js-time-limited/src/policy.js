// Time-limited offer: a percentage off while the offer runs, nothing otherwise.
//
// The offer is active from `starts_at` (inclusive) to `ends_at` (exclusive), Unix seconds,
// compared with the host's clock (`now()`), never the guest's. While it runs, the policy
// applies a one-off coupon taking `percent` % off; before or after, it clears the
// session's discounts, so an expired offer disappears from the session.
//
// Configuration (strings):
//   starts_at  Unix seconds, required      ends_at  Unix seconds, required, > starts_at
//   percent    default "15" (0 < p <= 100) name     default "Limited-time offer"
// A missing or invalid value is a deployment error: an `error` log naming the key and a
// `reject` with a neutral message, never a silent fallback.
import { log, config, now } from 'stripe-discount:policy/host@0.1.0';

const UNAVAILABLE = 'This offer is unavailable right now';

class ConfigError extends Error {
  constructor(key, value, reason) {
    super(`${key}=${JSON.stringify(value)}: ${reason}`);
    this.key = key;
  }
}

// Reads an integer number of seconds; `undefined` when absent and not required.
function seconds(key) {
  const value = config(key);
  if (value === undefined) throw new ConfigError(key, '', 'is required');
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(key, value, 'must be Unix seconds');
  return BigInt(value.trim());
}

function settings() {
  const startsAt = seconds('starts_at');
  const endsAt = seconds('ends_at');
  if (endsAt <= startsAt) throw new ConfigError('ends_at', String(endsAt), 'must be after starts_at');
  const rawPercent = config('percent') ?? '15';
  const percent = Number(rawPercent.trim().replace(/%$/, ''));
  if (!/^\s*\d+(\.\d+)?%?\s*$/.test(rawPercent) || !(percent > 0 && percent <= 100)) {
    throw new ConfigError('percent', rawPercent, 'must be a number in (0, 100]');
  }
  const name = [...(config('name') ?? 'Limited-time offer')].slice(0, 40).join('');
  return { startsAt, endsAt, percent, name };
}

// `evaluate(session, request) -> decision`: s64 values are BigInt, options are
// `undefined` when absent, variants are `{ tag, val }`.
export function evaluate(session, _request) {
  let s;
  try {
    s = settings();
  } catch (e) {
    log('error', 'invalid time-limited configuration', [['key', e.key ?? ''], ['error', String(e.message)]]);
    return { tag: 'reject', val: UNAVAILABLE };
  }
  const t = now();
  const fields = [['now', String(t)], ['starts_at', String(s.startsAt)], ['ends_at', String(s.endsAt)]];
  if (t < s.startsAt || t >= s.endsAt) {
    log('info', t < s.startsAt ? 'offer not started; clearing discounts' : 'offer over; clearing discounts', fields);
    return { tag: 'clear' };
  }
  log('info', 'offer running; applying discount', [...fields, ['percent', String(s.percent)]]);
  return {
    tag: 'apply',
    val: {
      tag: 'coupon-data',
      val: {
        name: s.name,
        amountOff: undefined,
        currency: undefined,
        percentOff: s.percent,
        duration: 'once',
        metadata: [['policy', 'js-time-limited'], ['ends_at', String(s.endsAt)]],
      },
    },
  };
}
