//! The two deployments a request can go to: a leaf type that routing documents, the split,
//! fallback and stats all name. It decides nothing.

use serde::{Deserialize, Serialize};

/// One of the two deployments the router chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Today's production model.
    Blue,
    /// The candidate model.
    Green,
}

impl Environment {
    /// The lowercase name used in headers, logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Blue => "blue",
            Environment::Green => "green",
        }
    }

    /// Parses the value of the `x-bluegreen-environment` header (exact, lowercase after trim).
    pub fn parse(value: &str) -> Option<Environment> {
        match value.trim().to_ascii_lowercase().as_str() {
            "blue" => Some(Environment::Blue),
            "green" => Some(Environment::Green),
            _ => None,
        }
    }
}
