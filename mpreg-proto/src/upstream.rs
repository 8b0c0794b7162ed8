//! Upstream MPREG's client protocol, sans-IO: the JSON requests its Python
//! clients (`MPREGClientAPI`) send and the answers they expect, so they can
//! call a cluster of this project unchanged.
//!
//! A connection whose first message is not a chunk (see
//! [`chunk`](crate::chunk)) and is JSON is such a client: every message is
//! one request, every answer one message, matched by the request's `u`.
//! [`parse`] checks a request into a [`multistep::Request`], which the
//! node runs as it runs native multi-step calls (references, levels and
//! handler arguments are described there); [`respond`], [`refuse`] and
//! [`failed`] encode the answer. Requests may carry two extensions of this
//! project: `"timeout"` (seconds for the whole request, default
//! [`DEFAULT_TIMEOUT`]) and `"references": "explicit"`
//! ([`References::Explicit`]).
//!
//! **Unlike upstream**: a handler that fails is error 1003 wherever it ran,
//! and `details` never carries internals.

use crate::multistep::{self, Command, RawCommand, References, RequestError};
use crate::records::CallError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Upstream's server-side budget of a request, the default here.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a whole message looks like upstream JSON (not a native frame).
pub fn is_request(message: &[u8]) -> bool {
    message
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// A checked upstream request: the multi-step request and how to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The client's id of the request, echoed in the answer.
    pub u: Value,
    /// What to run (its timeout is always set: upstream's 30 s unless the
    /// request says otherwise).
    pub steps: multistep::Request,
    /// Answer every level's results in `intermediate_results`.
    pub intermediate: bool,
    /// Answer an `execution_summary`.
    pub summary: bool,
}

/// Upstream's error code for a refused request: 1002 malformed, 1004 an
/// unknown role, 1003 the rest.
pub fn refusal_code(e: &RequestError) -> u16 {
    match e {
        RequestError::Malformed(_) => 1002,
        RequestError::UnknownRole(_) => 1004,
        _ => 1003,
    }
}

/// Upstream's error code for a call's error: 1001 nothing to run it, 1003
/// the handler failed, 1004 out of time, 1002 anything else (with the kind
/// in `details`).
pub fn code_of(e: &CallError) -> u16 {
    match e {
        CallError::NotFound(_) | CallError::NoProvider { .. } | CallError::NoRoute(_) => 1001,
        CallError::HandlerFailed(_) => 1003,
        CallError::Timeout => 1004,
        _ => 1002,
    }
}

fn call_error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::NotFound(_) => "NotFound",
        CallError::NoProvider { .. } => "NoProvider",
        CallError::Timeout => "Timeout",
        CallError::Unreachable => "Unreachable",
        CallError::Overloaded => "Overloaded",
        CallError::OutcomeUnknown => "OutcomeUnknown",
        CallError::HopBudgetExhausted => "HopBudgetExhausted",
        CallError::NoRoute(_) => "NoRoute",
        CallError::Loop => "Loop",
        CallError::HandlerFailed(_) => "HandlerFailed",
        CallError::Rejected(_) => "Rejected",
        CallError::Cancelled => "Cancelled",
        CallError::NotHere => "NotHere",
    }
}

#[derive(Deserialize)]
struct RawRequest {
    role: Option<String>,
    #[serde(default)]
    u: Value,
    #[serde(default)]
    cmds: Vec<RawCommand>,
    #[serde(default)]
    return_intermediate_results: bool,
    #[serde(default)]
    include_execution_summary: bool,
    /// This project's extension: seconds for the whole request.
    timeout: Option<f64>,
    /// This project's extension: `"explicit"` substitutes `{"$ref": …}`
    /// only.
    references: Option<String>,
}

/// The `u` of a message, if it has one (to answer a malformed request).
pub fn id_of(message: &[u8]) -> Value {
    serde_json::from_slice::<Map<String, Value>>(message)
        .ok()
        .and_then(|mut m| m.remove("u"))
        .unwrap_or(Value::Null)
}

/// Checks a request and orders its commands into levels.
pub fn parse(message: &[u8]) -> Result<Request, RequestError> {
    let raw: RawRequest =
        serde_json::from_slice(message).map_err(|e| RequestError::Malformed(e.to_string()))?;
    match raw.role.as_deref() {
        Some("rpc") => {}
        other => return Err(RequestError::UnknownRole(other.unwrap_or("").to_string())),
    }
    if raw.cmds.is_empty() {
        return Err(RequestError::Empty);
    }
    let timeout = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| RequestError::Malformed(format!("timeout {t} is not positive")))?,
    };
    let references = match raw.references.as_deref() {
        None | Some("names") => References::Names,
        Some("explicit") => References::Explicit,
        Some(other) => {
            return Err(RequestError::Malformed(format!(
                "references {other:?} (expected \"names\" or \"explicit\")"
            )));
        }
    };
    let commands = raw
        .cmds
        .into_iter()
        .map(Command::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Request {
        u: raw.u,
        steps: multistep::Request::with_references(commands, references)?.timeout(timeout),
        intermediate: raw.return_intermediate_results,
        summary: raw.include_execution_summary,
    })
}

