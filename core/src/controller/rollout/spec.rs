//! What an operator asks for when starting a rollout: the step ladder and the health policy,
//! read and checked from the request body. Nothing here decides anything at run time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::fields::{FieldError, Obj};
use crate::request::model::{check_name, MAX_NAME_LEN};
use crate::route::registry::RouteKind;
use crate::verdict::health::{HealthPolicy, Method};

/// One rung of the ladder: a share of traffic for green and how long to hold it. A *live* step
/// serves `green_percent` of the users from green; a *shadow* step serves none
/// (`green_percent` 0) and sends `shadow_percent` of blue's requests to green as well, in the
/// background, its answers discarded ([`crate::shadow`]). Shadow steps come first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Green's share, above 0 and below 100 (completion is the move to 100%); 0 in a shadow
    /// step.
    pub green_percent: f64,
    /// Minimum time on this step before it may advance.
    pub hold_seconds: u64,
    /// The share of blue's requests also sent to green in the background, above 0 and at most
    /// 100, in a shadow step; 0 (and absent from the JSON) in a live one. Absent in rollouts
    /// stored before shadow steps, whose steps are all live.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow_percent: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Step {
    /// A live step: `green_percent` of the users on green for at least `hold_seconds`.
    pub fn live(green_percent: f64, hold_seconds: u64) -> Step {
        Step {
            green_percent,
            hold_seconds,
            shadow_percent: 0.0,
        }
    }

    /// A shadow step: no user on green, `shadow_percent` of blue's requests copied to it.
    pub fn shadow(shadow_percent: f64, hold_seconds: u64) -> Step {
        Step {
            green_percent: 0.0,
            hold_seconds,
            shadow_percent,
        }
    }

    /// Whether no user is served by green on this step.
    pub fn is_shadow(&self) -> bool {
        self.shadow_percent > 0.0
    }
}

/// The reference ladder: 10% for 30 min, 30% for 60, 50% for 120, 70% for 240, then 100%.
pub fn default_steps() -> Vec<Step> {
    [(10.0, 1800), (30.0, 3600), (50.0, 7200), (70.0, 14_400)]
        .into_iter()
        .map(|(green_percent, hold_seconds)| Step::live(green_percent, hold_seconds))
        .collect()
}

/// What `POST /admin/rollouts` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// The model to roll out: a valid name ([`crate::request::model`]) that differs from blue.
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

/// The ladder of an embeddings route when the request gives none: one shadow step of 10% for
/// an hour, then a hold until the operator promotes.
pub fn default_embeddings_steps() -> Vec<Step> {
    vec![Step::shadow(10.0, 3600)]
}

impl RolloutSpec {
    /// Reads and checks a request body for a chat route: `{"green_model", "steps"?,
    /// "health"?}`.
    pub fn from_json(v: &Value) -> Result<RolloutSpec, FieldError> {
        RolloutSpec::for_route(v, RouteKind::Chat)
    }

    /// Reads and checks a request body for a route of `kind`. An embeddings route's ladder is
    /// shadow steps only: green never serves a user, and the rollout ends on the operator's
    /// promote, once green's index is built.
    pub fn for_route(v: &Value, kind: RouteKind) -> Result<RolloutSpec, FieldError> {
        let o = Obj::new(v, "")?;
        o.only(&["green_model", "steps", "health"])?;
        let green_model = o
            .string("green_model", MAX_NAME_LEN)?
            .ok_or_else(|| FieldError::new("green_model", "is required: the model to roll out"))?;
        check_name(&green_model).map_err(|e| FieldError::new("green_model", e.to_string()))?;
        let health = match o.get("health") {
            None => HealthPolicy::default(),
            Some(h) => HealthPolicy::from_json(h, "health")?,
        };
        let steps = match (o.array("steps")?, kind) {
            (None, RouteKind::Chat) => default_steps(),
            (None, RouteKind::Embeddings) => default_embeddings_steps(),
            (Some(list), _) => parse_steps(list, &health, kind)?,
        };
        if kind == RouteKind::Embeddings && health.method == Method::Threshold {
            return Err(FieldError::new(
                "health.method",
                "must be sequential on an embeddings route: its shadow steps judge copies",
            ));
        }
        if kind == RouteKind::Embeddings && health.judge.is_some() {
            return Err(FieldError::new(
                "health.judge",
                "is for chat routes: an embeddings route's answers are vectors, which no grader \
                 compares",
            ));
        }
        Ok(RolloutSpec {
            green_model,
            steps,
            health,
        })
    }
}

