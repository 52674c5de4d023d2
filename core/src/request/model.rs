//! What a model name may be.
//!
//! The blue and green models' names go upstream in the request body, where any JSON string
//! would do, and back to the client in the `x-bluegreen-model` response header, where only a
//! header value will: the runtime refuses to set a header holding a control character, and a
//! refused header after the upstream answered would turn its answer into our 500. So a name
//! holds visible ASCII and inner spaces only (no tab: no model is named with one), at most
//! [`MAX_NAME_LEN`] of them. Non-ASCII is refused too: the Fetch API's headers are byte
//! strings, and what a client would read back is not what it was sent.
//!
//! Names are checked once, where they enter the router: the vars ([`crate::config`]), the KV
//! routing document ([`crate::request::routing`]) and the admin API's start of a rollout
//! ([`crate::controller::rollout::RolloutSpec`]). A rollout state stored by an earlier version is never
//! checked when it loads: stored formats are contracts, and a state that cannot load stops the
//! controller.

use std::fmt;

/// Longest model name, in characters (ASCII, so bytes too). Real names are far shorter
/// (`accounts/fireworks/models/llama-v3p1-405b-instruct` is 50); a fine-tuned model's
/// `ft:<base>:<org>:<suffix>:<id>` stays well under it.
pub const MAX_NAME_LEN: usize = 256;

/// Why a model name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] (its length in characters).
    TooLong(usize),
    /// The name starts or ends with a space, which a header value cannot.
    Padded,
    /// A character that a header value cannot carry, or not ASCII: which one, and its
    /// position (1-based, in characters).
    Character(char, usize),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "must not be empty"),
            NameError::TooLong(n) => {
                write!(f, "must be at most {MAX_NAME_LEN} characters long, got {n}")
            }
            NameError::Padded => write!(f, "must not start or end with a space"),
            NameError::Character(c, at) => write!(
                f,
                "must hold only visible ASCII characters and inner spaces (it is sent back in \
                 the x-bluegreen-model header); character {at} is {c:?}"
            ),
        }
    }
}

impl NameError {
    /// The rule the name breaks, without any of the name (for settings, whose errors never
    /// echo a value).
    pub fn rule(&self) -> String {
        match self {
            NameError::Empty => "must not be empty".into(),
            NameError::TooLong(_) => format!("must be at most {MAX_NAME_LEN} characters long"),
            NameError::Padded => "must not start or end with a space".into(),
            NameError::Character(_, at) => format!(
                "must hold only visible ASCII characters and inner spaces (it is sent back in \
                 the x-bluegreen-model header); character {at} is not one"
            ),
        }
    }
}

/// Checks a model name from the vars, a routing document or the admin API. `Ok` means it
/// can go into the `x-bluegreen-model` header as it is.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((at, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, ' '..='~'))
    {
        return Err(NameError::Character(c, at + 1));
    }
    // All ASCII from here: bytes are characters.
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(NameError::Padded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_real_providers_use_are_accepted() {
        let longest = "m".repeat(MAX_NAME_LEN);
        for name in [
            "deepseek-v3",
            "gemini-2.5-flash",
            "gpt-4.1",
            "ft:gpt-4o-mini-2024-07-18:org:custom:9x8y7z",
            "accounts/fireworks/models/llama-v3p1-405b-instruct",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "@cf/meta/llama-3.1-8b-instruct",
            "Qwen/Qwen2.5-72B-Instruct",
            "model name with spaces",
            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            "x",
            &longest,
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn everything_a_header_value_cannot_carry_is_refused() {
        let too_long = "m".repeat(MAX_NAME_LEN + 1);
        let cases: [(&str, NameError); 13] = [
            ("", NameError::Empty),
            (&too_long, NameError::TooLong(257)),
            (" gpt", NameError::Padded),
            ("gpt ", NameError::Padded),
            (" ", NameError::Padded),
            ("gem\u{7}ini", NameError::Character('\u{7}', 4)),
            ("a\tb", NameError::Character('\t', 2)),
            ("a\r\nx-evil: 1", NameError::Character('\r', 2)),
            ("\0", NameError::Character('\0', 1)),
            ("del\u{7f}", NameError::Character('\u{7f}', 4)),
            ("modèle", NameError::Character('è', 4)),
            ("模型", NameError::Character('模', 1)),
            // Non-ASCII is found before the length: 300 two-byte characters are not "600 long".
            (&"é".repeat(300), NameError::Character('é', 1)),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), Err(want), "{name:?}");
        }
        let message = NameError::Character('\u{7}', 4).to_string();
        assert!(message.contains("x-bluegreen-model") && message.contains("'\\u{7}'"));
    }
}
