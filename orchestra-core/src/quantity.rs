//! Resource quantities (`250m`, `1.5Gi`, `1e3`), exact, as Kubernetes parses and prints them.
//!
//! A quantity is how Kubernetes writes an amount of a resource: CPU in cores (`"250m"` is a
//! quarter of a core), memory and storage in bytes (`"1Gi"`, `"500M"`), counts of anything else.
//! It is a signed decimal number followed by a suffix:
//!
//! - a decimal SI suffix: `n` (10⁻⁹), `u` (10⁻⁶), `m` (10⁻³), none, `k` (10³), `M`, `G`, `T`, `P`,
//!   `E` (10¹⁸);
//! - a binary SI suffix: `Ki` (2¹⁰), `Mi`, `Gi`, `Ti`, `Pi`, `Ei` (2⁶⁰);
//! - or a decimal exponent: `e3`, `E-3`, `e+6` (a lone `E` is exa, not an exponent).
//!
//! The number may have a sign and a fraction (`"1.5"`, `".5"` and even `"1."` are all valid), and
//! the grammar is exactly that of Kubernetes' `resource.ParseQuantity`, quirks included (see
//! [`Quantity::parse`]).
//!
//! # Exactness
//!
//! A [`Quantity`] holds its value as a whole number of nano-units (10⁻⁹) in an `i128`, never as a
//! floating-point number. Comparison, equality, hashing, addition and subtraction are exact, and
//! look at the value only: `1Ki`, `1024` and `1024000m` are equal.
//!
//! # Rounding and capping
//!
//! Parsing keeps a value exactly when it is a whole number of nano-units. A finer non-zero value
//! is rounded *away from zero* to the next nano-unit, as Kubernetes does, on the theory that who
//! asks for some of a resource should get some: `"0.1n"` is `1n`, `"-0.1n"` is `-1n`. The magnitude
//! is capped at 2⁶³−1 units (Kubernetes' `maxAllowed`): `"10E"` and `"1e1000000"` parse as
//! `9223372036854775807`. Every quantity this module makes stays within `±(2⁶³−1)` units;
//! [`Quantity::MAX`] and [`Quantity::MIN`] are the bounds, and arithmetic saturates at them.
//! Parsing never builds a number larger than that bound, whatever the exponent, and takes time
//! linear in the length of the text.
//!
//! # Canonical form
//!
//! A quantity remembers the [`Format`] of the suffix it was parsed with, and prints in the
//! canonical form of that format, exactly as Kubernetes' `Quantity.String()`:
//!
//! - zero prints as `0`;
//! - decimal SI and decimal exponent: the trailing zeros of the digits are removed and the
//!   exponent lowered to a multiple of three, so no fraction is ever printed and the suffix is as
//!   large as possible: `"1.5"` prints `1500m`, `"1000"` prints `1k`, `"1.5e3"` prints `1500`;
//! - binary SI: a value strictly between −1024 and 1024, or one that is not a whole number,
//!   prints as decimal SI (`"0.5Ki"` prints `512`); a whole number prints with the largest binary
//!   suffix that divides it (`"1.5Gi"` prints `1536Mi`), or with none (`2000`).
//!
//! Printing a quantity and parsing the text back gives the same value, always.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::quantity::{Format, ParseQuantityError, Quantity};
//!
//! let cpu: Quantity = "1.5".parse()?;
//! assert_eq!(cpu.to_string(), "1500m");
//! assert_eq!(cpu.as_milli_ceil(), 1500);
//!
//! let memory = Quantity::parse("1.5Gi")?;
//! assert_eq!(memory.to_string(), "1536Mi");
//! assert_eq!(memory.format(), Format::BinarySI);
//! assert_eq!(memory, Quantity::from_units(1_610_612_736, Format::DecimalSI));
//!
//! let requests = ["100m", "250m", "0.15"];
//! let total: Quantity = requests.iter().map(|s| s.parse::<Quantity>()).sum::<Result<_, _>>()?;
//! assert_eq!(total.to_string(), "500m");
//!
//! assert!(matches!(Quantity::parse("1K"), Err(ParseQuantityError::Suffix)));
//! # Ok::<(), ParseQuantityError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The largest magnitude of a quantity, in nano-units: 2⁶³−1 units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;

/// How many decimal digits [`MAX_NANOS`] has: a whole number of nano-units with more digits is
/// capped.
const MAX_NANOS_DIGITS: i128 = 28;

/// The characters of a suffix before its optional sign and digits, as Kubernetes scans them.
const SUFFIX_LETTERS: &[u8] = b"eEinumkKMGTP";

/// The largest magnitude of a decimal exponent (`e<int>`) that Kubernetes accepts.
const MAX_EXPONENT: i64 = i32::MAX as i64;

/// The family of suffix a quantity was written with, and so prints with.
///
/// Parsing sets it from the suffix; arithmetic keeps the left operand's (see [`Quantity::checked_add`]).
/// It never takes part in comparison or equality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Decimal SI suffixes: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E` (`12M` is 12 × 10⁶).
    #[default]
    DecimalSI,
    /// Binary SI suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei` (`12Mi` is 12 × 2²⁰).
    BinarySI,
    /// A decimal exponent: `12e6`.
    DecimalExponent,
}

/// Why a string is not a quantity. The messages are those of Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseQuantityError {
    /// The string is empty, or is not a number followed by suffix characters (`"abc"`, `"1.2.3"`,
    /// `" 1"`).
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// The suffix is well formed but is not a known one (`"1K"`, `"1ki"`, `"1e"`), or its
    /// exponent is outside ±(2³¹−1).
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The number has no digits where Kubernetes' exact path needs some (`"e-10"`, `"Pi"`).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// An exact resource quantity: a whole number of nano-units and the [`Format`] it prints in.
///
/// See the [module documentation](self) for the grammar, rounding, capping and canonical form.
/// Equality, ordering and hashing look at the value only, never at the format.
#[derive(Clone, Copy)]
pub struct Quantity {
    /// The value in nano-units, within `±MAX_NANOS`.
    nanos: i128,
    format: Format,
}

impl Quantity {
    /// Zero, in decimal SI (what `"0"` parses as).
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// The largest quantity: 2⁶³−1 units, in decimal SI.
    pub const MAX: Quantity = Quantity {
        nanos: MAX_NANOS,
        format: Format::DecimalSI,
    };

    /// The smallest quantity: −(2⁶³−1) units, in decimal SI.
    pub const MIN: Quantity = Quantity {
        nanos: -MAX_NANOS,
        format: Format::DecimalSI,
    };

