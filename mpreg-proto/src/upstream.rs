//! Upstream MPREG's client protocol, sans-IO: the JSON requests its Python
//! clients (`MPREGClientAPI`) send and the answers they expect, so they can
//! call a cluster of this project unchanged.
//!
//! A connection whose first message is not a chunk (see
//! [`chunk`](crate::chunk)) and is JSON is such a client: every message is
//! one request, every answer one message, matched by the request's `u`.
//! [`parse`] checks a request and orders its commands; the node runs them
//! level by level ([`Request::levels`]), substituting results
//! ([`Request::arguments`]), and [`respond`] / [`refuse`] encode the answer.
//!
//! **References.** An argument (positional, keyword, or nested in lists and
//! objects) that is a string equal to another command's `name` takes that
//! command's result; `"name.field.sub"` takes a field of it (objects by
//! key, lists by index). The explicit form `{"$ref": "name.field"}` always
//! refers; with `"references": "explicit"` in the request only it does, so
//! a user string that happens to equal a command's name stays a string.
//!
//! **Unlike upstream**: keyword arguments create ordering edges too; an
//! empty request, a duplicate command name and a cycle (self-reference
//! included) are refused before anything runs; a handler that fails is
//! error 1003 wherever it ran; `details` never carries internals.
//!
//! **Handlers** receive the JSON array of positional arguments, as native
//! calls do, with the keyword arguments appended as one final JSON object
//! when there are any: `f(1, 2, scale=3)` arrives as `[1, 2, {"scale": 3}]`.

use crate::catalog::ResourceSet;
use crate::records::CallError;
use compact_str::CompactString;
use semver::VersionReq;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;
use thiserror::Error;

/// Upstream's server-side budget of a request, the default here.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a whole message looks like upstream JSON (not a native frame).
pub fn is_request(message: &[u8]) -> bool {
    message
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// One command of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Its name within the request (what references name).
    pub name: String,
    /// The function to run.
    pub function: CompactString,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    /// Resources its provider must have.
    pub locs: ResourceSet,
    /// Accepted versions.
    pub version_req: Option<VersionReq>,
    /// The cluster that must serve it.
    pub target_cluster: Option<CompactString>,
}

/// A checked request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The client's id of the request, echoed in the answer.
    pub u: Value,
    /// Its commands, in the order sent.
    pub commands: Vec<Command>,
    /// Indices of `commands`, level by level: a command's references all
    /// point at earlier levels.
    pub levels: Vec<Vec<usize>>,
    /// The budget of the whole request.
    pub timeout: Duration,
    /// Answer every level's results in `intermediate_results`.
    pub intermediate: bool,
    /// Answer an `execution_summary`.
    pub summary: bool,
    explicit_only: bool,
    /// Command index by name.
    index: HashMap<String, usize>,
}

/// Why a request was refused before anything ran.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not a JSON request of the expected shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A role other than `rpc`.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    /// No commands.
    #[error("the request has no commands")]
    Empty,
    /// Two commands share a name.
    #[error("two commands are named {0:?}")]
    DuplicateName(String),
    /// Commands that refer to each other in a circle (or to themselves).
    #[error("commands refer to each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A `version_constraint` that does not parse.
    #[error("invalid version constraint {0:?}")]
    Version(String),
    /// A reference to a field the result does not have.
    #[error("{command:?} refers to {reference:?}, which that result does not have")]
    Field {
        /// The command whose argument refers.
        command: String,
        /// The reference.
        reference: String,
    },
}

