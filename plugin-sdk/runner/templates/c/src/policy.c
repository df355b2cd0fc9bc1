// {{title}}: a percentage off carts of at least `min_subtotal`.
//
// Configuration (policy.toml, [config]): percent (default "10", whole percent here),
// min_subtotal (default "5000", smallest currency unit), name (default "{{title}}").
//
// WIT types in C (discount_policy.h, from `policy-runner bindgen-c`): a string is
// `{ptr, len}` (not NUL-terminated), an option is `{is_some, val}`, a variant is
// `{tag, val}` with STRIPE_DISCOUNT_POLICY_TYPES_* tags. Strings in the result must be
// heap-allocated (`discount_policy_string_dup`): the bindings free them after the call.
// No stdio: there is no WASI; log through the host.
#include <stdlib.h>
#include <string.h>

#include "discount_policy.h"

static const char UNAVAILABLE[] = "This discount is unavailable right now";

static void log_message(stripe_discount_policy_host_log_level_t level, const char *message) {
    discount_policy_string_t msg;
    discount_policy_string_set(&msg, message);
    discount_policy_list_tuple2_string_string_t fields = {NULL, 0};
    stripe_discount_policy_host_log(level, &msg, &fields);
}

// A whole-number setting, or `fallback` when unset; -1 when it is not a number.
static long long config_int(const char *key, long long fallback) {
    discount_policy_string_t k, value;
    discount_policy_string_set(&k, key);
    if (!stripe_discount_policy_host_config(&k, &value)) return fallback;
    long long n = value.len ? 0 : -1;
    for (size_t i = 0; i < value.len && n >= 0; i++) {
        n = value.ptr[i] >= '0' && value.ptr[i] <= '9' ? n * 10 + (value.ptr[i] - '0') : -1;
    }
    discount_policy_string_free(&value);
    return n;
}

void exports_discount_policy_evaluate(discount_policy_checkout_session_t *session,
                                      discount_policy_policy_request_t *request,
                                      discount_policy_decision_t *ret) {
    long long percent = config_int("percent", 10);
    long long min_subtotal = config_int("min_subtotal", 5000);
    if (percent <= 0 || percent > 100 || min_subtotal < 0) {
        // Configuration errors are deployment errors: log them and refuse politely.
        log_message(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_ERROR, "invalid configuration");
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_REJECT;
        discount_policy_string_dup(&ret->val.reject, UNAVAILABLE);
    } else if (!session->currency.is_some || !session->amount_subtotal.is_some) {
        log_message(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_WARN,
                    "no currency or subtotal; leaving the session as it is");
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_KEEP;
    } else if (session->amount_subtotal.val < min_subtotal) {
        // Always the subtotal (before discounts): the total moves when a discount applies.
        log_message(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_INFO, "cart too small; clearing discounts");
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_CLEAR;
    } else {
        log_message(STRIPE_DISCOUNT_POLICY_HOST_LOG_LEVEL_INFO, "applying discount");
        stripe_discount_policy_types_coupon_data_t data;
        memset(&data, 0, sizeof data);
        discount_policy_string_t key;
        discount_policy_string_set(&key, "name");
        data.name.is_some = true;
        if (!stripe_discount_policy_host_config(&key, &data.name.val)) {
            discount_policy_string_dup(&data.name.val, "{{title}}");
        }
        data.percent_off.is_some = true;
        data.percent_off.val = (double)percent;
        ret->tag = STRIPE_DISCOUNT_POLICY_TYPES_DECISION_APPLY;
        ret->val.apply.tag = STRIPE_DISCOUNT_POLICY_TYPES_DISCOUNT_COUPON_DATA;
        ret->val.apply.val.coupon_data = data;
    }
    // The arguments belong to this function.
    discount_policy_checkout_session_free(session);
    discount_policy_policy_request_free(request);
}