    /// Parses a quantity exactly as Kubernetes' `resource.ParseQuantity` does.
    ///
    /// The text is an optional sign, digits with an optional `.` and fraction, and a suffix (see
    /// the [module documentation](self)). No whitespace is allowed. The value is rounded away from
    /// zero to a whole nano-unit and capped at 2⁶³−1 units in magnitude. A binary SI quantity
    /// whose magnitude is below one unit (but not zero) takes the decimal SI format.
    ///
    /// Kubernetes' quirks are kept: a number without digits is zero (`"-"`, `"+"`, `"."`, `"k"`,
    /// `"Ki"` parse as 0) except where Kubernetes takes its exact path, which rejects it
    /// ([`ParseQuantityError::Numeric`]: an exponent below −9, `Pi` and `Ei`).
    ///
    /// # Errors
    ///
    /// [`ParseQuantityError::Format`] when the text is empty or does not have the shape of a
    /// quantity, [`ParseQuantityError::Suffix`] for an unknown suffix or an exponent outside
    /// ±(2³¹−1), [`ParseQuantityError::Numeric`] as above.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::{Format, ParseQuantityError, Quantity};
    ///
    /// let q = Quantity::parse("0.1n")?;
    /// assert_eq!(q.as_nanos(), 1);
    /// assert_eq!(Quantity::parse("1E-3")?.format(), Format::DecimalExponent);
    /// assert_eq!(Quantity::parse("10E")?, Quantity::MAX);
    /// assert_eq!(Quantity::parse("1ki"), Err(ParseQuantityError::Suffix));
    /// assert_eq!(Quantity::parse("1 "), Err(ParseQuantityError::Format));
    /// # Ok::<(), ParseQuantityError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Quantity, ParseQuantityError> {
        if text.is_empty() {
            return Err(ParseQuantityError::Format);
        }
        let parts = Parts::split(text.as_bytes())?;
        let (multiplier, format) = interpret_suffix(parts.suffix)?;
        if parts.integer.is_empty() && parts.fraction.is_empty() {
            // Kubernetes' fast path reads a number without digits as zero; its exact path, taken
            // for these suffixes, fails to parse it.
            let exact_path = match multiplier {
                Multiplier::Decimal(exponent) => exponent < -9,
                Multiplier::Binary(shift) => shift >= 50,
            };
            if exact_path {
                return Err(ParseQuantityError::Numeric);
            }
            return Ok(Quantity { nanos: 0, format });
        }
        let magnitude = magnitude_nanos(parts.integer, parts.fraction, multiplier);
        let format = if format == Format::BinarySI && magnitude > 0 && magnitude < NANOS_PER_UNIT {
            Format::DecimalSI
        } else {
            format
        };
        let nanos = if parts.negative {
            -magnitude
        } else {
            magnitude
        };
        Ok(Quantity { nanos, format })
    }

    /// A quantity of `nanos` nano-units in `format`, clamped to [`Quantity::MIN`]..=[`Quantity::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::{Format, Quantity};
    ///
    /// assert_eq!(Quantity::from_nanos(1_500, Format::DecimalSI).to_string(), "1500n");
    /// assert_eq!(Quantity::from_nanos(i128::MAX, Format::DecimalSI), Quantity::MAX);
    /// ```
    pub const fn from_nanos(nanos: i128, format: Format) -> Quantity {
        let nanos = if nanos > MAX_NANOS {
            MAX_NANOS
        } else if nanos < -MAX_NANOS {
            -MAX_NANOS
        } else {
            nanos
        };
        Quantity { nanos, format }
    }

    /// A quantity of `milli` thousandths of a unit, in decimal SI (Kubernetes' `NewMilliQuantity`).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::Quantity;
    ///
    /// assert_eq!(Quantity::from_milli(250).to_string(), "250m");
    /// assert_eq!(Quantity::from_milli(2000).to_string(), "2");
    /// ```
    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity::from_nanos(milli as i128 * 1_000_000, Format::DecimalSI)
    }

    /// A quantity of `units` whole units in `format` (Kubernetes' `NewQuantity`), clamped to
    /// [`Quantity::MIN`]..=[`Quantity::MAX`] (only `i64::MIN` is out of range).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::{Format, Quantity};
    ///
    /// assert_eq!(Quantity::from_units(1024, Format::BinarySI).to_string(), "1Ki");
    /// assert_eq!(Quantity::from_units(1024, Format::DecimalSI).to_string(), "1024");
    /// ```
    pub const fn from_units(units: i64, format: Format) -> Quantity {
        Quantity::from_nanos(units as i128 * NANOS_PER_UNIT, format)
    }

    /// The exact value in nano-units.
    pub const fn as_nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths of a unit, rounded away from zero to a whole thousandth, as
    /// Kubernetes' `MilliValue` rounds (so `"-0.0005"` gives −1, not 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::Quantity;
    ///
    /// let q: Quantity = "1.0001".parse()?;
    /// assert_eq!(q.as_milli_ceil(), 1001);
    /// let q: Quantity = "-1.0001".parse()?;
    /// assert_eq!(q.as_milli_ceil(), -1001);
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    pub const fn as_milli_ceil(&self) -> i128 {
        divide_away_from_zero(self.nanos, 1_000_000)
    }

    /// The value in units, rounded away from zero to a whole unit, as Kubernetes' `Value` rounds
    /// (so `"-1500m"` gives −2).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::Quantity;
    ///
    /// let q: Quantity = "1500m".parse()?;
    /// assert_eq!(q.as_units_ceil(), 2);
    /// assert_eq!((-q).as_units_ceil(), -2);
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    pub const fn as_units_ceil(&self) -> i128 {
        divide_away_from_zero(self.nanos, NANOS_PER_UNIT)
    }

    /// The format this quantity prints in.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// The same value, printing in `format`.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::{Format, Quantity};
    ///
    /// let q: Quantity = "2048".parse()?;
    /// assert_eq!(q.with_format(Format::BinarySI).to_string(), "2Ki");
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    #[must_use]
    pub const fn with_format(self, format: Format) -> Quantity {
        Quantity {
            nanos: self.nanos,
            format,
        }
    }

    /// Whether the value is zero.
    pub const fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// −1, 0 or 1 as the value is negative, zero or positive.
    pub const fn signum(&self) -> i32 {
        if self.nanos > 0 {
            1
        } else if self.nanos < 0 {
            -1
        } else {
            0
        }
    }

    /// The exact sum, or `None` when its magnitude is beyond 2⁶³−1 units.
    ///
    /// The sum keeps `self`'s format, unless `self` is zero, when it takes `other`'s (as
    /// Kubernetes' `Quantity.Add` does).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::Quantity;
    ///
    /// let a: Quantity = "1Gi".parse()?;
    /// let b: Quantity = "512Mi".parse()?;
    /// assert_eq!(a.checked_add(b).map(|q| q.to_string()), Some("1536Mi".to_owned()));
    /// assert_eq!(Quantity::MAX.checked_add(a), None);
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        // Both magnitudes are at most MAX_NANOS, far below i128::MAX / 2: the sum cannot overflow.
        self.combine(self.nanos.checked_add(other.nanos)?, other)
    }

    /// The exact difference, or `None` when its magnitude is beyond 2⁶³−1 units.
    ///
    /// The difference keeps `self`'s format, unless `self` is zero, when it takes `other`'s (as
    /// Kubernetes' `Quantity.Sub` does).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::quantity::Quantity;
    ///
    /// let a: Quantity = "1".parse()?;
    /// let b: Quantity = "250m".parse()?;
    /// assert_eq!(a.checked_sub(b).map(|q| q.to_string()), Some("750m".to_owned()));
    /// assert_eq!(Quantity::MIN.checked_sub(a), None);
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.combine(self.nanos.checked_sub(other.nanos)?, other)
    }

    /// The sum, saturating at [`Quantity::MAX`] or [`Quantity::MIN`]; formats as
    /// [`checked_add`](Quantity::checked_add).
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        self.combine_saturating(self.nanos.saturating_add(other.nanos), other)
    }

    /// The difference, saturating at [`Quantity::MAX`] or [`Quantity::MIN`]; formats as
    /// [`checked_sub`](Quantity::checked_sub).
    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        self.combine_saturating(self.nanos.saturating_sub(other.nanos), other)
    }

    /// The format of `self op other`: Kubernetes keeps the receiver's format unless it is zero.
    fn result_format(self, other: Quantity) -> Format {
        if self.is_zero() {
            other.format
        } else {
            self.format
        }
    }

    fn combine(self, nanos: i128, other: Quantity) -> Option<Quantity> {
        (-MAX_NANOS..=MAX_NANOS).contains(&nanos).then(|| Quantity {
            nanos,
            format: self.result_format(other),
        })
    }

    fn combine_saturating(self, nanos: i128, other: Quantity) -> Quantity {
        Quantity::from_nanos(nanos, self.result_format(other))
    }

    /// Writes the canonical form (see the module documentation).
    fn write_canonical(&self, out: &mut impl fmt::Write) -> fmt::Result {
        if self.nanos == 0 {
            return out.write_str("0");
        }
        if self.nanos < 0 {
            out.write_char('-')?;
        }
        let magnitude = self.nanos.unsigned_abs();
        let per_unit = NANOS_PER_UNIT.unsigned_abs();
        if self.format == Format::BinarySI
            && magnitude >= 1024 * per_unit
            && magnitude.is_multiple_of(per_unit)
        {
            let mut units = magnitude / per_unit;
            let mut power = 0;
            while units >= 1024 && units.is_multiple_of(1024) && power < BINARY_SUFFIXES.len() {
                units /= 1024;
                power += 1;
            }
            let suffix = match power.checked_sub(1) {
                None => "",
                Some(index) => BINARY_SUFFIXES.get(index).copied().unwrap_or_default(),
            };
            return write!(out, "{units}{suffix}");
        }
        // Decimal: drop the trailing zeros, then lower the exponent to a multiple of three.
        let mut mantissa = magnitude;
        let mut exponent: i32 = -9;
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        // The exponent went up by as many tens as were removed, so this puts back at most those.
        for _ in 0..exponent.rem_euclid(3) {
            mantissa *= 10;
            exponent -= 1;
        }
        write!(out, "{mantissa}")?;
        match (self.format, decimal_si_suffix(exponent)) {
            (Format::DecimalExponent, _) if exponent == 0 => Ok(()),
            (Format::DecimalExponent, _) | (_, None) => write!(out, "e{exponent}"),
            (_, Some(suffix)) => out.write_str(suffix),
        }
    }
}

