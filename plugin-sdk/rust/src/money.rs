//! Amounts of money in a currency's smallest unit, as Stripe counts them.

use std::fmt;

/// Currencies Stripe treats as zero-decimal (an amount of 500 JPY is `500`).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies Stripe treats as three-decimal.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Number of decimals of `currency` as Stripe counts amounts (0, 2 or 3; 2 when unknown).
pub fn currency_exponent(currency: &str) -> u32 {
    let code = currency.trim().to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// `pct` percent of `amount`, rounded half away from zero to the smallest unit.
///
/// Exact for percentages with up to four decimals (12.3456 %); a NaN percentage gives 0 and
/// results beyond the range of `i64` saturate.
pub fn percent_of(amount: i64, pct: f64) -> i64 {
    if pct.is_nan() {
        return 0;
    }
    // Hundredths of a basis point, so 10 % is 100_000 and 12.5 % is 125_000.
    let scaled = (pct.clamp(-1.0e6, 1.0e6) * 10_000.0).round() as i128;
    let product = i128::from(amount) * scaled;
    let rounded = (product.abs() + 500_000) / 1_000_000;
    let signed = if product < 0 { -rounded } else { rounded };
    signed.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Parses a percentage written in decimal, such as `10`, `12.5` or `7.25%`.
///
/// At most four decimals; signs, exponents and other text are refused. This avoids the
/// standard float parser, which adds about 20 KB to a component.
pub fn parse_percent(text: &str) -> Result<f64, &'static str> {
    const NOT_A_NUMBER: &str = "not a decimal number such as 10 or 12.5";
    let t = text.trim();
    let t = t.strip_suffix('%').map_or(t, str::trim_end);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(NOT_A_NUMBER);
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(NOT_A_NUMBER);
    }
    if frac.len() > 4 {
        return Err("more than 4 decimals");
    }
    let int = int.trim_start_matches('0');
    if int.len() > 9 {
        return Err("too large");
    }
    let digits = |s: &str| {
        s.bytes()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'))
    };
    let frac_scaled = digits(frac) * 10u64.pow(4 - frac.len() as u32);
    let scaled = digits(int) * 10_000 + frac_scaled;
    Ok(scaled as f64 / 10_000.0)
}

/// An amount in the smallest unit of a currency (cents for USD, yen for JPY).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// Amount in the currency's smallest unit.
    pub amount: i64,
    /// Three-letter ISO code, lowercase as Stripe writes it.
    pub currency: String,
}

