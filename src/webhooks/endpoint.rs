//! What an admin may register as a receiver: an `https://` URL and known
//! event names. Checked before anything is stored; every bad field is
//! named, so the admin can fix them all at once.

use url::Url;

use super::EventType;
use crate::schedule::FieldError;

const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

fn error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The receiver's URL: absolute, `https://`, with a host.
pub(crate) fn url(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    if raw.len() > MAX_URL {
        errors.push(error(
            "url",
            format!("must be at most {MAX_URL} characters"),
        ));
        return None;
    }
    match Url::parse(raw) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()) => {
            Some(url.to_string())
        }
        Ok(_) => {
            errors.push(error(
                "url",
                format!("{raw:?} is not an https:// URL: receivers are reached over TLS only"),
            ));
            None
        }
        Err(e) => {
            errors.push(error("url", format!("{raw:?} is not a URL ({e})")));
            None
        }
    }
}

/// The subscribed events: at least one, each known; duplicates dropped,
/// the given order kept.
pub(crate) fn events(raw: &[String], errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    if raw.is_empty() {
        errors.push(error(
            "events",
            format!("must name at least one event: {}", known()),
        ));
        return None;
    }
    let unknown: Vec<&str> = raw
        .iter()
        .filter(|e| EventType::parse(e).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        errors.push(error(
            "events",
            format!("unknown events {unknown:?}; known: {}", known()),
        ));
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for e in raw {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Some(out)
}

pub(crate) fn description(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let text = raw.trim();
    if text.chars().count() > MAX_DESCRIPTION {
        errors.push(error(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
        return None;
    }
    Some(text.to_owned())
}

fn known() -> String {
    EventType::ALL.map(EventType::as_str).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_pass() {
        let mut errors = Vec::new();
        assert_eq!(
            url("https://ehr.clinic.example/hooks", &mut errors).as_deref(),
            Some("https://ehr.clinic.example/hooks")
        );
        assert!(errors.is_empty());
        for bad in [
            "http://ehr.example/x",
            "ftp://x",
            "not a url",
            "mailto:ehr@clinic.example",
        ] {
            let mut errors = Vec::new();
            assert_eq!(url(bad, &mut errors), None, "{bad}");
            assert_eq!(errors[0].field, "url", "{bad}");
        }
    }

    #[test]
    fn unknown_or_no_events_are_named() {
        let mut errors = Vec::new();
        let got = events(
            &["participant.waiting".into(), "participant.waiting".into()],
            &mut errors,
        );
        assert_eq!(got, Some(vec!["participant.waiting".to_owned()]));
        for bad in [vec![], vec!["participant.joined".to_owned()]] {
            let mut errors = Vec::new();
            assert_eq!(events(&bad, &mut errors), None);
            assert_eq!(errors[0].field, "events");
        }
    }
}
