//! Topic name and topic filter syntax (spec 4.7), including shared subscriptions
//! (`$share/{group}/{filter}`, spec 4.8.2).

use crate::error::Error;

const SHARE_PREFIX: &str = "$share/";

/// Checks a topic name as used in PUBLISH and in a will: non-empty
/// [MQTT-4.7.3-1], no wildcard characters `+` or `#` [MQTT-3.3.2-2], no U+0000
/// [MQTT-4.7.3-2].
///
/// The empty topic name that MQTT 5.0 allows together with a Topic Alias is handled by
/// the PUBLISH decoder, not here.
pub fn validate_topic_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::TopicNameInvalid("empty topic name"));
    }
    if name.contains(['+', '#']) {
        return Err(Error::TopicNameInvalid("wildcard in topic name"));
    }
    if name.contains('\0') {
        return Err(Error::TopicNameInvalid("U+0000 in topic name"));
    }
    Ok(())
}

/// Checks a topic filter as used in SUBSCRIBE and UNSUBSCRIBE: non-empty
/// [MQTT-4.7.3-1]; `#` only as the whole last level [MQTT-4.7.1-2]; `+` only as a
/// whole level [MQTT-4.7.1-3]; no U+0000. A filter beginning with `$share/` must be a
/// valid shared subscription (see [`parse_shared`]): a non-empty group without `+`,
/// `#` and then a valid filter [MQTT-4.8.2-1], [MQTT-4.8.2-2].
pub fn validate_topic_filter(filter: &str) -> Result<(), Error> {
    match filter.strip_prefix(SHARE_PREFIX) {
        Some(_) => {
            let (group, inner) = parse_shared(filter).ok_or(Error::TopicFilterInvalid(
                "shared subscription without a filter",
            ))?;
            if group.is_empty() {
                return Err(Error::TopicFilterInvalid("empty share name"));
            }
            if group.contains(['+', '#']) {
                return Err(Error::TopicFilterInvalid("wildcard in share name"));
            }
            validate_plain_filter(inner)
        }
        None => validate_plain_filter(filter),
    }
}

/// Splits a shared subscription `$share/{group}/{filter}` into `(group, filter)`.
///
/// Returns `None` for a filter that is not shared (does not begin with `$share/`) and
/// for one that has no `/` after the group. The parts are not validated: call
/// [`validate_topic_filter`] (the decoder already has, for filters it returned).
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

fn validate_plain_filter(filter: &str) -> Result<(), Error> {
    if filter.is_empty() {
        return Err(Error::TopicFilterInvalid("empty topic filter"));
    }
    if filter.contains('\0') {
        return Err(Error::TopicFilterInvalid("U+0000 in topic filter"));
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(Error::TopicFilterInvalid("'#' not alone in the last level"));
        }
        if level.contains('+') && level != "+" {
            return Err(Error::TopicFilterInvalid("'+' not alone in its level"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_spec_4_7() {
        for valid in ["a", "/", "a/b/c", "$SYS/x", " ", "a//b", "ü/€"] {
            assert_eq!(validate_topic_name(valid), Ok(()), "{valid:?}");
        }
        for invalid in ["", "a/+", "#", "a/b#", "+", "a\0b"] {
            assert!(validate_topic_name(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn multi_level_wildcard_mqtt_4_7_1_2() {
        for valid in ["#", "a/#", "/#", "a/b/#", "+/#"] {
            assert_eq!(validate_topic_filter(valid), Ok(()), "{valid:?}");
        }
        for invalid in ["a#", "a/#/b", "##", "a/b#", "#/"] {
            assert!(validate_topic_filter(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn single_level_wildcard_mqtt_4_7_1_3() {
        for valid in ["+", "+/+", "a/+/b", "/+", "+/"] {
            assert_eq!(validate_topic_filter(valid), Ok(()), "{valid:?}");
        }
        for invalid in ["a+", "+a", "a/b+/c", "++"] {
            assert!(validate_topic_filter(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn empty_filter_mqtt_4_7_3_1() {
        assert!(validate_topic_filter("").is_err());
        assert_eq!(validate_topic_filter("/"), Ok(()));
    }

    #[test]
    fn shared_subscriptions_spec_4_8_2() {
        assert_eq!(parse_shared("$share/g/a/b"), Some(("g", "a/b")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(validate_topic_filter("$share/g/a/+"), Ok(()));
        assert_eq!(validate_topic_filter("$share"), Ok(()));
        for invalid in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
            "$share/g/",
            "$share/",
        ] {
            assert!(validate_topic_filter(invalid).is_err(), "{invalid:?}");
        }
    }
}