impl RequestError {
    /// Upstream's error code for it.
    pub fn code(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 1002,
            RequestError::UnknownRole(_) => 1004,
            _ => 1003,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "Malformed",
            RequestError::UnknownRole(_) => "UnknownRole",
            RequestError::Empty => "Empty",
            RequestError::DuplicateName(_) => "DuplicateName",
            RequestError::Cycle(_) => "Cycle",
            RequestError::Version(_) => "Version",
            RequestError::Field { .. } => "Field",
        }
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

#[derive(Deserialize)]
struct RawCommand {
    name: String,
    fun: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
    #[serde(default)]
    locs: Vec<String>,
    version_constraint: Option<String>,
    target_cluster: Option<String>,
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
    let explicit_only = match raw.references.as_deref() {
        None | Some("names") => false,
        Some("explicit") => true,
        Some(other) => {
            return Err(RequestError::Malformed(format!(
                "references {other:?} (expected \"names\" or \"explicit\")"
            )));
        }
    };
    let mut commands = Vec::with_capacity(raw.cmds.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.cmds.into_iter().enumerate() {
        if index.insert(c.name.clone(), i).is_some() {
            return Err(RequestError::DuplicateName(c.name));
        }
        let version_req = match c.version_constraint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(VersionReq::parse(v).map_err(|_| RequestError::Version(v.into()))?),
        };
        commands.push(Command {
            name: c.name,
            function: c.fun.into(),
            args: c.args,
            kwargs: c.kwargs,
            locs: c.locs.iter().map(CompactString::from).collect(),
            version_req,
            target_cluster: c.target_cluster.map(Into::into),
        });
    }
    let deps: Vec<Vec<usize>> = commands
        .iter()
        .map(|c| {
            let mut d = Vec::new();
            let values = c.args.iter().chain(c.kwargs.values());
            for v in values {
                visit_refs(v, explicit_only, &mut |r| {
                    if let Some(j) = resolve(r, &index).map(|(j, _)| j)
                        && !d.contains(&j)
                    {
                        d.push(j);
                    }
                });
            }
            d
        })
        .collect();
    let levels = levels(&commands, &deps)?;
    Ok(Request {
        u: raw.u,
        commands,
        levels,
        timeout,
        intermediate: raw.return_intermediate_results,
        summary: raw.include_execution_summary,
        explicit_only,
        index,
    })
}

/// Calls `f` with every reference in `v`: strings (unless `explicit_only`)
/// and `{"$ref": "…"}` objects.
fn visit_refs(v: &Value, explicit_only: bool, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) if !explicit_only => f(s),
        Value::Array(a) => a.iter().for_each(|x| visit_refs(x, explicit_only, f)),
        Value::Object(o) => match explicit_ref(o) {
            Some(r) => f(r),
            None => o.values().for_each(|x| visit_refs(x, explicit_only, f)),
        },
        _ => {}
    }
}

fn explicit_ref(o: &Map<String, Value>) -> Option<&str> {
    match (o.len(), o.get("$ref")) {
        (1, Some(Value::String(r))) => Some(r),
        _ => None,
    }
}

/// The command a reference names and the field path after it: the longest
/// command name that is the whole reference or a prefix followed by `.`.
fn resolve<'r>(r: &'r str, index: &HashMap<String, usize>) -> Option<(usize, &'r str)> {
    if let Some(&i) = index.get(r) {
        return Some((i, ""));
    }
    r.char_indices()
        .rev()
        .filter(|&(_, ch)| ch == '.')
        .find_map(|(at, _)| index.get(&r[..at]).map(|&i| (i, &r[at + 1..])))
}

