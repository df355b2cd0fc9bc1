// Cart-value promotion in C: 10 % off carts over 100.00, at most 20.00 off.
//
// Same behaviour and configuration as the Rust `cart-threshold` policy (the parity test
// runs the same cases through both): when the session's subtotal (`amount_subtotal`,
// before discounts, so the decision never oscillates) is strictly greater than
// `threshold`, apply a one-off coupon of `percent` % of the subtotal, rounded half up,
// capped at `cap`, in the session's currency; otherwise clear the discounts.
//
// Configuration (strings, amounts in the currency's smallest unit):
//   threshold  default "10000"   percent  default "10" (0 < p <= 100, up to 4 decimals)
//   cap        default "2000"    name     default "Cart discount" (at most 40 characters)
// An invalid value is a deployment error: an `error` log naming the key, and a `reject`.
//
// No stdio, no WASI: the host interface is the only way out (see discount_policy.h,
// written by `policy-runner bindgen-c`).
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discount_policy.h"

typedef discount_policy_string_t str_t;
typedef stripe_discount_policy_types_decision_t decision_t;

static const char UNAVAILABLE[] = "This discount is unavailable right now";

// A heap copy of `len` bytes: the host frees every string of the result (post-return).
static str_t dup_bytes(const uint8_t *bytes, size_t len) {
    str_t s = {malloc(len ? len : 1), len};
    if (len) memcpy(s.ptr, bytes, len);
    return s;
}

static str_t dup_cstr(const char *text) { return dup_bytes((const uint8_t *)text, strlen(text)); }

// Writes `value` in decimal into `buf` (at least 21 bytes); returns the length.
static size_t fmt_i64(int64_t value, char *buf) {
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t v = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    if (value < 0) buf[len++] = '-';
    while (n) buf[len++] = tmp[--n];
    buf[len] = 0;
    return len;
}

// One structured log record through the host; `fields` holds `count` key/value pairs.
static void log_record(stripe_discount_policy_host_log_level_t level, const char *message,
                       const char *const *fields, size_t count) {
    discount_policy_tuple2_string_string_t pairs[4];
    if (count > 4) count = 4;
    for (size_t i = 0; i < count; i++) {
        discount_policy_string_set(&pairs[i].f0, fields[2 * i]);
        discount_policy_string_set(&pairs[i].f1, fields[2 * i + 1]);
    }
    str_t msg;
    discount_policy_string_set(&msg, message);
    discount_policy_list_tuple2_string_string_t list = {pairs, count};
    stripe_discount_policy_host_log(level, &msg, &list);
}

