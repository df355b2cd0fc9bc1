//! Currencies Stripe accepts and their minimum charge amounts.

/// Three-letter codes Stripe supports for charges (lowercase).
pub const SUPPORTED: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp",
    "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl",
    "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf",
    "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
    "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok",
    "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
    "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl",
    "thb", "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Whether Stripe supports this (lowercase) currency.
pub fn is_supported(code: &str) -> bool {
    SUPPORTED.contains(&code)
}

/// Stripe's documented minimum charge amount, in the smallest unit, for the currencies it lists.
pub fn minimum_charge(code: &str) -> Option<i64> {
    Some(match code {
        "usd" | "aud" | "brl" | "cad" | "chf" | "eur" | "inr" | "nzd" | "sgd" => 50,
        "gbp" => 30,
        "aed" => 200,
        "bgn" => 100,
        "czk" => 1500,
        "dkk" => 250,
        "hkd" => 400,
        "huf" => 17500,
        "jpy" => 50,
        "mxn" => 1000,
        "myr" => 200,
        "nok" | "sek" => 300,
        "pln" => 200,
        "ron" => 200,
        "thb" => 1000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_currencies() {
        assert!(super::is_supported("usd"));
        assert!(!super::is_supported("xyz"));
        assert_eq!(super::minimum_charge("gbp"), Some(30));
        assert_eq!(super::minimum_charge("xof"), None);
    }
}