/// Kahn's algorithm by levels; what is left over lies on a cycle.
fn levels(commands: &[Command], deps: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, RequestError> {
    let mut level: Vec<Option<usize>> = vec![None; commands.len()];
    let mut out: Vec<Vec<usize>> = Vec::new();
    loop {
        let ready: Vec<usize> = (0..commands.len())
            .filter(|&i| level[i].is_none())
            .filter(|&i| deps[i].iter().all(|&j| level[j].is_some()))
            .collect();
        if ready.is_empty() {
            break;
        }
        for &i in &ready {
            level[i] = Some(out.len());
        }
        out.push(ready);
    }
    if let Some(start) = level.iter().position(Option::is_none) {
        // Walk unresolved dependencies until one repeats: that is a cycle.
        let mut path = vec![start];
        loop {
            let at = *path.last().unwrap_or(&start);
            let Some(&next) = deps[at].iter().find(|&&j| level[j].is_none()) else {
                break;
            };
            if let Some(p) = path.iter().position(|&x| x == next) {
                let mut cycle: Vec<String> = path[p..]
                    .iter()
                    .map(|&i| commands[i].name.clone())
                    .collect();
                cycle.push(commands[next].name.clone());
                return Err(RequestError::Cycle(cycle));
            }
            path.push(next);
        }
        return Err(RequestError::Cycle(vec![commands[start].name.clone()]));
    }
    Ok(out)
}

impl Request {
    /// The JSON arguments of command `i` with every reference replaced by
    /// the result (or field) it names; `results` holds the earlier levels'.
    pub fn arguments(
        &self,
        i: usize,
        results: &HashMap<usize, Value>,
    ) -> Result<Vec<u8>, RequestError> {
        let c = &self.commands[i];
        let mut subst = |v: &Value| self.substitute(v, &c.name, results);
        let mut args = c
            .args
            .iter()
            .map(&mut subst)
            .collect::<Result<Vec<_>, _>>()?;
        if !c.kwargs.is_empty() {
            let kwargs = c
                .kwargs
                .iter()
                .map(|(k, v)| Ok((k.clone(), subst(v)?)))
                .collect::<Result<Map<_, _>, RequestError>>()?;
            args.push(Value::Object(kwargs));
        }
        serde_json::to_vec(&args).map_err(|e| RequestError::Malformed(e.to_string()))
    }

    fn substitute(
        &self,
        v: &Value,
        command: &str,
        results: &HashMap<usize, Value>,
    ) -> Result<Value, RequestError> {
        let lookup = |r: &str| -> Option<Result<Value, RequestError>> {
            let (j, path) = resolve(r, &self.index)?;
            let result = results.get(&j)?;
            Some(
                field(result, path)
                    .cloned()
                    .ok_or_else(|| RequestError::Field {
                        command: command.to_string(),
                        reference: r.to_string(),
                    }),
            )
        };
        match v {
            Value::String(s) if !self.explicit_only => match lookup(s) {
                Some(r) => r,
                None => Ok(v.clone()),
            },
            Value::Array(a) => a
                .iter()
                .map(|x| self.substitute(x, command, results))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(o) => {
                if let Some(r) = explicit_ref(o) {
                    return lookup(r).unwrap_or_else(|| {
                        Err(RequestError::Field {
                            command: command.to_string(),
                            reference: r.to_string(),
                        })
                    });
                }
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.substitute(x, command, results)?)))
                    .collect::<Result<Map<_, _>, RequestError>>()
                    .map(Value::Object)
            }
            other => Ok(other.clone()),
        }
    }
}

