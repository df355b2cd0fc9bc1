//! Stripe's discount arithmetic for a Checkout Session, as pure functions.
//!
//! The Stripe emulator computes session totals with this module, and the policy
//! runner uses it to preview what a decision would do to the totals.
//!
//! The rules (all amounts are integers in the currency's smallest unit):
//! - A coupon discounts the line items only, never shipping or tax.
//! - `percent_off`: the discount is `subtotal × percent_off / 100`, computed on the
//!   session subtotal and rounded to the nearest unit (halves round up).
//! - `amount_off`: the discount is `amount_off`, capped at the subtotal.
//! - The session discount is allocated across line items in proportion to their
//!   subtotals with the largest-remainder method, so the line discounts sum exactly
//!   to the session discount and no line is discounted below zero.
//! - `amount_total = amount_subtotal − amount_discount + amount_shipping + amount_tax`;
//!   tax is zero here (no automatic tax, no tax rates).

use crate::types::{CheckoutSession, Coupon, CouponData};

/// The discount-relevant terms of a coupon: `amount_off` or `percent_off`.
pub trait DiscountTerms {
    /// `amount_off`, in the smallest currency unit.
    fn amount_off(&self) -> Option<i64>;
    /// `percent_off`, in (0, 100].
    fn percent_off(&self) -> Option<f64>;
}

impl DiscountTerms for Coupon {
    fn amount_off(&self) -> Option<i64> {
        self.amount_off
    }
    fn percent_off(&self) -> Option<f64> {
        self.percent_off
    }
}

impl DiscountTerms for CouponData {
    fn amount_off(&self) -> Option<i64> {
        self.amount_off
    }
    fn percent_off(&self) -> Option<f64> {
        self.percent_off
    }
}

/// Plain discount terms, for callers that have no coupon object at hand.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms {
    /// `amount_off`, in the smallest currency unit.
    pub amount_off: Option<i64>,
    /// `percent_off`, in (0, 100].
    pub percent_off: Option<f64>,
}

impl DiscountTerms for Terms {
    fn amount_off(&self) -> Option<i64> {
        self.amount_off
    }
    fn percent_off(&self) -> Option<f64> {
        self.percent_off
    }
}

impl<T: DiscountTerms + ?Sized> DiscountTerms for &T {
    fn amount_off(&self) -> Option<i64> {
        (**self).amount_off()
    }
    fn percent_off(&self) -> Option<f64> {
        (**self).percent_off()
    }
}

/// `subtotal × percent / 100`, rounded to the nearest unit (halves up); 0 for a non-positive subtotal.
///
/// The percentage is taken to six decimal places, so the result does not depend on
/// binary floating-point noise (`12.5` percent of `1` is exactly half a unit, rounded up).
pub fn percent_discount(subtotal: i64, percent_off: f64) -> i64 {
    if subtotal <= 0 || !percent_off.is_finite() || percent_off <= 0.0 {
        return 0;
    }
    let percent = percent_off.min(100.0);
    // Millionths of a percent: at most 1e8.
    let micro = (percent * 1_000_000.0).round() as i128;
    let scale: i128 = 100 * 1_000_000;
    let discount = (i128::from(subtotal) * micro + scale / 2) / scale;
    clamp_i64(discount).min(subtotal)
}

/// The session-level discount a coupon gives on `subtotal`.
///
/// `percent_off` wins if (wrongly) both are set; `amount_off` is capped at the subtotal;
/// a coupon with neither gives 0. Currency is not checked here: the caller must only
/// pass an `amount_off` coupon in the session's currency.
pub fn discount_amount<C: DiscountTerms + ?Sized>(subtotal: i64, coupon: &C) -> i64 {
    if subtotal <= 0 {
        return 0;
    }
    if let Some(p) = coupon.percent_off() {
        return percent_discount(subtotal, p);
    }
    match coupon.amount_off() {
        Some(a) if a > 0 => a.min(subtotal),
        _ => 0,
    }
}

/// Splits `total_discount` across lines in proportion to `line_subtotals` (largest remainder).
///
/// Each line first gets `floor(total × line / sum)`; the units left over go one each
/// to the lines with the largest remainders, ties to the earlier line. The result sums
/// to `min(total_discount, sum)` and no line gets more than its own subtotal. Negative
/// subtotals count as zero; a zero sum or a non-positive discount gives all zeros.
pub fn allocate(line_subtotals: &[i64], total_discount: i64) -> Vec<i64> {
    let weights: Vec<i128> = line_subtotals
        .iter()
        .map(|&s| i128::from(s.max(0)))
        .collect();
    let sum: i128 = weights.iter().sum();
    if sum == 0 || total_discount <= 0 {
        return vec![0; line_subtotals.len()];
    }
    let total = i128::from(total_discount).min(sum);
    let mut shares: Vec<i128> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let product = total * w;
        shares.push(product / sum);
        remainders.push((product % sum, i));
    }
    let mut left = total - shares.iter().sum::<i128>();
    // Largest remainder first; among equals, the earlier line first.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (rem, i) in remainders {
        if left <= 0 {
            break;
        }
        if rem > 0 {
            shares[i] += 1;
            left -= 1;
        }
    }
    shares.into_iter().map(clamp_i64).collect()
}

