//! Money, exactly: prices per vendor × product and spend caps per vendor, as an operator
//! writes them (`huawei.ivs-standard=1.50 CNY`, `huawei=1000calls`, `baidu=500.00CNY`).
//!
//! Amounts are whole numbers of ten-thousandths of the currency unit ([`Amount`]): a price
//! is parsed from its decimal text digit by digit, never through a float, so `0.1 + 0.2` is
//! `0.3` and a month of calls adds up to the invoice to the last fen. Four places cover
//! per-call prices below a fen; a fifth place is refused rather than rounded.
//!
//! No I/O: the worker checks caps with these types, the billing report prices its rows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Vendor;

/// Decimal places an [`Amount`] keeps.
pub const AMOUNT_PLACES: u32 = 4;
const SCALE: i64 = 10_i64.pow(AMOUNT_PLACES);

/// Why a price, a cap or a time zone could not be read. Each names the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{entry:?}: {problem}")]
    Entry { entry: String, problem: String },
}

fn bad(entry: &str, problem: impl Into<String>) -> MoneyError {
    MoneyError::Entry {
        entry: entry.trim().to_string(),
        problem: problem.into(),
    }
}

/// An ISO 4217-style currency code: three capital ASCII letters (`CNY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.trim().as_bytes();
        match b {
            [a, b2, c] if b.iter().all(u8::is_ascii_uppercase) => Ok(Currency([*a, *b2, *c])),
            _ => Err(format!(
                "currency {:?} is not three capital letters such as CNY",
                s.trim()
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII capitals, checked in `parse`.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount in ten-thousandths of a currency unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// From ten-thousandths of the unit (`15_000` is 1.50).
    pub fn from_units(units: i64) -> Self {
        Amount(units)
    }

    /// Ten-thousandths of the unit.
    pub fn units(self) -> i64 {
        self.0
    }

    /// A decimal such as `1.5`, `0.0125` or `500`: digits, at most one point, at most
    /// [`AMOUNT_PLACES`] places, no sign, no exponent.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(frac)
            || (t.contains('.') && frac.is_empty())
        {
            return Err(format!(
                "amount {t:?} is not a decimal such as 1.50 (digits, one point, no sign)"
            ));
        }
        if frac.len() > AMOUNT_PLACES as usize {
            return Err(format!(
                "amount {t:?} has more than {AMOUNT_PLACES} decimal places"
            ));
        }
        let too_large = || format!("amount {t:?} is too large");
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        let frac_units: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<i64>().map_err(|_| too_large())?
                * 10_i64.pow(AMOUNT_PLACES - frac.len() as u32)
        };
        whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(too_large)
    }

    /// `self × n`, saturating (a count times a price never wraps into a small number).
    pub fn times(self, n: i64) -> Amount {
        Amount(self.0.saturating_mul(n))
    }

    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    /// As a float, for gauges only (Prometheus values are floats); never for arithmetic.
    pub fn to_f64_lossy(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }
}

/// At least two places (`1.50`), more when the amount has them (`0.0125`).
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / SCALE as u64;
        let mut frac = format!("{:04}", abs % SCALE as u64);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{whole}.{frac}")
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl Money {
    /// `1.50 CNY` or `1.50CNY`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("{t:?} has no currency (write e.g. 1.50 CNY)"))?;
        let (amount, currency) = t.split_at(split);
        Ok(Money {
            amount: Amount::parse(amount)?,
            currency: Currency::parse(currency)?,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Entries separated by commas or new lines; `#` starts a comment (as the quota files).
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .flat_map(|l| l.split('#').next().unwrap_or_default().split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

fn vendor_named(entry: &str, name: &str) -> Result<Vendor, MoneyError> {
    Vendor::from_str(name.trim()).map_err(|_| {
        bad(
            entry,
            format!(
                "unknown vendor {:?} (huawei, alibaba or baidu)",
                name.trim()
            ),
        )
    })
}

/// What each vendor × product costs per billed call (or per charge the vendor reports).
/// Products without an entry have no price: reports say so, they never guess.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    prices: BTreeMap<(Vendor, String), Money>,
}

impl PriceTable {
    /// Parses `vendor.product=amount CURRENCY` entries (`huawei.ivs-standard=1.50 CNY`).
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let mut t = PriceTable::default();
        t.extend_from(text)?;
        Ok(t)
    }

    /// Adds (or replaces) the entries of `text`: a later source overrides an earlier one.
    pub fn extend_from(&mut self, text: &str) -> Result<(), MoneyError> {
        for entry in entries(text) {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| bad(entry, "expected vendor.product=amount CURRENCY"))?;
            let (vendor, product) = key.trim().split_once('.').ok_or_else(|| {
                bad(
                    entry,
                    "the key must be vendor.product, e.g. huawei.ivs-standard",
                )
            })?;
            let vendor = vendor_named(entry, vendor)?;
            let product = product.trim();
            if product.is_empty() {
                return Err(bad(entry, "the product is empty"));
            }
            let price = Money::parse(value).map_err(|p| bad(entry, p))?;
            self.prices.insert((vendor, product.to_string()), price);
        }
        Ok(())
    }

    pub fn price(&self, vendor: Vendor, product: &str) -> Option<Money> {
        self.prices.get(&(vendor, product.to_string())).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Every entry, vendor and product in order.
    pub fn iter(&self) -> impl Iterator<Item = (Vendor, &str, Money)> {
        self.prices.iter().map(|((v, p), m)| (*v, p.as_str(), *m))
    }
}

/// A vendor's spend cap for one window (a day by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendCap {
    /// Billable calls (or charges the vendor reports).
    Calls(u64),
    /// Money, priced with the [`PriceTable`].
    Money(Money),
}

impl SpendCap {
    /// The unit label of `/metrics` (`calls`, or the currency code).
    pub fn unit(&self) -> String {
        match self {
            SpendCap::Calls(_) => "calls".into(),
            SpendCap::Money(m) => m.currency.to_string(),
        }
    }
}

impl fmt::Display for SpendCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpendCap::Calls(n) => write!(f, "{n} calls"),
            SpendCap::Money(m) => write!(f, "{m}"),
        }
    }
}