impl Money {
    /// `amount` smallest units of `currency` (the code is trimmed and lowercased).
    pub fn new(amount: i64, currency: impl AsRef<str>) -> Self {
        Self {
            amount,
            currency: currency.as_ref().trim().to_ascii_lowercase(),
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: impl AsRef<str>) -> Self {
        Self::new(0, currency)
    }

    /// Same currency, another amount.
    pub fn with_amount(&self, amount: i64) -> Self {
        Self {
            amount,
            currency: self.currency.clone(),
        }
    }

    /// `pct` percent of this amount, rounded half up (away from zero) in the smallest unit.
    pub fn percent(&self, pct: f64) -> Self {
        self.with_amount(percent_of(self.amount, pct))
    }

    /// This amount, but no more than `max` smallest units.
    pub fn capped_at(&self, max: i64) -> Self {
        self.with_amount(self.amount.min(max))
    }

    /// This amount, but no less than `min` smallest units.
    pub fn at_least(&self, min: i64) -> Self {
        self.with_amount(self.amount.max(min))
    }

    /// The smaller of the two amounts, or `None` when the currencies differ.
    pub fn min_of(&self, other: &Money) -> Option<Money> {
        self.same_currency(other)
            .then(|| self.with_amount(self.amount.min(other.amount)))
    }

    /// The sum, or `None` when the currencies differ or it overflows.
    pub fn checked_add(&self, other: &Money) -> Option<Money> {
        if !self.same_currency(other) {
            return None;
        }
        self.amount
            .checked_add(other.amount)
            .map(|a| self.with_amount(a))
    }

    /// Whether both amounts are in the same currency (case-insensitive).
    pub fn same_currency(&self, other: &Money) -> bool {
        self.currency.eq_ignore_ascii_case(&other.currency)
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// Whether the amount is greater than zero.
    pub fn is_positive(&self) -> bool {
        self.amount > 0
    }

    /// Decimals of the currency (see [`currency_exponent`]).
    pub fn exponent(&self) -> u32 {
        currency_exponent(&self.currency)
    }
}

/// Formats as `20.00 USD`, `2000 JPY` or `1.500 KWD`; just the number when the currency is empty.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.exponent();
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        if exp == 0 {
            write!(f, "{sign}{abs}")?;
        } else {
            let unit = 10u64.pow(exp);
            write!(
                f,
                "{sign}{}.{:0width$}",
                abs / unit,
                abs % unit,
                width = exp as usize
            )?;
        }
        if !self.currency.is_empty() {
            write!(f, " {}", self.currency.to_ascii_uppercase())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_half_up() {
        assert_eq!(percent_of(12_345, 10.0), 1_235); // 1234.5 -> 1235
        assert_eq!(percent_of(12_344, 10.0), 1_234);
        assert_eq!(percent_of(15_000, 10.0), 1_500);
        assert_eq!(percent_of(999, 12.5), 125); // 124.875
        assert_eq!(percent_of(1, 50.0), 1); // 0.5 -> 1
        assert_eq!(percent_of(-1, 50.0), -1);
        assert_eq!(percent_of(1_000, 0.1), 1);
        assert_eq!(percent_of(1_000, f64::NAN), 0);
        assert_eq!(percent_of(i64::MAX, f64::INFINITY), i64::MAX);
        assert_eq!(percent_of(i64::MIN, 100.0), i64::MIN);
    }

    #[test]
    fn percent_parsing() {
        assert_eq!(parse_percent("10"), Ok(10.0));
        assert_eq!(parse_percent(" 12.5 "), Ok(12.5));
        assert_eq!(parse_percent("7.25%"), Ok(7.25));
        assert_eq!(parse_percent("0.1"), Ok(0.1));
        assert_eq!(parse_percent(".5"), Ok(0.5));
        assert_eq!(parse_percent("5."), Ok(5.0));
        assert_eq!(parse_percent("0012.3456"), Ok(12.3456));
        for bad in [
            "",
            ".",
            "%",
            "-5",
            "+5",
            "1e2",
            "ten",
            "1.23456",
            "1.2.3",
            "10000000000",
        ] {
            assert!(parse_percent(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn caps_and_mins() {
        let m = Money::new(3_000, "USD");
        assert_eq!(m.currency, "usd");
        assert_eq!(m.capped_at(2_000).amount, 2_000);
        assert_eq!(m.capped_at(5_000).amount, 3_000);
        assert_eq!(m.at_least(4_000).amount, 4_000);
        assert_eq!(m.min_of(&Money::new(10, "usd")).unwrap().amount, 10);
        assert_eq!(m.min_of(&Money::new(10, "eur")), None);
        assert_eq!(m.checked_add(&Money::new(1, "usd")).unwrap().amount, 3_001);
        assert_eq!(
            Money::new(i64::MAX, "usd").checked_add(&Money::new(1, "usd")),
            None
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(Money::new(2_000, "usd").to_string(), "20.00 USD");
        assert_eq!(Money::new(5, "eur").to_string(), "0.05 EUR");
        assert_eq!(Money::new(-150, "usd").to_string(), "-1.50 USD");
        assert_eq!(Money::new(2_000, "jpy").to_string(), "2000 JPY");
        assert_eq!(Money::new(1_500, "kwd").to_string(), "1.500 KWD");
        assert_eq!(Money::new(1_234, "").to_string(), "12.34");
        assert_eq!(
            Money::new(i64::MIN, "usd").to_string(),
            "-92233720368547758.08 USD"
        );
    }
}