/// The binary SI suffixes, for 1024¹ to 1024⁶.
const BINARY_SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// The decimal SI suffix of 10^`exponent`, if there is one.
fn decimal_si_suffix(exponent: i32) -> Option<&'static str> {
    Some(match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return None,
    })
}

/// `value / divisor` rounded away from zero; `divisor` is positive.
const fn divide_away_from_zero(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    if value % divisor == 0 {
        quotient
    } else if value > 0 {
        quotient + 1
    } else {
        quotient - 1
    }
}

/// What a suffix multiplies the number by.
#[derive(Clone, Copy, Debug)]
enum Multiplier {
    /// 10^exponent, with |exponent| ≤ 2³¹−1.
    Decimal(i64),
    /// 2^shift, shift one of 10, 20, …, 60.
    Binary(u32),
}

/// The pieces of a quantity's text, as Kubernetes' `parseQuantityString` splits them.
#[derive(Debug)]
struct Parts<'a> {
    negative: bool,
    /// The digits before the point (possibly none).
    integer: &'a [u8],
    /// The digits after the point (possibly none, also when there is no point).
    fraction: &'a [u8],
    /// Everything after the number: suffix letters, then an optional sign and digits.
    suffix: &'a [u8],
}

impl<'a> Parts<'a> {
    fn split(text: &'a [u8]) -> Result<Parts<'a>, ParseQuantityError> {
        let (negative, rest) = match text {
            [b'-', rest @ ..] => (true, rest),
            [b'+', rest @ ..] => (false, rest),
            _ => (false, text),
        };
        let (integer, rest) = split_digits(rest);
        let (fraction, suffix) = match rest {
            [b'.', rest @ ..] => split_digits(rest),
            _ => (&[][..], rest),
        };
        let letters = suffix
            .iter()
            .take_while(|c| SUFFIX_LETTERS.contains(c))
            .count();
        let after_letters = suffix.get(letters..).unwrap_or_default();
        let digits = match after_letters {
            [b'+' | b'-', digits @ ..] => digits,
            _ => after_letters,
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ParseQuantityError::Format);
        }
        Ok(Parts {
            negative,
            integer,
            fraction,
            suffix,
        })
    }
}

/// Splits `text` after its leading ASCII digits.
fn split_digits(text: &[u8]) -> (&[u8], &[u8]) {
    let count = text.iter().take_while(|c| c.is_ascii_digit()).count();
    text.split_at_checked(count).unwrap_or((text, &[]))
}

/// The multiplier and format of a suffix, as Kubernetes' suffixer interprets it.
fn interpret_suffix(suffix: &[u8]) -> Result<(Multiplier, Format), ParseQuantityError> {
    use Format::{BinarySI, DecimalExponent, DecimalSI};
    use Multiplier::{Binary, Decimal};
    Ok(match suffix {
        b"" => (Decimal(0), DecimalSI),
        b"n" => (Decimal(-9), DecimalSI),
        b"u" => (Decimal(-6), DecimalSI),
        b"m" => (Decimal(-3), DecimalSI),
        b"k" => (Decimal(3), DecimalSI),
        b"M" => (Decimal(6), DecimalSI),
        b"G" => (Decimal(9), DecimalSI),
        b"T" => (Decimal(12), DecimalSI),
        b"P" => (Decimal(15), DecimalSI),
        b"E" => (Decimal(18), DecimalSI),
        b"Ki" => (Binary(10), BinarySI),
        b"Mi" => (Binary(20), BinarySI),
        b"Gi" => (Binary(30), BinarySI),
        b"Ti" => (Binary(40), BinarySI),
        b"Pi" => (Binary(50), BinarySI),
        b"Ei" => (Binary(60), BinarySI),
        [b'e' | b'E', exponent @ ..] if !exponent.is_empty() => {
            // Go's strconv.ParseInt(_, 10, 64): an optional sign and at least one digit, as
            // Rust's i64 parser; then Kubernetes bounds the exponent to what an int32 scale holds.
            let exponent = std::str::from_utf8(exponent)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .filter(|exponent| (-MAX_EXPONENT..=MAX_EXPONENT).contains(exponent))
                .ok_or(ParseQuantityError::Suffix)?;
            (Decimal(exponent), DecimalExponent)
        }
        _ => return Err(ParseQuantityError::Suffix),
    })
}

/// The magnitude in nano-units of `integer.fraction × multiplier`, rounded away from zero to a
/// whole nano-unit and capped at [`MAX_NANOS`]. `integer` and `fraction` are ASCII digits.
///
/// The value is `D × 10^scale × 2^shift` nano-units, where `D` is the integer of all the digits.
/// Binary multipliers are applied to the digit string itself, so that what is left is a decimal
/// point to place: the whole part is the first digits, and any non-zero digit after them rounds
/// up. Nothing larger than the cap is ever built, however large the exponent.
fn magnitude_nanos(integer: &[u8], fraction: &[u8], multiplier: Multiplier) -> i128 {
    let mut digits: Vec<u8> = integer
        .iter()
        .chain(fraction)
        .skip_while(|&&c| c == b'0')
        .map(|&c| c.wrapping_sub(b'0'))
        .collect();
    if digits.is_empty() {
        return 0;
    }
    let fraction_len = fraction.len() as i128;
    let (scale, shift) = match multiplier {
        Multiplier::Decimal(exponent) => (i128::from(exponent) - fraction_len + 9, 0),
        Multiplier::Binary(shift) => (9 - fraction_len, shift),
    };
    // The value is at least 10^(digits - 1 + scale); a power of two only makes it larger.
    if digits.len() as i128 + scale > MAX_NANOS_DIGITS {
        return MAX_NANOS;
    }
    if shift > 0 {
        multiply_digits(&mut digits, 1u64 << shift);
    }
    let whole_digits = digits.len() as i128 + scale;
    if whole_digits > MAX_NANOS_DIGITS {
        return MAX_NANOS;
    }
    if whole_digits <= 0 {
        // Below one nano-unit, and not zero (the first digit is not 0): round up to one.
        return 1;
    }
    // Now 0 < whole_digits ≤ 28: the whole part is below 10^28 and fits an i128.
    let whole_len = usize::try_from(whole_digits).unwrap_or(usize::MAX);
    let (whole, rest) = digits
        .split_at_checked(whole_len)
        .unwrap_or((&digits[..], &[]));
    let mut nanos = whole.iter().fold(0i128, |acc, &d| {
        acc.saturating_mul(10).saturating_add(i128::from(d))
    });
    for _ in whole.len()..whole_len {
        nanos = nanos.saturating_mul(10);
    }
    if rest.iter().any(|&d| d != 0) {
        nanos = nanos.saturating_add(1);
    }
    nanos.min(MAX_NANOS)
}