/// The amounts of one line item after a discount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineTotals {
    /// `amount_subtotal`: unit amount × quantity.
    pub amount_subtotal: i64,
    /// `amount_discount`: this line's share of the session discount.
    pub amount_discount: i64,
    /// `amount_tax`: always 0 here.
    pub amount_tax: i64,
    /// `amount_total`: subtotal − discount + tax.
    pub amount_total: i64,
}

/// The totals of a Checkout Session, as Stripe reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTotals {
    /// `amount_subtotal`: sum of the line subtotals.
    pub amount_subtotal: i64,
    /// `total_details.amount_discount`.
    pub amount_discount: i64,
    /// `total_details.amount_shipping`.
    pub amount_shipping: i64,
    /// `total_details.amount_tax`: always 0 here.
    pub amount_tax: i64,
    /// `amount_total`: subtotal − discount + shipping + tax.
    pub amount_total: i64,
    /// Per-line amounts, in the order of the input lines.
    pub lines: Vec<LineTotals>,
}

impl SessionTotals {
    /// Totals for these line subtotals, an optional coupon and a shipping amount.
    pub fn compute<C: DiscountTerms + ?Sized>(
        line_subtotals: &[i64],
        coupon: Option<&C>,
        amount_shipping: i64,
    ) -> SessionTotals {
        let amount_subtotal: i64 = line_subtotals
            .iter()
            .fold(0i64, |acc, s| acc.saturating_add(*s));
        let amount_discount = coupon.map_or(0, |c| discount_amount(amount_subtotal, c));
        let shares = allocate(line_subtotals, amount_discount);
        let lines = line_subtotals
            .iter()
            .zip(shares)
            .map(|(&sub, disc)| LineTotals {
                amount_subtotal: sub,
                amount_discount: disc,
                amount_tax: 0,
                amount_total: sub.saturating_sub(disc),
            })
            .collect();
        SessionTotals {
            amount_subtotal,
            amount_discount,
            amount_shipping,
            amount_tax: 0,
            amount_total: amount_subtotal
                .saturating_sub(amount_discount)
                .saturating_add(amount_shipping),
            lines,
        }
    }

