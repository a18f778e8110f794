//! Case-insensitive string comparison.
//!
//! Both sides are folded character by character with Unicode's lowercase mapping and no
//! context rules (unlike `str::to_lowercase`, which lowers a final sigma differently).
//! Folding a concatenation is then the concatenation of the folded parts, so "begins
//! with", "ends with" and "contains" on folded strings agree with each other however a
//! string is cut. The filter side is folded once, when a filter is compiled; the event
//! side is compared without being copied.

use std::borrow::Cow;

/// The folded form of `s`; borrowed when folding changes nothing (the common case for
/// lower-case ASCII subjects).
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(folded_chars(s).collect())
    }
}

fn folded_chars(s: &str) -> impl Iterator<Item = char> + Clone + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Whether the next characters of `hay` are those of `needle`.
fn iter_starts_with(mut hay: impl Iterator<Item = char>, needle: &str) -> bool {
    needle.chars().all(|n| hay.next() == Some(n))
}

// In the four tests below `needle` is already folded. An ASCII `hay` folds to ASCII, so
// comparing it byte-wise ignoring ASCII case is the same test (a non-ASCII byte of the
// needle can never equal one of the hay).

/// `fold(hay) == needle`
#[inline]
pub(crate) fn eq(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() {
        return hay.eq_ignore_ascii_case(needle);
    }
    let mut chars = folded_chars(hay);
    iter_starts_with(&mut chars, needle) && chars.next().is_none()
}

/// `fold(hay).starts_with(needle)`
#[inline]
pub(crate) fn starts_with(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() {
        let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
        return hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle);
    }
    iter_starts_with(folded_chars(hay), needle)
}

/// `fold(hay).ends_with(needle)`
#[inline]
pub(crate) fn ends_with(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() {
        let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
        return hay.len() >= needle.len() && hay[hay.len() - needle.len()..].eq_ignore_ascii_case(needle);
    }
    let mut reversed = hay.chars().rev().flat_map(|c| c.to_lowercase().rev());
    needle.chars().rev().all(|n| reversed.next() == Some(n))
}

/// `fold(hay).contains(needle)`
#[inline]
pub(crate) fn contains(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() {
        let needle = needle.as_bytes();
        return hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle));
    }
    let mut chars = folded_chars(hay);
    loop {
        if iter_starts_with(chars.clone(), needle) {
            return true;
        }
        if chars.next().is_none() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each test must equal: fold, then compare.
    fn folded(s: &str) -> String {
        s.chars().flat_map(char::to_lowercase).collect()
    }

    #[test]
    fn agrees_with_folding_first() {
        let samples = [
            "",
            "a",
            "A",
            "ab",
            "AB",
            "aB",
            "abc",
            "b",
            "bc",
            "Straße",
            "STRASSE",
            "ß",
            "ΑΣ",
            "ας",
            "ασ",
            "Σ",
            "İ",
            "i̇",
            "\u{307}",
            "K",
            "\u{212A}",
            "k",
            "ÄÖü",
            "äöü",
            "models/Churn:3",
            "MODELS/",
            "x/Y.JPG",
            ".jpg",
        ];
        for hay in samples {
            for raw in samples {
                let needle = folded(raw);
                let hay_folded = folded(hay);
                assert_eq!(eq(hay, &needle), hay_folded == needle, "eq {hay:?} {needle:?}");
                assert_eq!(
                    starts_with(hay, &needle),
                    hay_folded.starts_with(&needle),
                    "starts_with {hay:?} {needle:?}"
                );
                assert_eq!(
                    ends_with(hay, &needle),
                    hay_folded.ends_with(&needle),
                    "ends_with {hay:?} {needle:?}"
                );
                assert_eq!(
                    contains(hay, &needle),
                    hay_folded.contains(&needle),
                    "contains {hay:?} {needle:?}"
                );
            }
            assert_eq!(fold(hay), folded(hay));
        }
    }

    #[test]
    fn a_final_sigma_is_folded_like_any_other() {
        // `str::to_lowercase` would give "ας" for "ΑΣ" and break this prefix test.
        assert!(starts_with("ΑΣΒ", &fold("ΑΣ")));
        assert!(matches!(fold("already/lower"), Cow::Borrowed(_)));
    }
}