/// `path` (`a.b.0`) inside `v`; the empty path is `v`.
fn field<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, seg| match v {
        Value::Object(o) => o.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A handler's result as a JSON value: the value if it is JSON, else the
/// bytes as a (lossy UTF-8) string.
pub fn result_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The answer to a request that succeeded: `r` holds the last level's
/// results by name; `levels` every level's (for `intermediate_results`).
pub fn respond(req: &Request, results: &HashMap<usize, Value>, elapsed: Duration) -> Vec<u8> {
    let level_map = |level: &[usize]| -> Value {
        Value::Object(
            level
                .iter()
                .filter_map(|&i| Some((req.commands[i].name.clone(), results.get(&i)?.clone())))
                .collect(),
        )
    };
    let r = req.levels.last().map_or(Value::Null, |l| level_map(l));
    let intermediate: Vec<Value> = if req.intermediate {
        req.levels.iter().map(|l| level_map(l)).collect()
    } else {
        Vec::new()
    };
    let summary = req.summary.then(|| {
        json!({
            "levels": req.levels.len(),
            "commands": req.commands.len(),
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
        })
    });
    encode(json!({
        "r": r,
        "error": null,
        "u": req.u,
        "intermediate_results": intermediate,
        "execution_summary": summary,
    }))
}

/// The answer to a request refused before it ran.
pub fn refuse(u: &Value, e: &RequestError) -> Vec<u8> {
    error_answer(u, e.code(), &e.to_string(), json!({ "kind": e.kind() }))
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
    fn the_three_step_chain_orders_into_levels_and_substitutes() {
        let r = req(json!([
            cmd("first", "echo", json!(["hi!"])),
            cmd("second", "echo", json!(["first"])),
            cmd("third", "echos", json!(["first", "AND ME TOO"])),
        ]))
        .unwrap();
        assert_eq!(r.levels, vec![vec![0], vec![1, 2]]);
        let results = HashMap::from([(0, json!("hi!"))]);
        assert_eq!(
            r.arguments(2, &results).unwrap(),
            br#"["hi!","AND ME TOO"]"#
        );
        let all = HashMap::from([
            (0, json!("hi!")),
            (1, json!("hi!")),
            (2, json!(["hi!", "AND ME TOO"])),
        ]);
        let answer: Value = serde_json::from_slice(&respond(&r, &all, Duration::ZERO)).unwrap();
        assert_eq!(
            answer["r"],
            json!({"second": "hi!", "third": ["hi!", "AND ME TOO"]})
        );
        assert_eq!(answer["u"], "x");
        assert_eq!(answer["error"], Value::Null);
    }

    #[test]
    fn fields_kwargs_and_explicit_references() {
        let r = req(json!([
            cmd("a", "f", json!([])),
            {"name": "b", "fun": "g", "args": [["a.x.1"]], "kwargs": {"k": "a.y"}},
            {"name": "c", "fun": "h", "args": [{"$ref": "a"}, "plain"]},
        ]))
        .unwrap();
        assert_eq!(r.levels, vec![vec![0], vec![1, 2]], "kwargs order too");
        let results = HashMap::from([(0, json!({"x": [5, 6], "y": "why"}))]);
        assert_eq!(r.arguments(1, &results).unwrap(), br#"[[6],{"k":"why"}]"#);
        assert_eq!(
            r.arguments(2, &results).unwrap(),
            br#"[{"x":[5,6],"y":"why"},"plain"]"#
        );
        let missing = HashMap::from([(0, json!({"x": []}))]);
        assert!(matches!(
            r.arguments(1, &missing),
            Err(RequestError::Field { .. })
        ));
        // Explicit only: a string equal to a command's name stays a string.
        let e = parse(
            json!({"role": "rpc", "references": "explicit", "cmds": [
                cmd("a", "f", json!([])), cmd("b", "g", json!(["a", {"$ref": "a"}]))]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.levels, vec![vec![0], vec![1]]);
        assert_eq!(
            e.arguments(1, &HashMap::from([(0, json!(1))])).unwrap(),
            br#"["a",1]"#
        );
    }

    #[test]
    fn bad_requests_are_typed_errors_before_anything_runs() {
        assert_eq!(req(json!([])).unwrap_err(), RequestError::Empty);
        assert_eq!(
            req(json!([cmd("a", "f", json!([])), cmd("a", "g", json!([]))])).unwrap_err(),
            RequestError::DuplicateName("a".into())
        );
        assert_eq!(
            req(json!([cmd("a", "f", json!(["a"]))])).unwrap_err(),
            RequestError::Cycle(vec!["a".into(), "a".into()])
        );
        let cycle = req(json!([
            cmd("a", "f", json!(["c"])),
            cmd("b", "f", json!(["a"])),
            cmd("c", "f", json!(["b.z"])),
        ]))
        .unwrap_err();
        assert!(
            matches!(&cycle, RequestError::Cycle(p) if p.len() == 4),
            "{cycle:?}"
        );
        let answer: Value = serde_json::from_slice(&refuse(&json!(1), &cycle)).unwrap();
        assert_eq!(
            (answer["u"].clone(), answer["error"]["code"].clone()),
            (json!(1), json!(1003))
        );
        let role = parse(br#"{"role": "server", "u": "1"}"#).unwrap_err();
        assert_eq!(role.code(), 1004);
        assert_eq!(parse(b"{not json").unwrap_err().code(), 1002);
        assert_eq!(id_of(br#"{"u": "k", "role": 3}"#), json!("k"));
        let v = req(json!([{"name": "a", "fun": "f", "version_constraint": ">=1.0.0,<2.0.0"}]))
            .unwrap();
        assert!(
            v.commands[0]
                .version_req
                .as_ref()
                .unwrap()
                .matches(&semver::Version::new(1, 5, 0))
        );
        assert!(matches!(
            req(json!([{"name": "a", "fun": "f", "version_constraint": "soon"}])),
            Err(RequestError::Version(_))
        ));
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