// A configuration value as a NUL-terminated heap string, or NULL when not set.
static char *config(const char *key) {
    str_t k, value;
    discount_policy_string_set(&k, key);
    if (!stripe_discount_policy_host_config(&k, &value)) return NULL;
    char *text = malloc(value.len + 1);
    memcpy(text, value.ptr, value.len);
    text[value.len] = 0;
    discount_policy_string_free(&value);
    return text;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Trims `text` in place; returns its start.
static char *trim(char *text) {
    while (is_space(*text)) text++;
    size_t n = strlen(text);
    while (n && is_space(text[n - 1])) text[--n] = 0;
    return text;
}

// Parses an integer like Rust's `i64::from_str`: optional sign, digits only.
static bool parse_i64(const char *text, int64_t *out) {
    bool negative = *text == '-';
    if (*text == '-' || *text == '+') text++;
    if (!*text) return false;
    uint64_t v = 0;
    for (; *text; text++) {
        if (*text < '0' || *text > '9') return false;
        uint64_t d = (uint64_t)(*text - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX + (negative ? 1u : 0u)) return false;
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

// Parses `10`, `12.5` or `7.25%` into ten-thousandths of a percent (10 % -> 100000),
// with the SDK's rules: digits and one dot, at most 4 decimals.
static bool parse_percent(char *text, int64_t *out) {
    size_t n = strlen(text);
    if (n && text[n - 1] == '%') text[n - 1] = 0;
    text = trim(text);
    int64_t whole = 0, frac = 0;
    int frac_digits = 0, int_digits = 0;
    bool dot = false;
    for (const char *p = text; *p; p++) {
        if (*p == '.' && !dot) { dot = true; continue; }
        if (*p < '0' || *p > '9') return false;
        if (dot) {
            if (++frac_digits > 4) return false;
            frac = frac * 10 + (*p - '0');
        } else {
            if (whole == 0 && *p == '0') continue;
            if (++int_digits > 9) return false;
            whole = whole * 10 + (*p - '0');
        }
    }
    if (!int_digits && !frac_digits && !strchr(text, '0')) return false;
    for (; frac_digits < 4; frac_digits++) frac *= 10;
    *out = whole * 10000 + frac;
    return true;
}

// Logs the configuration error and returns a `reject` decision.
static void config_error(decision_t *ret, const char *key, const char *error) {
    const char *fields[] = {"key", key, "error", error};
    log_record(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_ERROR, "invalid cart-threshold configuration",
               fields, 2);
    ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_REJECT;
    ret->val.reject = dup_cstr(UNAVAILABLE);
}

// Reads an integer setting; false (after a reject) when it is invalid.
static bool int_setting(decision_t *ret, const char *key, int64_t fallback, int64_t *out) {
    char *raw = config(key);
    *out = fallback;
    if (raw == NULL) return true;
    bool ok = parse_i64(trim(raw), out);
    free(raw);
    if (!ok) config_error(ret, key, "invalid digit found in string");
    return ok;
}

void exports_discount_policy_evaluate(discount_policy_checkout_session_t *session,
                                      discount_policy_policy_request_t *request,
                                      discount_policy_decision_t *ret) {
    int64_t threshold, cap, percent = 100000;
    ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_KEEP;
    if (!int_setting(ret, "threshold", 10000, &threshold)) goto done;
    char *raw_percent = config("percent");
    if (raw_percent != NULL) {
        bool ok = parse_percent(raw_percent, &percent);
        free(raw_percent);
        if (!ok || percent <= 0 || percent > 1000000) {
            config_error(ret, "percent", ok ? "must be greater than 0 and at most 100"
                                            : "not a decimal number such as 10 or 12.5");
            goto done;
        }
    }
    if (!int_setting(ret, "cap", 2000, &cap)) goto done;
    if (threshold < 0) { config_error(ret, "threshold", "must not be negative"); goto done; }
    if (cap <= 0) { config_error(ret, "cap", "must be positive"); goto done; }

    // The session's currency and subtotal (or the sum of its line items' subtotals).
    bool has_currency = session->currency.is_some && session->currency.val.len > 0;
    bool has_subtotal = session->amount_subtotal.is_some || session->line_items.len > 0;
    if (!has_currency || !has_subtotal) {
        const char *fields[] = {"session", ""};
        log_record(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_WARN,
                   "session has no currency or subtotal; leaving it as it is", fields, 0);
        goto done;
    }
    int64_t subtotal = 0;
    if (session->amount_subtotal.is_some) {
        subtotal = session->amount_subtotal.val;
    } else {
        for (size_t i = 0; i < session->line_items.len; i++) {
            subtotal += session->line_items.ptr[i].amount_subtotal;
        }
    }
    char subtotal_text[24], amount_text[24];
    fmt_i64(subtotal, subtotal_text);
    if (subtotal <= threshold) {
        fmt_i64(threshold, amount_text);
        const char *fields[] = {"subtotal", subtotal_text, "threshold", amount_text};
        log_record(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_INFO,
                   "cart under threshold; clearing discounts", fields, 2);
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_CLEAR;
        goto done;
    }
    // percent is in ten-thousandths: amount * percent / 1_000_000, rounded half up.
    __int128 product = (__int128)subtotal * percent;
    int64_t discount = (int64_t)((product + 500000) / 1000000);
    if (discount > cap) discount = cap;
    if (discount <= 0) {
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_CLEAR;
        goto done;
    }
    fmt_i64(discount, amount_text);
    const char *fields[] = {"subtotal", subtotal_text, "discount", amount_text};
    log_record(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_INFO, "cart over threshold; applying discount",
               fields, 2);

    // Lowercase currency, as Stripe writes it.
    str_t currency = dup_bytes(session->currency.val.ptr, session->currency.val.len);
    for (size_t i = 0; i < currency.len; i++) {
        if (currency.ptr[i] >= 'A' && currency.ptr[i] <= 'Z') currency.ptr[i] += 'a' - 'A';
    }
    char *name = config("name");
    char *trimmed = name ? trim(name) : "Cart discount";
    stripe_discount_policy_types_coupon_data_t data;
    memset(&data, 0, sizeof data);
    if (*trimmed) {
        data.name.is_some = true;
        // At most 40 characters (UTF-8 lead bytes counted).
        size_t bytes = 0, chars = 0;
        for (; trimmed[bytes]; bytes++) {
            if (((unsigned char)trimmed[bytes] & 0xC0) != 0x80 && ++chars > 40) break;
        }
        data.name.val = dup_bytes((const uint8_t *)trimmed, bytes);
    }
    free(name);
    data.amount_off.is_some = true;
    data.amount_off.val = discount;
    data.currency.is_some = true;
    data.currency.val = currency;
    ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_APPLY;
    ret->val.apply.tag = STRIPE_DISCOUNT_POLICY_TYPES_DISCOUNT_COUPON_DATA;
    ret->val.apply.val.coupon_data = data;
done:
    // Arguments belong to the callee.
    discount_policy_checkout_session_free(session);
    discount_policy_policy_request_free(request);
}