/// One cap per vendor, parsed from `vendor=N calls` / `vendor=amount CURRENCY` entries
/// (`huawei=1000calls,baidu=500.00CNY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpendCaps {
    caps: BTreeMap<Vendor, SpendCap>,
}

impl SpendCaps {
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let mut caps = BTreeMap::new();
        for entry in entries(text) {
            let (vendor, value) = entry.split_once('=').ok_or_else(|| {
                bad(
                    entry,
                    "expected vendor=N calls or vendor=amount CURRENCY, e.g. huawei=1000calls",
                )
            })?;
            let vendor = vendor_named(entry, vendor)?;
            let value = value.trim();
            let cap = match value.strip_suffix("calls") {
                Some(n) => SpendCap::Calls(
                    n.trim()
                        .parse()
                        .map_err(|_| bad(entry, "the number of calls is not a whole number"))?,
                ),
                None => SpendCap::Money(Money::parse(value).map_err(|p| bad(entry, p))?),
            };
            if caps.insert(vendor, cap).is_some() {
                return Err(bad(
                    entry,
                    format!("a second cap for {vendor}: give one cap per vendor"),
                ));
            }
        }
        Ok(SpendCaps { caps })
    }

    pub fn get(&self, vendor: Vendor) -> Option<SpendCap> {
        self.caps.get(&vendor).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Vendor, SpendCap)> + '_ {
        self.caps.iter().map(|(v, c)| (*v, *c))
    }
}

/// The clock a spend day is counted in: a fixed offset from UTC. Asia/Shanghai (UTC+8, no
/// daylight saving since 1991) is the default because the Chinese vendors bill by Beijing day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendZone {
    /// Seconds east of UTC.
    pub offset_secs: i32,
}

impl Default for SpendZone {
    fn default() -> Self {
        SpendZone {
            offset_secs: 8 * 3600,
        }
    }
}

impl SpendZone {
    /// `Asia/Shanghai` (also `Asia/Chongqing`, `PRC`), `UTC`, or an offset `+08:00` / `-05:30`.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let t = s.trim();
        let offset_secs = match t {
            "Asia/Shanghai" | "Asia/Chongqing" | "PRC" => 8 * 3600,
            "UTC" | "Z" | "Etc/UTC" => 0,
            _ => {
                let sign = match t.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => {
                        return Err(bad(
                            t,
                            "expected Asia/Shanghai, UTC or an offset such as +08:00",
                        ))
                    }
                };
                let (h, m) = t[1..]
                    .split_once(':')
                    .ok_or_else(|| bad(t, "an offset is written ±HH:MM, e.g. +08:00"))?;
                let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
                    (Ok(h), Ok(m)) if h <= 14 && m < 60 && h >= 0 && m >= 0 => (h, m),
                    _ => return Err(bad(t, "an offset is written ±HH:MM, at most ±14:00")),
                };
                sign * (h * 3600 + m * 60)
            }
        };
        Ok(SpendZone { offset_secs })
    }

    /// The start (ms since the epoch) of the window of length `window_ms` that holds `now_ms`,
    /// windows aligned on local midnight of this zone when `window_ms` divides a day.
    pub fn window_start(&self, now_ms: i64, window_ms: i64) -> i64 {
        let offset = i64::from(self.offset_secs) * 1000;
        let window_ms = window_ms.max(1);
        (now_ms + offset).div_euclid(window_ms) * window_ms - offset
    }
}