fn parse_steps(
    list: &[Value],
    health: &HealthPolicy,
    kind: RouteKind,
) -> Result<Vec<Step>, FieldError> {
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
        o.only(&["green_percent", "shadow_percent", "hold_seconds"])?;
        let hold_seconds = o
            .whole("hold_seconds", 0, MAX_HOLD_SECONDS)?
            .ok_or_else(|| FieldError::new(o.path("hold_seconds"), "is required"))?;
        let step =
            match o.number("shadow_percent", 0.01, 100.0)? {
                Some(shadow_percent) => {
                    shadow_step(&o, &steps, health)?;
                    Step::shadow(shadow_percent, hold_seconds)
                }
                None if kind == RouteKind::Embeddings => return Err(FieldError::new(
                    o.path("shadow_percent"),
                    "is required: an embeddings route's steps are shadow steps (vectors of two \
                     models do not compare, so green never serves a user)",
                )),
                None => Step::live(live_percent(&o, &steps)?, hold_seconds),
            };
        steps.push(step);
    }
    if kind == RouteKind::Chat && steps.iter().all(Step::is_shadow) {
        return Err(FieldError::new(
            "steps",
            "needs a live step (green_percent) after the shadow steps: completion moves every \
             user to green, and a shadow step has served none",
        ));
    }
    Ok(steps)
}

/// Checks a shadow step: no `green_percent` besides it (or 0), no live step before it, and a
/// method that can judge it.
fn shadow_step(o: &Obj<'_>, before: &[Step], health: &HealthPolicy) -> Result<(), FieldError> {
    o.number("green_percent", 0.0, 0.0).map_err(|_| {
        FieldError::new(
            o.path("green_percent"),
            "must be 0 or absent in a shadow step: no user is served by green",
        )
    })?;
    if before.iter().any(|s| !s.is_shadow()) {
        return Err(FieldError::new(
            o.path("shadow_percent"),
            "shadow steps must come before the live steps (green_percent)",
        ));
    }
    if health.method == Method::Threshold {
        return Err(FieldError::new(
            o.path("shadow_percent"),
            "needs the sequential method (health.method): the threshold gates judge live \
             requests only",
        ));
    }
    Ok(())
}

/// Reads a live step's `green_percent`, above the previous live step's.
fn live_percent(o: &Obj<'_>, before: &[Step]) -> Result<f64, FieldError> {
    let green_percent = o.number("green_percent", 0.01, 99.99)?.ok_or_else(|| {
        FieldError::new(
            o.path("green_percent"),
            "is required (above 0 and below 100; completion moves green to 100%), or \
             shadow_percent for a shadow step",
        )
    })?;
    if let Some(prev) = before.last().filter(|s| !s.is_shadow()) {
        if green_percent <= prev.green_percent {
            return Err(FieldError::new(
                o.path("green_percent"),
                format!("must be above the previous step's {}", prev.green_percent),
            ));
        }
    }
    Ok(green_percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A grader is for chat routes: an embeddings route refuses it, naming the field.
    #[test]
    fn an_embeddings_route_refuses_a_grader() {
        let v = json!({"green_model": "e2", "health": {"judge": {"model": "j", "sample_percent": 5, "max_per_minute": 5}}});
        let e = RolloutSpec::for_route(&v, RouteKind::Embeddings).unwrap_err();
        assert_eq!(e.field, "health.judge");
        assert!(RolloutSpec::for_route(&v, RouteKind::Chat).is_ok());
    }
}