    /// Previews a retrieved session's totals with `coupon` replacing its discounts (`None` = cleared).
    ///
    /// Uses the expanded `line_items` (their `amount_subtotal`) and `shipping_cost.amount_subtotal`;
    /// a session retrieved without `expand[]=line_items` is treated as one line of `amount_subtotal`.
    pub fn preview<C: DiscountTerms + ?Sized>(
        session: &CheckoutSession,
        coupon: Option<&C>,
    ) -> SessionTotals {
        let lines: Vec<i64> = match &session.line_items {
            Some(list) if !list.data.is_empty() => {
                list.data.iter().map(|li| li.amount_subtotal).collect()
            }
            _ => vec![session.amount_subtotal.unwrap_or(0)],
        };
        let shipping = session
            .shipping_cost
            .as_ref()
            .map_or(0, |s| s.amount_subtotal);
        SessionTotals::compute(&lines, coupon, shipping)
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(p: f64) -> Terms {
        Terms {
            amount_off: None,
            percent_off: Some(p),
        }
    }

    fn amt(a: i64) -> Terms {
        Terms {
            amount_off: Some(a),
            percent_off: None,
        }
    }

    #[test]
    fn percent_rounds_to_nearest_half_up() {
        assert_eq!(percent_discount(1000, 10.0), 100);
        assert_eq!(percent_discount(999, 10.0), 100); // 99.9
        assert_eq!(percent_discount(994, 10.0), 99); // 99.4
        assert_eq!(percent_discount(995, 10.0), 100); // 99.5 rounds up
        assert_eq!(percent_discount(1, 50.0), 1); // 0.5 rounds up
        assert_eq!(percent_discount(1, 12.5), 0); // 0.125
        assert_eq!(percent_discount(333, 33.33), 111); // 110.9889
        assert_eq!(percent_discount(2000, 25.5), 510);
        assert_eq!(percent_discount(5000, 100.0), 5000);
    }

    #[test]
    fn percent_handles_degenerate_input() {
        assert_eq!(percent_discount(0, 10.0), 0);
        assert_eq!(percent_discount(-5, 10.0), 0);
        assert_eq!(percent_discount(100, f64::NAN), 0);
        assert_eq!(percent_discount(100, -3.0), 0);
        assert_eq!(percent_discount(100, 150.0), 100);
    }

    #[test]
    fn extreme_amounts_saturate_instead_of_wrapping() {
        let t = SessionTotals::compute(&[i64::MAX, 5], Some(&amt(1)), i64::MAX);
        assert_eq!(t.amount_subtotal, i64::MAX);
        assert_eq!(t.amount_total, i64::MAX);
        let t = SessionTotals::compute(&[-10], None::<&Terms>, i64::MIN);
        assert_eq!(t.amount_total, i64::MIN);
    }

    #[test]
    fn amount_off_is_capped_at_subtotal() {
        assert_eq!(discount_amount(5000, &amt(2000)), 2000);
        assert_eq!(discount_amount(1500, &amt(2000)), 1500);
        assert_eq!(discount_amount(0, &amt(2000)), 0);
        assert_eq!(discount_amount(1500, &amt(0)), 0);
    }

    #[test]
    fn discount_amount_accepts_stripe_types() {
        let coupon = Coupon {
            id: "c".into(),
            percent_off: Some(20.0),
            ..Default::default()
        };
        assert_eq!(discount_amount(1234, &coupon), 247); // 246.8
        let data = CouponData {
            amount_off: Some(300),
            currency: Some("usd".into()),
            ..Default::default()
        };
        assert_eq!(discount_amount(1234, &data), 300);
    }

    #[test]
    fn allocate_is_proportional_and_exact() {
        assert_eq!(allocate(&[1000, 3000], 400), vec![100, 300]);
        // 100 over three equal lines: 33.33 each, the first gets the extra unit.
        assert_eq!(allocate(&[100, 100, 100], 100), vec![34, 33, 33]);
        // Largest remainder wins, not the first line.
        // 10 × [10, 20, 40] / 70 = 1.43, 2.86, 5.71 → floors 1, 2, 5 (sum 8), +1 to .86 and .71.
        assert_eq!(allocate(&[10, 20, 40], 10), vec![1, 3, 6]);
        let shares = allocate(&[1999, 1, 3333, 7], 1234);
        assert_eq!(shares.iter().sum::<i64>(), 1234);
    }

    #[test]
    fn allocate_never_exceeds_a_line() {
        let lines = [1, 1, 1, 997];
        let shares = allocate(&lines, 1000);
        assert_eq!(shares, vec![1, 1, 1, 997]);
        let shares = allocate(&lines, 5000); // capped at the sum
        assert_eq!(shares.iter().sum::<i64>(), 1000);
        for (s, l) in allocate(&[3, 5, 7], 14).iter().zip([3, 5, 7]) {
            assert!(*s <= l);
        }
    }

    #[test]
    fn allocate_degenerate() {
        assert_eq!(allocate(&[], 100), Vec::<i64>::new());
        assert_eq!(allocate(&[0, 0], 100), vec![0, 0]);
        assert_eq!(allocate(&[100, 200], 0), vec![0, 0]);
        assert_eq!(allocate(&[100, -50], 50), vec![50, 0]);
    }

    #[test]
    fn session_totals_with_shipping() {
        let t = SessionTotals::compute(&[2000, 1000], Some(&pct(10.0)), 500);
        assert_eq!(t.amount_subtotal, 3000);
        assert_eq!(t.amount_discount, 300);
        assert_eq!(t.amount_shipping, 500);
        assert_eq!(t.amount_total, 3200);
        assert_eq!(t.lines[0].amount_discount, 200);
        assert_eq!(t.lines[1].amount_total, 900);
        // Shipping is never discounted.
        let t = SessionTotals::compute(&[1000], Some(&amt(5000)), 700);
        assert_eq!(t.amount_discount, 1000);
        assert_eq!(t.amount_total, 700);
        let none: Option<&Terms> = None;
        let t = SessionTotals::compute(&[1000, 1], none, 0);
        assert_eq!(t.amount_total, 1001);
        assert_eq!(t.amount_discount, 0);
    }

    #[test]
    fn preview_uses_expanded_line_items() {
        use crate::types::{LineItem, List, ShippingCost};
        let session = CheckoutSession {
            id: "cs_test_1".into(),
            amount_subtotal: Some(3000),
            line_items: Some(List {
                data: vec![
                    LineItem {
                        id: "li_1".into(),
                        amount_subtotal: 1000,
                        ..Default::default()
                    },
                    LineItem {
                        id: "li_2".into(),
                        amount_subtotal: 2000,
                        ..Default::default()
                    },
                ],
                has_more: false,
                url: None,
            }),
            shipping_cost: Some(ShippingCost {
                amount_subtotal: 500,
                amount_total: 500,
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = SessionTotals::preview(&session, Some(&amt(600)));
        assert_eq!(
            t.lines
                .iter()
                .map(|l| l.amount_discount)
                .collect::<Vec<_>>(),
            vec![200, 400]
        );
        assert_eq!(t.amount_total, 2900);
    }
}