impl fmt::Display for SpendZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset_secs {
            0 => f.write_str("UTC"),
            28_800 => f.write_str("Asia/Shanghai"),
            s => {
                let sign = if s < 0 { '-' } else { '+' };
                let a = s.abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(Amount::parse("1.5").unwrap().units(), 15_000);
        assert_eq!(Amount::parse("0.0125").unwrap().units(), 125);
        assert_eq!(Amount::parse("500").unwrap().units(), 5_000_000);
        // Three tenths are three tenths: no float on the way.
        let tenth = Amount::parse("0.1").unwrap();
        assert_eq!(
            tenth.times(3),
            Amount::parse("0.3").unwrap(),
            "0.1 × 3 must be exactly 0.3"
        );
        assert_eq!(Amount::parse("1.5").unwrap().to_string(), "1.50");
        assert_eq!(
            Amount::parse("0.0125").unwrap().times(3).to_string(),
            "0.0375"
        );
        assert_eq!(Amount::ZERO.to_string(), "0.00");
    }

    #[test]
    fn bad_amounts_say_what_is_wrong() {
        for (text, says) in [
            ("-1", "no sign"),
            ("1,5", "decimal"),
            ("1e3", "decimal"),
            ("1.", "decimal"),
            (".5", "decimal"),
            ("0.00001", "more than 4 decimal places"),
            ("99999999999999999999", "too large"),
        ] {
            let err = Amount::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn price_tables_parse_entries_and_name_the_bad_one() {
        let t = PriceTable::parse(
            "huawei.ivs-standard=1.50 CNY # list price\nalibaba.VerifyMaterial=0.5CNY, aliyun.SubmitVerification=2 CNY",
        )
        .unwrap();
        assert_eq!(
            t.price(Vendor::Huawei, "ivs-standard").unwrap().to_string(),
            "1.50 CNY"
        );
        assert_eq!(
            t.price(Vendor::Alibaba, "SubmitVerification")
                .unwrap()
                .amount
                .units(),
            20_000
        );
        assert_eq!(t.price(Vendor::Huawei, "ivs-idcard-extention"), None);
        for (text, says) in [
            ("huawei.ivs-standard", "expected vendor.product=amount"),
            ("huawei=1.50 CNY", "vendor.product"),
            ("tencent.x=1 CNY", "unknown vendor \"tencent\""),
            ("huawei.=1 CNY", "product is empty"),
            ("huawei.ivs-standard=1.50", "no currency"),
            ("huawei.ivs-standard=1.50 yuan", "three capital letters"),
            ("huawei.ivs-standard=-1 CNY", "no sign"),
        ] {
            let err = PriceTable::parse(&format!("huawei.ok=1 CNY,{text}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(says) && err.contains(text.trim()),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn caps_are_calls_or_money_one_per_vendor() {
        let c = SpendCaps::parse("huawei=1000calls, baidu=500.00CNY\nalibaba = 20 calls").unwrap();
        assert_eq!(c.get(Vendor::Huawei), Some(SpendCap::Calls(1000)));
        assert_eq!(c.get(Vendor::Alibaba), Some(SpendCap::Calls(20)));
        assert_eq!(c.get(Vendor::Baidu).unwrap().to_string(), "500.00 CNY");
        assert_eq!(c.get(Vendor::Baidu).unwrap().unit(), "CNY");
        for (text, says) in [
            ("huawei", "expected vendor=N calls"),
            ("huawei=many calls", "not a whole number"),
            ("huawei=-3calls", "not a whole number"),
            ("huawei=12", "no currency"),
            ("tencent=3calls", "unknown vendor"),
            ("huawei=3calls,huawei=5calls", "a second cap for huawei"),
        ] {
            let err = SpendCaps::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn spend_days_are_beijing_days_by_default() {
        let z = SpendZone::default();
        assert_eq!(z.to_string(), "Asia/Shanghai");
        let day = 86_400_000;
        // 2025-11-20T15:59:59Z is 23:59:59 in Beijing: the window began 2025-11-19T16:00Z.
        let t = 1_763_654_399_000;
        assert_eq!(z.window_start(t, day), 1_763_568_000_000);
        // One second later a new Beijing day begins.
        assert_eq!(z.window_start(t + 1000, day), t + 1000);
        assert_eq!(
            SpendZone::parse("UTC").unwrap().window_start(t, day),
            1_763_596_800_000
        );
        assert_eq!(SpendZone::parse("+05:30").unwrap().offset_secs, 19_800);
        assert_eq!(SpendZone::parse("-03:00").unwrap().to_string(), "-03:00");
        for bad in ["Europe/Paris", "+8", "+15:00", "+08:75"] {
            assert!(SpendZone::parse(bad).is_err(), "{bad}");
        }
    }
}
