//! Deserializers for values Sockudo's files write loosely: numeric app limits
//! given as strings (`"max_connections": "1000"`), driver names, and the
//! octal socket mode string. Errors surface through `serde_path_to_error`, so
//! the key path is added by the caller.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// An optional unsigned integer written as a number, a numeric string, `null`
/// or `""` (the last two = not set).
pub(crate) fn opt_num<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(n) = d.deserialize_any(LenientU64)? else {
        return Ok(None);
    };
    T::try_from(n).map(Some).map_err(|_| {
        let expected = format!("an integer that fits in {}", std::any::type_name::<T>());
        de::Error::invalid_value(Unexpected::Unsigned(n), &expected.as_str())
    })
}

struct LenientU64;

impl<'de> Visitor<'de> for LenientU64 {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer or a string holding one")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse()
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A string parsed with `FromStr` whose error text says what was expected
/// (driver names, server role).
pub(crate) fn string_enum<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct V<T>(PhantomData<T>);
    impl<T: FromStr<Err = String>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(|expected: String| {
                E::invalid_value(Unexpected::Str(v), &expected.as_str())
            })
        }
    }
    d.deserialize_str(V(PhantomData))
}

/// Sockudo writes the socket mode as an octal string (`"660"`).
pub(crate) fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(OCTAL_EXPECTED)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            parse_octal_mode(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    d.deserialize_str(V)
}

pub(crate) const OCTAL_EXPECTED: &str = "an octal file mode string of at most 777, like \"660\"";

/// `"660"` → `0o660`; `None` for non-octal digits or a mode above `777`.
pub(crate) fn parse_octal_mode(s: &str) -> Option<u32> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Limits {
        #[serde(default, deserialize_with = "opt_num")]
        a: Option<u32>,
        #[serde(default, deserialize_with = "opt_num")]
        b: Option<u8>,
    }

    fn parse(json: &str) -> Result<Limits, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
    }

    #[test]
    fn numeric_limits_accept_numbers_strings_and_null() {
        assert_eq!(parse(r#"{"a": 5}"#).unwrap().a, Some(5));
        assert_eq!(parse(r#"{"a": " 7 "}"#).unwrap().a, Some(7));
        assert_eq!(parse(r#"{"a": null}"#).unwrap().a, None);
        assert_eq!(parse(r#"{"a": ""}"#).unwrap().a, None);
        assert_eq!(parse(r#"{}"#).unwrap().a, None);
    }

    #[test]
    fn numeric_limits_reject_junk_negative_and_overflow_with_the_key() {
        let e = parse(r#"{"a": "lots"}"#).unwrap_err();
        assert!(e.starts_with("a: invalid value: string \"lots\""), "{e}");
        let e = parse(r#"{"a": -1}"#).unwrap_err();
        assert!(e.starts_with("a: invalid value: integer `-1`"), "{e}");
        let e = parse(r#"{"b": 300}"#).unwrap_err();
        assert!(e.contains("fits in u8"), "{e}");
        assert!(parse(r#"{"a": true}"#).is_err());
    }

    #[test]
    fn toml_integers_are_accepted() {
        let l: Limits = toml::from_str("a = 9\nb = \"3\"").unwrap();
        assert_eq!((l.a, l.b), (Some(9), Some(3)));
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_octal_mode("660"), Some(0o660));
        assert_eq!(parse_octal_mode("0660"), Some(0o660));
        assert_eq!(parse_octal_mode("0o600"), Some(0o600));
        assert_eq!(parse_octal_mode("777"), Some(0o777));
        assert_eq!(parse_octal_mode("1777"), None);
        assert_eq!(parse_octal_mode("680"), None);
        assert_eq!(parse_octal_mode(""), None);
        assert_eq!(parse_octal_mode("rw"), None);
    }
}