/// The answer to request `u` that succeeded: `r` holds the last level's
/// results by name; `intermediate_results` every level's when asked for.
pub fn respond(
    u: &Value,
    steps: &multistep::Request,
    results: &HashMap<usize, Value>,
    intermediate: bool,
    summary: bool,
    elapsed: Duration,
) -> Vec<u8> {
    let level_map = |level: &[usize]| Value::Object(steps.named(level.iter().copied(), results));
    let r = steps.levels.last().map_or(Value::Null, |l| level_map(l));
    let intermediate: Vec<Value> = if intermediate {
        steps.levels.iter().map(|l| level_map(l)).collect()
    } else {
        Vec::new()
    };
    let summary = summary.then(|| {
        json!({
            "levels": steps.levels.len(),
            "commands": steps.commands.len(),
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
        })
    });
    encode(json!({
        "r": r,
        "error": null,
        "u": u,
        "intermediate_results": intermediate,
        "execution_summary": summary,
    }))
}

/// The answer to a request refused before it ran.
pub fn refuse(u: &Value, e: &RequestError) -> Vec<u8> {
    error_answer(
        u,
        refusal_code(e),
        &e.to_string(),
        json!({ "kind": e.kind() }),
    )
}

/// The answer to a request whose command `command` failed.
pub fn failed(u: &Value, command: &str, e: &CallError) -> Vec<u8> {
    let details = json!({ "kind": call_error_kind(e), "command": command });
    error_answer(u, code_of(e), &e.to_string(), details)
}

fn error_answer(u: &Value, code: u16, message: &str, details: Value) -> Vec<u8> {
    encode(json!({
        "r": null,
        "error": { "code": code, "message": message, "details": details },
        "u": u,
        "intermediate_results": [],
        "execution_summary": null,
    }))
}

fn encode(v: Value) -> Vec<u8> {
    // A `Value` always serialises.
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmds: Value) -> Result<Request, RequestError> {
        parse(
            json!({"role": "rpc", "u": "x", "cmds": cmds})
                .to_string()
                .as_bytes(),
        )
    }

    fn cmd(name: &str, fun: &str, args: Value) -> Value {
        json!({"name": name, "fun": fun, "args": args, "kwargs": {}, "locs": []})
    }

    #[test]
    fn the_three_step_chain_is_answered_as_upstream_does() {
        let r = req(json!([
            cmd("first", "echo", json!(["hi!"])),
            cmd("second", "echo", json!(["first"])),
            cmd("third", "echos", json!(["first", "AND ME TOO"])),
        ]))
        .unwrap();
        assert_eq!(r.steps.levels, vec![vec![0], vec![1, 2]]);
        assert_eq!(r.steps.timeout, Some(DEFAULT_TIMEOUT));
        let all = HashMap::from([
            (0, json!("hi!")),
            (1, json!("hi!")),
            (2, json!(["hi!", "AND ME TOO"])),
        ]);
        let answer = respond(&r.u, &r.steps, &all, false, false, Duration::ZERO);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            answer["r"],
            json!({"second": "hi!", "third": ["hi!", "AND ME TOO"]})
        );
        assert_eq!(answer["u"], "x");
        assert_eq!(answer["error"], Value::Null);
        assert_eq!(answer["intermediate_results"], json!([]));
    }

    #[test]
    fn extensions_choose_references_and_the_budget() {
        let r = parse(
            json!({"role": "rpc", "references": "explicit", "timeout": 1.5, "cmds": [
                cmd("a", "f", json!([])), cmd("b", "g", json!(["a"]))]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.steps.levels, vec![vec![0, 1]], "\"a\" stays a string");
        assert_eq!(r.steps.timeout, Some(Duration::from_millis(1500)));
        for bad in [json!({"timeout": 0}), json!({"references": "some"})] {
            let mut m = json!({"role": "rpc", "cmds": [cmd("a", "f", json!([]))]});
            m.as_object_mut()
                .unwrap()
                .extend(bad.as_object().unwrap().clone());
            let e = parse(m.to_string().as_bytes()).unwrap_err();
            assert!(matches!(e, RequestError::Malformed(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn refusals_carry_upstream_codes() {
        assert_eq!(req(json!([])).unwrap_err(), RequestError::Empty);
        let cycle = req(json!([cmd("a", "f", json!(["a"]))])).unwrap_err();
        let answer: Value = serde_json::from_slice(&refuse(&json!(1), &cycle)).unwrap();
        assert_eq!(
            (answer["u"].clone(), answer["error"]["code"].clone()),
            (json!(1), json!(1003))
        );
        assert_eq!(answer["error"]["details"], json!({"kind": "Cycle"}));
        let role = parse(br#"{"role": "server", "u": "1"}"#).unwrap_err();
        assert_eq!(refusal_code(&role), 1004);
        assert_eq!(refusal_code(&parse(b"{not json").unwrap_err()), 1002);
        assert_eq!(id_of(br#"{"u": "k", "role": 3}"#), json!("k"));
    }

    #[test]
    fn call_errors_map_to_upstream_codes() {
        assert_eq!(code_of(&CallError::NotFound("f".into())), 1001);
        assert_eq!(code_of(&CallError::NoRoute("z".into())), 1001);
        assert_eq!(code_of(&CallError::HandlerFailed("boom".into())), 1003);
        assert_eq!(code_of(&CallError::Timeout), 1004);
        assert_eq!(code_of(&CallError::Overloaded), 1002);
        let a: Value =
            serde_json::from_slice(&failed(&json!("u1"), "f", &CallError::Timeout)).unwrap();
        assert_eq!(a["error"]["code"], 1004);
        assert_eq!(
            a["error"]["details"],
            json!({"kind": "Timeout", "command": "f"})
        );
        assert_eq!(a["r"], Value::Null);
        assert!(is_request(b" {\"role\":1}") && !is_request(b"MP\x01"));
    }
}
