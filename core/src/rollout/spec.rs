//! What an operator asks for when starting a rollout: the step ladder and the health policy,
//! read and checked from the request body. Nothing here decides anything at run time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{FieldError, Obj};
use crate::health::HealthPolicy;
use crate::model::{check_name, MAX_NAME_LEN};

/// One rung of the ladder: a share of traffic for green and how long to hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Green's share, above 0 and below 100 (completion is the move to 100%).
    pub green_percent: f64,
    /// Minimum time on this step before it may advance.
    pub hold_seconds: u64,
}

/// The reference ladder: 10% for 30 min, 30% for 60, 50% for 120, 70% for 240, then 100%.
pub fn default_steps() -> Vec<Step> {
    [(10.0, 1800), (30.0, 3600), (50.0, 7200), (70.0, 14_400)]
        .into_iter()
        .map(|(green_percent, hold_seconds)| Step {
            green_percent,
            hold_seconds,
        })
        .collect()
}

/// What `POST /admin/rollouts` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// The model to roll out: a valid name ([`crate::model`]) that differs from blue.
    pub green_model: String,
    /// The ladder, green's share rising step by step (1 to 20 steps).
    pub steps: Vec<Step>,
    /// How each tick judges green.
    pub health: HealthPolicy,
}

/// Longest hold: 30 days.
const MAX_HOLD_SECONDS: u64 = 30 * 86_400;
/// Most steps in a ladder.
const MAX_STEPS: usize = 20;

impl RolloutSpec {
    /// Reads and checks a request body: `{"green_model", "steps"?, "health"?}`.
    pub fn from_json(v: &Value) -> Result<RolloutSpec, FieldError> {
        let o = Obj::new(v, "")?;
        o.only(&["green_model", "steps", "health"])?;
        let green_model = o
            .string("green_model", MAX_NAME_LEN)?
            .ok_or_else(|| FieldError::new("green_model", "is required: the model to roll out"))?;
        check_name(&green_model).map_err(|e| FieldError::new("green_model", e.to_string()))?;
        let steps = match o.array("steps")? {
            None => default_steps(),
            Some(list) => parse_steps(list)?,
        };
        let health = match o.get("health") {
            None => HealthPolicy::default(),
            Some(h) => HealthPolicy::from_json(h, "health")?,
        };
        Ok(RolloutSpec {
            green_model,
            steps,
            health,
        })
    }
}

fn parse_steps(list: &[Value]) -> Result<Vec<Step>, FieldError> {
    if list.is_empty() || list.len() > MAX_STEPS {
        return Err(FieldError::new(
            "steps",
            format!("must list 1 to {MAX_STEPS} steps"),
        ));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let path = format!("steps[{i}]");
        let o = Obj::new(item, &path)?;
        o.only(&["green_percent", "hold_seconds"])?;
        let green_percent = o.number("green_percent", 0.01, 99.99)?.ok_or_else(|| {
            FieldError::new(
                o.path("green_percent"),
                "is required (above 0 and below 100; completion moves green to 100%)",
            )
        })?;
        let hold_seconds = o
            .whole("hold_seconds", 0, MAX_HOLD_SECONDS)?
            .ok_or_else(|| FieldError::new(o.path("hold_seconds"), "is required"))?;
        if let Some(prev) = steps.last() {
            if green_percent <= prev.green_percent {
                return Err(FieldError::new(
                    o.path("green_percent"),
                    format!("must be above the previous step's {}", prev.green_percent),
                ));
            }
        }
        steps.push(Step {
            green_percent,
            hold_seconds,
        });
    }
    Ok(steps)
}
