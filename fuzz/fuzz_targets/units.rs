//! The units of the annotation grammar (durations, sizes, probabilities, rates): no panic,
//! errors that read as a sentence, and parse -> format -> parse round trips where the
//! grammar has a formatter.
#![no_main]

use injector::units::{
    format_duration, format_rate, parse_duration, parse_probability, parse_rate, parse_size, Size,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match parse_duration(text) {
        Ok(d) => {
            let shown = format_duration(d);
            assert_eq!(
                parse_duration(&shown),
                Ok(d),
                "duration {text:?} shown as {shown:?}"
            );
        }
        Err(err) => assert!(err.to_string().starts_with("is ")),
    }
    match parse_size(text) {
        Ok(Size::Bytes(b)) => {
            let shown = Size::Bytes(b).to_string();
            assert_eq!(
                parse_size(&shown),
                Ok(Size::Bytes(b)),
                "size {text:?} shown as {shown:?}"
            );
        }
        Ok(Size::PercentOfLimit(p)) => {
            assert!(p > 0.0 && p <= 100.0, "{text:?} gave {p}%");
            let shown = Size::PercentOfLimit(p).to_string();
            match parse_size(&shown) {
                Ok(Size::PercentOfLimit(q)) => assert!((p - q).abs() <= p * 1e-12, "{p} vs {q}"),
                other => panic!("size {text:?} shown as {shown:?} reads back as {other:?}"),
            }
            assert!(Size::PercentOfLimit(p).resolve(Some(u64::MAX)).is_some());
        }
        Err(err) => assert!(err.to_string().starts_with("is ")),
    }
    match parse_probability(text) {
        Ok(p) => assert!((0.0..=1.0).contains(&p), "{text:?} gave probability {p}"),
        Err(err) => assert!(err.to_string().starts_with("is ")),
    }
    match parse_rate(text) {
        Ok(rate) => {
            let shown = format_rate(rate);
            assert_eq!(
                parse_rate(&shown),
                Ok(rate),
                "rate {text:?} shown as {shown:?}"
            );
        }
        Err(err) => assert!(err.to_string().starts_with("is ")),
    }
});