/// Multiplies the decimal number `digits` (most significant first, values 0–9) by `factor`.
fn multiply_digits(digits: &mut Vec<u8>, factor: u64) {
    let factor = u128::from(factor);
    let mut carry: u128 = 0;
    for digit in digits.iter_mut().rev() {
        // digit × factor + carry < 10 × factor + carry, and carry stays below 10 × factor / 9.
        let product = u128::from(*digit) * factor + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    let mut head = Vec::new();
    while carry > 0 {
        head.push((carry % 10) as u8);
        carry /= 10;
    }
    head.reverse();
    digits.splice(0..0, head);
}

impl Default for Quantity {
    /// [`Quantity::ZERO`].
    fn default() -> Quantity {
        Quantity::ZERO
    }
}

impl FromStr for Quantity {
    type Err = ParseQuantityError;

    /// [`Quantity::parse`].
    fn from_str(text: &str) -> Result<Quantity, ParseQuantityError> {
        Quantity::parse(text)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form, as Kubernetes' `Quantity.String()` (see the module documentation).
    /// Width and alignment are honoured: `format!("{q:>6}")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.write_canonical(&mut text)?;
        f.pad(&text)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quantity")
            .field("value", &format_args!("{self}"))
            .field("nanos", &self.nanos)
            .field("format", &self.format)
            .finish()
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Add for Quantity {
    type Output = Quantity;

    /// [`Quantity::saturating_add`]: saturates at [`Quantity::MAX`] or [`Quantity::MIN`] instead of
    /// overflowing; keeps the left operand's format unless the left operand is zero.
    fn add(self, other: Quantity) -> Quantity {
        self.saturating_add(other)
    }
}

impl Sub for Quantity {
    type Output = Quantity;

    /// [`Quantity::saturating_sub`]: saturates at [`Quantity::MAX`] or [`Quantity::MIN`] instead of
    /// overflowing; keeps the left operand's format unless the left operand is zero.
    fn sub(self, other: Quantity) -> Quantity {
        self.saturating_sub(other)
    }
}

impl AddAssign for Quantity {
    /// `*self = *self + other` (saturating).
    fn add_assign(&mut self, other: Quantity) {
        *self = self.saturating_add(other);
    }
}

impl SubAssign for Quantity {
    /// `*self = *self - other` (saturating).
    fn sub_assign(&mut self, other: Quantity) {
        *self = self.saturating_sub(other);
    }
}

impl Neg for Quantity {
    type Output = Quantity;

    /// The opposite value, in the same format. Exact: the bounds are symmetric.
    fn neg(self) -> Quantity {
        Quantity {
            nanos: -self.nanos,
            format: self.format,
        }
    }
}

impl Sum for Quantity {
    /// The total, computed exactly and then clamped to [`Quantity::MIN`]..=[`Quantity::MAX`]
    /// once, so that the order of the terms does not matter (short of some 10¹⁰ terms at the
    /// bounds). The format follows [`Quantity::checked_add`] term by term: the first non-zero
    /// partial total's left operand decides it.
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        let (nanos, format) = iter.fold((0i128, Quantity::ZERO.format), |(nanos, format), term| {
            let format = if nanos == 0 { term.format } else { format };
            (nanos.saturating_add(term.nanos), format)
        });
        Quantity::from_nanos(nanos, format)
    }
}

impl<'a> Sum<&'a Quantity> for Quantity {
    /// As `Sum<Quantity>`.
    fn sum<I: Iterator<Item = &'a Quantity>>(iter: I) -> Quantity {
        iter.copied().sum()
    }
}

impl Serialize for Quantity {
    /// The canonical string.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Accepts what Kubernetes' `UnmarshalJSON` accepts: a string (leading and trailing
    /// whitespace ignored), a number, or null (zero). Numbers arrive through serde's data model,
    /// so a fractional one has already been read as an `f64` (its shortest decimal form is parsed).
    /// Needs a self-describing format (JSON, YAML).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// Serde visitor for [`Quantity`].
struct QuantityVisitor;

impl QuantityVisitor {
    fn parse<E: de::Error>(text: &str) -> Result<Quantity, E> {
        Quantity::parse(text.trim()).map_err(E::custom)
    }
}

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity (a string such as \"250m\" or \"1Gi\", or a number)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Quantity, E> {
        QuantityVisitor::parse(text)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Quantity, E> {
        match std::str::from_utf8(bytes) {
            Ok(text) => QuantityVisitor::parse(text),
            Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(bytes), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Quantity, E> {
        QuantityVisitor::parse(&value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Quantity, E> {
        QuantityVisitor::parse(&value.to_string())
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Quantity, E> {
        QuantityVisitor::parse(&value.to_string())
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Quantity, E> {
        QuantityVisitor::parse(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Quantity, E> {
        if !value.is_finite() {
            return Err(E::invalid_value(de::Unexpected::Float(value), &self));
        }
        // Rust prints the shortest decimal that reads back as `value`, never in exponent form.
        QuantityVisitor::parse(&value.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Quantity, E> {
        Ok(Quantity::ZERO)
    }
}

impl TryFrom<&K8sQuantity> for Quantity {
    type Error = ParseQuantityError;

    /// Parses the string as Kubernetes decodes it from JSON: leading and trailing whitespace is
    /// ignored, the rest is [`Quantity::parse`]d.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::k8s::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    /// use orchestra_core::quantity::Quantity;
    ///
    /// let q = Quantity::try_from(&K8sQuantity("1.5Gi".to_owned()))?;
    /// assert_eq!(K8sQuantity::from(&q), K8sQuantity("1536Mi".to_owned()));
    /// # Ok::<(), orchestra_core::quantity::ParseQuantityError>(())
    /// ```
    fn try_from(quantity: &K8sQuantity) -> Result<Quantity, ParseQuantityError> {
        Quantity::parse(quantity.0.trim())
    }
}

impl From<&Quantity> for K8sQuantity {
    /// The canonical string.
    fn from(quantity: &Quantity) -> K8sQuantity {
        K8sQuantity(quantity.to_string())
    }
}

impl From<Quantity> for K8sQuantity {
    /// The canonical string.
    fn from(quantity: Quantity) -> K8sQuantity {
        K8sQuantity(quantity.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use num_bigint::BigInt;
    use proptest::prelude::*;

    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// (input, canonical output) pairs from Kubernetes' quantity_test.go (TestQuantityParse,
    /// TestQuantityParseEmit, TestQuantityString's canonical and alternate spellings,
    /// TestParseQuantity, TestQuantityNeg), where the value is within the cap.
    const CANONICAL: &[(&str, &str)] = &[
        // TestQuantityParse: zeros.
        ("0", "0"),
        ("0n", "0"),
        ("0u", "0"),
        ("0m", "0"),
        ("0Ki", "0"),
        ("0k", "0"),
        ("0Mi", "0"),
        ("0M", "0"),
        ("0Gi", "0"),
        ("0G", "0"),
        ("0Ti", "0"),
        ("0T", "0"),
        ("1", "1"),
        // Binary suffixes.
        ("1Ki", "1Ki"),
        ("8Ki", "8Ki"),
        ("7Mi", "7Mi"),
        ("6Gi", "6Gi"),
        ("5Ti", "5Ti"),
        ("4Pi", "4Pi"),
        ("3Ei", "3Ei"),
        ("10Ti", "10Ti"),
        ("100Ti", "100Ti"),
        // Decimal suffixes.
        ("5n", "5n"),
        ("4u", "4u"),
        ("3m", "3m"),
        ("9", "9"),
        ("8k", "8k"),
        ("50k", "50k"),
        ("7M", "7M"),
        ("6G", "6G"),
        ("5T", "5T"),
        ("40T", "40T"),
        ("300T", "300T"),
        ("2P", "2P"),
        ("1E", "1E"),
        // Decimal exponents.
        ("1E-3", "1e-3"),
        ("1e3", "1e3"),
        ("1E6", "1e6"),
        ("1e9", "1e9"),
        ("1E12", "1e12"),
        ("1e15", "1e15"),
        ("1E18", "1e18"),
        ("1e14", "100e12"),
        ("1e13", "10e12"),
        ("100.035k", "100035"),
        // Things that look like floating point.
        ("0.001", "1m"),
        ("0.0005k", "500m"),
        ("0.005", "5m"),
        ("0.05", "50m"),
        ("0.5", "500m"),
        ("0.00050k", "500m"),
        ("0.00500", "5m"),
        ("0.05000", "50m"),
        ("0.50000", "500m"),
        ("0.5e0", "500e-3"),
        ("0.5e-1", "50e-3"),
        ("0.5e-2", "5e-3"),
        ("10.035M", "10035k"),
        ("1.2e3", "1200"),
        ("1.3E+6", "1300e3"),
        ("1.40e9", "1400e6"),
        ("1.53E12", "1530e9"),
        ("1.6e15", "1600e12"),
        ("1.7E18", "1700e15"),
        ("9.01", "9010m"),
        ("8.1k", "8100"),
        ("7.123456M", "7123456"),
        ("6.987654321G", "6987654321"),
        ("5.444T", "5444G"),
        ("40.1T", "40100G"),
        ("300.2T", "300200G"),
        ("2.5P", "2500T"),
        ("1.01E", "1010P"),
        // Things that saturate or round.
        ("3.001n", "4n"),
        ("1.1E-9", "2e-9"),
        ("0.0000000001", "1n"),
        ("0.0000000005", "1n"),
        ("0.00000000050", "1n"),
        ("0.5e-9", "1e-9"),
        ("0.9n", "1n"),
        ("0.00000012345", "124n"),
        ("0.00000012354", "124n"),
        ("9Ei", "9223372036854775807"),
        ("9223372036854775807Ki", "9223372036854775807"),
        // Fractional binary quantities.
        ("100.035Ki", "102435840m"),
        ("0.5Mi", "512Ki"),
        ("0.05Gi", "53687091200m"),
        ("0.025Ti", "27487790694400m"),
        // Things written by trolls.
        ("0.000000000001Ki", "2n"),
        (".001", "1m"),
        (".0001k", "100m"),
        ("1.", "1"),
        ("1.G", "1G"),
        // TestQuantityParseEmit.
        ("1Mi", "1Mi"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        // TestQuantityString: canonical spellings and their alternates.
        ("307200Ki", "300Mi"),
        ("6Ki", "6Ki"),
        ("1025024Mi", "1001Gi"),
        ("1024Gi", "1Ti"),
        ("5000m", "5"),
        ("1000M", "1G"),
        ("0.001T", "1G"),
        ("1000u", "1m"),
        ("80m", "80m"),
        ("1.08", "1080m"),
        ("1080000000n", "1080m"),
        ("300M", "300M"),
        ("1T", "1T"),
        ("1234567M", "1234567M"),
        ("1234567m", "1234567m"),
        ("3k", "3k"),
        ("1025", "1025"),
        (".001e12", "1e9"),
        ("0.001e0", "1e-3"),
        ("1000e-12", "1e-9"),
        ("80e-3", "80e-3"),
        ("300e6", "300e6"),
        ("3e3", "3e3"),
        ("00", "0"),
        ("80n", "80n"),
        ("1080n", "1080n"),
        ("1u", "1u"),
        ("80u", "80u"),
        ("1080u", "1080u"),
        // TestParseQuantity (canonical column).
        ("999999999999999999", "999999999999999999"),
        ("999999999999999999.1", "999999999999999999100m"),
        ("-999999999999999999.1", "-999999999999999999100m"),
        ("1000000000000000000", "1E"),
        ("-1000000000000000000.0", "-1E"),
        ("1.0E", "1E"),
        ("1.0000000000000000001E", "1000000000000000000100m"),
        ("-1.000000000000000001E", "-1000000000000000001"),
        ("9223372036854775806.1", "9223372036854775806100m"),
        ("9223372036854775807", "9223372036854775807"),
        ("9223372036854775807000m", "9223372036854775807"),
        // TestQuantityNeg.
        ("-9.01", "-9010m"),
    ];

    #[test]
    fn canonical_table_from_kubernetes() {
        assert!(CANONICAL.len() >= 40);
        for &(input, expected) in CANONICAL {
            let parsed = q(input);
            assert_eq!(parsed.to_string(), expected, "{input}");
            // The canonical spelling is canonical.
            assert_eq!(q(expected).to_string(), expected, "{expected}");
            assert_eq!(q(expected), parsed, "{expected}");
        }
    }

    #[test]
    fn negated_table_prints_with_a_minus() {
        // Kubernetes' tests run the whole table again with "-" and "+" in front.
        for &(input, expected) in CANONICAL {
            let positive = q(input);
            if positive.is_zero() || input.starts_with('-') {
                continue;
            }
            assert_eq!(q(&format!("-{input}")).to_string(), format!("-{expected}"));
            assert_eq!(q(&format!("-{input}")), -positive);
            assert_eq!(q(&format!("+{input}")).to_string(), expected);
        }
    }

    #[test]
    fn parse_rounds_away_from_zero_to_the_nano() {
        assert_eq!(q("0.1n").as_nanos(), 1);
        assert_eq!(q("-0.1n").as_nanos(), -1);
        assert_eq!(q("0.9n").as_nanos(), 1);
        assert_eq!(q("1.000000001").as_nanos(), 1_000_000_001);
        assert_eq!(q("1.0000000001").as_nanos(), 1_000_000_001);
        assert_eq!(q("-1.0000000001").as_nanos(), -1_000_000_001);
        assert_eq!(q("1.0000000000").as_nanos(), 1_000_000_000);
        // 9.5000000001Gi is exactly 10200547328.1073741824.
        assert_eq!(q("9.5000000001Gi").as_nanos(), 10_200_547_328_107_374_183);
    }

    #[test]
    fn parse_formats() {
        assert_eq!(q("0").format(), Format::DecimalSI);
        assert_eq!(q("0Ki").format(), Format::BinarySI);
        assert_eq!(q("1Ki").format(), Format::BinarySI);
        assert_eq!(q("0.5Ki").format(), Format::BinarySI);
        assert_eq!(q("1e3").format(), Format::DecimalExponent);
        assert_eq!(q("1E").format(), Format::DecimalSI);
        // A non-zero binary quantity below one unit becomes decimal SI, sign or not.
        assert_eq!(q("0.000000000001Ki").format(), Format::DecimalSI);
        assert_eq!(q("-0.0001Ki").format(), Format::DecimalSI);
        assert_eq!(q("0.0009765625Ki").format(), Format::BinarySI);
    }

    #[test]
    fn invalid_text_is_rejected() {
        use ParseQuantityError::{Format as F, Suffix as S};
        let cases = [
            ("", F),
            ("abc", F),
            ("aoeu", F),
            ("1.2.3", F),
            ("1.1.M", F),
            ("1+1.0M", F),
            ("0.1am", F),
            (" 1", F),
            ("1 ", F),
            ("1e3e", F),
            ("1e+-3", F),
            ("1Ki ", F),
            ("1µ", F),
            ("1K", S),
            ("1ki", S),
            ("1e", S),
            ("e", S),
            ("0.1mi", S),
            (".5i", S),
            ("1i", S),
            ("-3.01i", S),
            ("-3.01e-", S),
            ("1e+", S),
            ("1Ee3", S),
            ("1Mi3", S),
            ("1e4294967297", S),
            ("1E2147483648", S),
            ("1E-2147483648", S),
            ("1e9223372036854775808", S),
        ];
        for (input, expected) in cases {
            assert_eq!(Quantity::parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn error_messages_are_kubernetes_messages() {
        assert_eq!(
            ParseQuantityError::Format.to_string(),
            "quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            ParseQuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
        assert_eq!(
            ParseQuantityError::Numeric.to_string(),
            "unable to parse numeric part of quantity"
        );
    }

    #[test]
    fn numbers_without_digits_follow_kubernetes() {
        for zero in [
            "-", "+", ".", "-.", "+.", "k", "-k", "n", "E", "m", "Ki", "Mi", "Gi", "Ti", ".Ti",
            "e5", "e-9", "-E-9",
        ] {
            assert_eq!(Quantity::parse(zero), Ok(Quantity::ZERO), "{zero:?}");
        }
        assert_eq!(q("Ki").format(), Format::BinarySI);
        assert_eq!(q("e5").format(), Format::DecimalExponent);
        for numeric in ["Pi", "Ei", "-Pi", ".Ei", "e-10", "-.E-10"] {
            assert_eq!(
                Quantity::parse(numeric),
                Err(ParseQuantityError::Numeric),
                "{numeric:?}"
            );
        }
        // With a digit, the same suffixes are fine.
        assert_eq!(q("0Pi"), Quantity::ZERO);
        assert_eq!(q("0e-10"), Quantity::ZERO);
    }

    #[test]
    fn huge_exponents_and_long_numbers_cap_or_round() {
        assert_eq!(q("1e1000000"), Quantity::MAX);
        assert_eq!(q("-1e1000000"), Quantity::MIN);
        assert_eq!(q("1e2147483647"), Quantity::MAX);
        assert_eq!(q("1e-1000000").as_nanos(), 1);
        assert_eq!(q("-1e-2147483647").as_nanos(), -1);
        assert_eq!(q("0e2147483647"), Quantity::ZERO);
        assert_eq!(q("0.000e-2147483647"), Quantity::ZERO);
        assert_eq!(q("-.484785E-7466").as_units_ceil(), -1);
        // A long number: a million fraction digits, then a million integer digits.
        let tiny = format!("0.{}1", "0".repeat(1_000_000));
        assert_eq!(q(&tiny).as_nanos(), 1);
        let tiny_binary = format!("0.{}1Ei", "0".repeat(1_000_000));
        assert_eq!(q(&tiny_binary).as_nanos(), 1);
        let huge = format!("1{}", "0".repeat(1_000_000));
        assert_eq!(q(&huge), Quantity::MAX);
        let exact = format!("1.5{}e{}", "0".repeat(1_000_000), 1_000_000);
        assert_eq!(q(&exact), Quantity::MAX);
        let leading_zeros = format!("{}15e-1000001", "0".repeat(1_000_000));
        assert_eq!(q(&leading_zeros).as_nanos(), 1);
        let almost_whole = format!("1.{}1", "0".repeat(1_000_000));
        assert_eq!(q(&almost_whole).as_nanos(), 1_000_000_001);
    }

    #[test]
    fn every_format_is_capped_at_max_allowed() {
        assert_eq!(q("10E").as_nanos(), i128::from(i64::MAX) * 1_000_000_000);
        assert_eq!(q("10E").to_string(), "9223372036854775807");
        assert_eq!(q("-10E").to_string(), "-9223372036854775807");
        assert_eq!(q("8Ei"), Quantity::MAX);
        assert_eq!(q("9223372036854775807.000000001"), Quantity::MAX);
        assert_eq!(q("9223372036854775806.999999999").as_nanos(), MAX_NANOS - 1);
        assert_eq!(q("1e19"), Quantity::MAX);
        assert_eq!(q("8Ei").format(), Format::BinarySI);
    }

    #[test]
    fn binary_integers_without_a_binary_suffix_print_plain() {
        // Kubernetes' TestBinarySIZeroExponentString: 2000 in BinarySI prints "2000", which then
        // parses as decimal SI and prints "2k". Kept as Kubernetes has it.
        let binary = Quantity::from_units(2000, Format::BinarySI);
        assert_eq!(binary.to_string(), "2000");
        assert_eq!((-binary).to_string(), "-2000");
        let reparsed = q(&binary.to_string());
        assert_eq!(reparsed, binary);
        assert_eq!(reparsed.to_string(), "2k");
        // Below 1024 and above -1024, binary prints as decimal SI.
        assert_eq!(
            Quantity::from_units(1000, Format::BinarySI).to_string(),
            "1k"
        );
        assert_eq!(
            Quantity::from_units(-1024, Format::BinarySI).to_string(),
            "-1Ki"
        );
        assert_eq!(
            Quantity::from_milli(500)
                .with_format(Format::BinarySI)
                .to_string(),
            "500m"
        );
        assert_eq!(q("1.0001Ki").to_string(), "1024102400u");
        // TestMilliNewSet: 1024m in binary prints in decimal SI.
        assert_eq!(
            Quantity::from_milli(1024)
                .with_format(Format::BinarySI)
                .to_string(),
            "1024m"
        );
    }

    #[test]
    fn arithmetic_keeps_the_left_format_unless_the_left_is_zero() {
        // TestAdd, TestSub, TestQuantityAddZeroPreservesSuffix, TestQuantitySubZeroPreservesSuffix.
        let ten_binary = Quantity::from_units(10, Format::BinarySI);
        let one_decimal = Quantity::from_units(1, Format::DecimalSI);
        assert_eq!((ten_binary + one_decimal).format(), Format::BinarySI);
        assert_eq!((one_decimal + ten_binary).format(), Format::DecimalSI);
        assert_eq!(
            ten_binary - one_decimal,
            Quantity::from_units(9, Format::DecimalSI)
        );
        for text in ["100m", "1Gi"] {
            let value = q(text);
            assert_eq!((value + Quantity::ZERO).to_string(), text);
            assert_eq!((Quantity::ZERO + value).to_string(), text);
            assert_eq!((value - Quantity::ZERO).to_string(), text);
            assert_eq!((Quantity::ZERO - value).to_string(), format!("-{text}"));
        }
        assert_eq!((q("1Gi") - q("1Gi")).format(), Format::BinarySI);
        let mut total = Quantity::ZERO;
        total += q("1Gi");
        total += q("512Mi");
        total -= q("1Mi");
        assert_eq!(total.to_string(), "1535Mi");
        assert_eq!((-q("1.5Gi")).to_string(), "-1536Mi");
    }

    #[test]
    fn checked_and_saturating_arithmetic_at_the_bounds() {
        let one = Quantity::from_units(1, Format::DecimalSI);
        let nano = Quantity::from_nanos(1, Format::DecimalSI);
        assert_eq!(Quantity::MAX.checked_add(nano), None);
        assert_eq!(Quantity::MAX.checked_sub(-nano), None);
        assert_eq!(Quantity::MIN.checked_sub(nano), None);
        assert_eq!(
            Quantity::MAX.checked_add(Quantity::MIN),
            Some(Quantity::ZERO)
        );
        assert_eq!(Quantity::MAX + one, Quantity::MAX);
        assert_eq!(Quantity::MIN - one, Quantity::MIN);
        assert_eq!(Quantity::MAX - Quantity::MIN, Quantity::MAX);
        assert_eq!(Quantity::MIN + Quantity::MIN, Quantity::MIN);
        assert_eq!(-Quantity::MIN, Quantity::MAX);
        assert_eq!((Quantity::MAX - one).checked_add(one), Some(Quantity::MAX));
    }

    #[test]
    fn accessors_round_away_from_zero() {
        // Kubernetes' TestNegativeValueRoundsAwayFromZero: (input, Value, MilliValue).
        let cases: [(&str, i128, i128); 13] = [
            ("-.484785E-7466", -1, -1),
            (".484785E-7466", 1, 1),
            ("-.484785E-1", -1, -49),
            (".484785E-1", 1, 49),
            ("-0.0005", -1, -1),
            ("0.0005", 1, 1),
            ("-1500m", -2, -1500),
            ("1500m", 2, 1500),
            ("-9.5000000001Gi", -10_200_547_329, -10_200_547_328_108),
            ("9.5000000001Gi", 10_200_547_329, 10_200_547_328_108),
            ("-1", -1, -1000),
            ("1", 1, 1000),
            ("0", 0, 0),
        ];
        for (input, units, milli) in cases {
            assert_eq!(q(input).as_units_ceil(), units, "{input}");
            assert_eq!(q(input).as_milli_ceil(), milli, "{input}");
        }
        assert_eq!(Quantity::MAX.as_units_ceil(), i128::from(i64::MAX));
        assert_eq!(Quantity::MAX.as_milli_ceil(), i128::from(i64::MAX) * 1000);
    }

    #[test]
    fn constructors() {
        // TestNewSet and TestMilliNewSet.
        assert_eq!(Quantity::from_units(1, Format::DecimalSI).to_string(), "1");
        assert_eq!(
            Quantity::from_units(1000, Format::DecimalSI).to_string(),
            "1k"
        );
        assert_eq!(
            Quantity::from_units(1_234_000, Format::DecimalSI).to_string(),
            "1234k"
        );
        assert_eq!(
            Quantity::from_units(1024, Format::BinarySI).to_string(),
            "1Ki"
        );
        assert_eq!(
            Quantity::from_units(1_000_000, Format::DecimalExponent).to_string(),
            "1e6"
        );
        assert_eq!(
            Quantity::from_units(1024 * 1024, Format::BinarySI).to_string(),
            "1Mi"
        );
        assert_eq!(Quantity::from_milli(1).to_string(), "1m");
        assert_eq!(Quantity::from_milli(1000).to_string(), "1");
        assert_eq!(Quantity::from_milli(1_234_000).to_string(), "1234");
        assert_eq!(
            Quantity::from_milli(1_024_000)
                .with_format(Format::BinarySI)
                .to_string(),
            "1Ki"
        );
        assert_eq!(
            Quantity::from_milli(1_000_000)
                .with_format(Format::DecimalExponent)
                .to_string(),
            "1e3"
        );
        assert_eq!(
            Quantity::from_units(i64::MIN, Format::DecimalSI),
            Quantity::MIN
        );
        assert_eq!(
            Quantity::from_units(i64::MAX, Format::BinarySI),
            Quantity::MAX
        );
        assert_eq!(
            Quantity::from_nanos(i128::MIN, Format::DecimalSI),
            Quantity::MIN
        );
        assert_eq!(Quantity::from_nanos(-5, Format::BinarySI).as_nanos(), -5);
        assert_eq!(Quantity::default(), Quantity::ZERO);
        assert_eq!(Format::default(), Format::DecimalSI);
        assert_eq!(Quantity::ZERO.to_string(), "0");
        assert_eq!(q("-5").signum(), -1);
        assert_eq!(q("0").signum(), 0);
        assert_eq!(q("1n").signum(), 1);
        assert!(q("0Ki").is_zero());
    }

    #[test]
    fn equality_order_and_hash_ignore_the_format() {
        // TestQuantityCmp.
        assert!(q("100m") > q("50m"));
        assert!(q("50m") < q("100m"));
        assert!(q("10000T") > q("100Gi"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1Ki"), q("1.024k"));
        assert_eq!(q("1e3"), q("1k"));
        let set: HashSet<Quantity> = ["1Ki", "1024", "1024000m", "1.024e3", "1Mi"]
            .into_iter()
            .map(q)
            .collect();
        assert_eq!(set.len(), 2);
        let mut sorted: Vec<Quantity> = ["1Gi", "-1", "500m", "1G", "0"]
            .into_iter()
            .map(q)
            .collect();
        sorted.sort();
        let texts: Vec<String> = sorted.iter().map(Quantity::to_string).collect();
        assert_eq!(texts, ["-1", "0", "500m", "1G", "1Gi"]);
    }

    #[test]
    fn sums() {
        let parts = [q("100m"), q("250m"), q("0.15")];
        assert_eq!(parts.iter().sum::<Quantity>().to_string(), "500m");
        assert_eq!(parts.into_iter().sum::<Quantity>().to_string(), "500m");
        assert_eq!(
            std::iter::empty::<Quantity>().sum::<Quantity>(),
            Quantity::ZERO
        );
        // Zero first: the total takes the first non-zero term's format.
        let memory = [q("0"), q("1Gi"), q("1000")];
        assert_eq!(memory.iter().sum::<Quantity>().format(), Format::BinarySI);
        // Exact, then clamped once: the order of the terms does not matter.
        let terms = [Quantity::MAX, Quantity::MAX, Quantity::MIN];
        assert_eq!(terms.iter().sum::<Quantity>(), Quantity::MAX);
        let terms = [Quantity::MAX, q("1"), q("-1")];
        assert_eq!(terms.iter().sum::<Quantity>(), Quantity::MAX);
        let terms = [q("1"), Quantity::MAX, q("-2")];
        assert_eq!(terms.iter().sum::<Quantity>(), Quantity::MAX - q("1"));
    }

    #[test]
    fn display_and_debug() {
        assert_eq!(format!("{:>8}|", q("250m")), "    250m|");
        assert_eq!(format!("{:<6}|", q("1Gi")), "1Gi   |");
        let debug = format!("{:?}", q("1.5"));
        assert!(
            debug.contains("1500m") && debug.contains("DecimalSI"),
            "{debug}"
        );
    }

    #[test]
    fn json_like_kubernetes() {
        // Serialize: the canonical string.
        assert_eq!(serde_json::to_string(&q("1.5Gi")).unwrap(), "\"1536Mi\"");
        assert_eq!(serde_json::to_string(&q("0.5")).unwrap(), "\"500m\"");
        // Deserialize: TestJSONWhitespace, numbers, null.
        let cases = [
            (r#"" 1""#, "1"),
            (r#""1 ""#, "1"),
            ("1", "1"),
            (" 1", "1"),
            ("1 ", "1"),
            ("10", "10"),
            ("-1", "-1"),
            (" -1", "-1"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("1e3", "1k"),
            ("-2.5e-10", "-1n"),
            ("18446744073709551615", "9223372036854775807"),
            ("1e300", "9223372036854775807"),
            (r#""1Gi""#, "1Gi"),
            ("null", "0"),
        ];
        for (json, expected) in cases {
            let parsed: Quantity =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(parsed.to_string(), expected, "{json}");
        }
        for bad in [r#""""#, r#""1K""#, r#""abc""#, "true", "[]", "{}"] {
            assert!(serde_json::from_str::<Quantity>(bad).is_err(), "{bad}");
        }
        let error = serde_json::from_str::<Quantity>(r#""1K""#).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unable to parse quantity's suffix"),
            "{error}"
        );
        let optional: Option<Quantity> = serde_json::from_str("null").unwrap();
        assert_eq!(optional, None);
        let list: Vec<Quantity> = serde_json::from_str(r#"["1Ki", 2048, 0.25]"#).unwrap();
        let texts: Vec<String> = list.iter().map(Quantity::to_string).collect();
        assert_eq!(texts, ["1Ki", "2048", "250m"]);
    }

    #[test]
    fn k8s_openapi_conversions() {
        let k8s = K8sQuantity("1.5Gi".to_owned());
        let parsed = Quantity::try_from(&k8s).unwrap();
        assert_eq!(parsed, q("1536Mi"));
        assert_eq!(K8sQuantity::from(&parsed), K8sQuantity("1536Mi".to_owned()));
        assert_eq!(K8sQuantity::from(parsed), K8sQuantity("1536Mi".to_owned()));
        assert_eq!(
            Quantity::try_from(&K8sQuantity(" 100m ".to_owned())),
            Ok(q("100m"))
        );
        assert_eq!(
            Quantity::try_from(&K8sQuantity("1K".to_owned())),
            Err(ParseQuantityError::Suffix)
        );
        assert_eq!(
            Quantity::try_from(&K8sQuantity(String::new())),
            Err(ParseQuantityError::Format)
        );
        // A quantity inside a k8s-openapi object.
        let requirements: k8s_openapi::api::core::v1::ResourceRequirements =
            serde_json::from_str(r#"{"limits": {"cpu": "1.5", "memory": "1Gi"}}"#).unwrap();
        let limits = requirements.limits.unwrap();
        let cpu = Quantity::try_from(&limits["cpu"]).unwrap();
        assert_eq!(cpu.as_milli_ceil(), 1500);
    }

    // ---- Property tests against an exact reference. ----

    /// What a generated suffix multiplies by.
    #[derive(Clone, Debug)]
    enum RefSuffix {
        Decimal(&'static str, i64),
        Binary(&'static str, u32),
        Exponent(String, i64),
    }

    impl RefSuffix {
        fn text(&self) -> &str {
            match self {
                RefSuffix::Decimal(text, _) | RefSuffix::Binary(text, _) => text,
                RefSuffix::Exponent(text, _) => text,
            }
        }
    }

    fn suffix_strategy() -> impl Strategy<Value = RefSuffix> {
        let decimal = prop::sample::select(vec![
            ("", 0),
            ("n", -9),
            ("u", -6),
            ("m", -3),
            ("k", 3),
            ("M", 6),
            ("G", 9),
            ("T", 12),
            ("P", 15),
            ("E", 18),
        ])
        .prop_map(|(text, exponent)| RefSuffix::Decimal(text, exponent));
        let binary = prop::sample::select(vec![
            ("Ki", 10),
            ("Mi", 20),
            ("Gi", 30),
            ("Ti", 40),
            ("Pi", 50),
            ("Ei", 60),
        ])
        .prop_map(|(text, shift)| RefSuffix::Binary(text, shift));
        let exponent = (
            -40i64..40,
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+"]),
        )
            .prop_map(|(exponent, letter, plus)| {
                let sign = if exponent >= 0 { plus } else { "" };
                RefSuffix::Exponent(format!("{letter}{sign}{exponent}"), exponent)
            });
        prop_oneof![decimal, binary, exponent]
    }

    /// A quantity's text and its exact value in nano-units, computed with big integers.
    fn quantity_strategy() -> impl Strategy<Value = (String, BigInt)> {
        (
            prop::sample::select(vec!["", "+", "-"]),
            "[0-9]{0,24}",
            prop::option::of("[0-9]{0,24}"),
            suffix_strategy(),
        )
            .prop_filter("a number needs a digit", |(_, integer, fraction, _)| {
                !integer.is_empty() || fraction.as_ref().is_some_and(|f| !f.is_empty())
            })
            .prop_map(|(sign, integer, fraction, suffix)| {
                let text = match &fraction {
                    Some(fraction) => format!("{sign}{integer}.{fraction}{}", suffix.text()),
                    None => format!("{sign}{integer}{}", suffix.text()),
                };
                let fraction = fraction.unwrap_or_default();
                let nanos = reference_nanos(sign == "-", &integer, &fraction, &suffix);
                (text, nanos)
            })
    }

    fn ten_to(power: i64) -> BigInt {
        BigInt::from(10).pow(u32::try_from(power).unwrap())
    }

    /// The exact value rounded away from zero to a nano-unit and capped, by big-integer division.
    fn reference_nanos(
        negative: bool,
        integer: &str,
        fraction: &str,
        suffix: &RefSuffix,
    ) -> BigInt {
        let digits = format!("0{integer}{fraction}");
        let mut numerator = BigInt::parse_bytes(digits.as_bytes(), 10).unwrap() * ten_to(9);
        let mut denominator = ten_to(i64::try_from(fraction.len()).unwrap());
        match suffix {
            RefSuffix::Decimal(_, exponent) | RefSuffix::Exponent(_, exponent) => {
                if *exponent >= 0 {
                    numerator *= ten_to(*exponent);
                } else {
                    denominator *= ten_to(-exponent);
                }
            }
            RefSuffix::Binary(_, shift) => numerator <<= *shift,
        }
        let quotient = &numerator / &denominator;
        let remainder = &numerator % &denominator;
        let magnitude = if remainder == BigInt::from(0) {
            quotient
        } else {
            quotient + 1
        };
        let magnitude = magnitude.min(BigInt::from(MAX_NANOS));
        if negative { -magnitude } else { magnitude }
    }

    fn clamp(value: BigInt) -> BigInt {
        value.clamp(BigInt::from(-MAX_NANOS), BigInt::from(MAX_NANOS))
    }

    /// Quantities of every shape: anywhere in range, whole units, powers of 1024, round decimals.
    fn any_quantity() -> impl Strategy<Value = Quantity> {
        let format = prop::sample::select(vec![
            Format::DecimalSI,
            Format::BinarySI,
            Format::DecimalExponent,
        ]);
        let nanos = prop_oneof![
            -MAX_NANOS..=MAX_NANOS,
            any::<i64>().prop_map(|units| i128::from(units) * NANOS_PER_UNIT),
            (-2048i128..2048, 0u32..7)
                .prop_map(|(m, power)| m * 1024i128.pow(power) * NANOS_PER_UNIT),
            (-1000i128..1000, 0u32..28).prop_map(|(m, power)| m * 10i128.pow(power)),
            Just(MAX_NANOS),
            Just(-MAX_NANOS),
            Just(0),
        ];
        (nanos, format).prop_map(|(nanos, format)| Quantity::from_nanos(nanos, format))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_and_arithmetic_match_an_exact_reference(
            (a_text, a_ref) in quantity_strategy(),
            (b_text, b_ref) in quantity_strategy(),
        ) {
            let a = Quantity::parse(&a_text).unwrap();
            let b = Quantity::parse(&b_text).unwrap();
            prop_assert_eq!(BigInt::from(a.as_nanos()), a_ref.clone(), "{}", a_text);
            prop_assert_eq!(BigInt::from(b.as_nanos()), b_ref.clone(), "{}", b_text);

            let sum = &a_ref + &b_ref;
            let difference = &a_ref - &b_ref;
            prop_assert_eq!(BigInt::from((a + b).as_nanos()), clamp(sum.clone()));
            prop_assert_eq!(BigInt::from((a - b).as_nanos()), clamp(difference.clone()));
            prop_assert_eq!(
                a.checked_add(b).map(|q| BigInt::from(q.as_nanos())),
                (clamp(sum.clone()) == sum).then_some(sum)
            );
            prop_assert_eq!(
                a.checked_sub(b).map(|q| BigInt::from(q.as_nanos())),
                (clamp(difference.clone()) == difference).then_some(difference)
            );
            prop_assert_eq!(a.cmp(&b), a_ref.cmp(&b_ref));
            prop_assert_eq!(a == b, a_ref == b_ref);
            let expected_format = if a.is_zero() { b.format() } else { a.format() };
            prop_assert_eq!((a + b).format(), expected_format);
            prop_assert_eq!([a, b].iter().sum::<Quantity>(), a + b);
        }

        #[test]
        fn printing_then_parsing_gives_the_quantity_back(quantity in any_quantity()) {
            let printed = quantity.to_string();
            let reparsed = Quantity::parse(&printed).unwrap();
            prop_assert_eq!(reparsed, quantity, "{}", printed);
            let reprinted = reparsed.to_string();
            if quantity.format() != Format::BinarySI
                || quantity.as_nanos().unsigned_abs() < 1024 * NANOS_PER_UNIT.unsigned_abs()
                || printed.ends_with('i')
            {
                prop_assert_eq!(&reprinted, &printed);
            }
            // From the second print on, the text is a fixed point (see
            // binary_integers_without_a_binary_suffix_print_plain for the one exception above).
            let again = Quantity::parse(&reprinted).unwrap();
            prop_assert_eq!(again, quantity);
            prop_assert_eq!(again.to_string(), reprinted);
            // And through JSON.
            let json = serde_json::to_string(&quantity).unwrap();
            prop_assert_eq!(serde_json::from_str::<Quantity>(&json).unwrap(), quantity);
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            if let Ok(quantity) = Quantity::parse(&text) {
                prop_assert_eq!(Quantity::parse(&quantity.to_string()), Ok(quantity));
            }
        }

        #[test]
        fn quantity_like_text_never_panics(text in "[-+0-9.eEinumkKMGTP]{0,30}") {
            if let Ok(quantity) = Quantity::parse(&text) {
                prop_assert!(quantity.as_nanos().abs() <= MAX_NANOS);
                prop_assert_eq!(Quantity::parse(&quantity.to_string()), Ok(quantity));
            }
        }
    }
}
