//! Multi-step calls, sans-IO: a [`Request`] of several [`Command`]s whose
//! arguments take other commands' results. The node runs it level by level
//! ([`Request::levels`]): the commands of a level concurrently, each routed
//! by its own `locs`, and the next level's arguments take their results
//! ([`Request::arguments`]). Upstream MPREG's clients send such requests
//! as JSON ([`upstream`](crate::upstream)); the native API builds them with
//! [`Command::new`] and [`Request::new`].
//!
//! **References.** An argument (positional, keyword, or nested in lists and
//! objects) that is a string equal to another command's `name` takes that
//! command's result; `"name.field.sub"` takes a field of it (objects by
//! key, lists by index). The explicit form `{"$ref": "name.field"}` always
//! refers; with [`References::Explicit`] only it does, so a user string
//! that happens to equal a command's name stays a string.
//!
//! **Unlike upstream**: keyword arguments create ordering edges too; an
//! empty request, a duplicate command name and a cycle (self-reference
//! included) are refused before anything runs.
//!
//! **Handlers** receive the JSON array of positional arguments, as native
//! calls do, with the keyword arguments appended as one final JSON object
//! when there are any: `f(1, 2, scale=3)` arrives as `[1, 2, {"scale": 3}]`.

use crate::catalog::ResourceSet;
use crate::records::CallError;
use compact_str::CompactString;
use semver::VersionReq;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use thiserror::Error;

/// The most commands one request may hold.
pub const MAX_COMMANDS: usize = 1024;

/// Every command's result by command name: what a native caller gets.
pub type Results = BTreeMap<String, Value>;

/// One command of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Its name within the request (what references name).
    pub name: String,
    /// The function to run.
    pub function: CompactString,
    /// Positional arguments (references allowed).
    pub args: Vec<Value>,
    /// Keyword arguments (references allowed).
    pub kwargs: Map<String, Value>,
    /// Resources its provider must have.
    pub locs: ResourceSet,
    /// Accepted versions.
    pub version_req: Option<VersionReq>,
    /// The cluster that must serve it.
    pub target_cluster: Option<CompactString>,
}

impl Command {
    /// Command `name` running `function` with no arguments.
    pub fn new(name: impl Into<String>, function: impl AsRef<str>) -> Command {
        Command {
            name: name.into(),
            function: function.as_ref().into(),
            args: Vec::new(),
            kwargs: Map::new(),
            locs: ResourceSet::default(),
            version_req: None,
            target_cluster: None,
        }
    }

    /// Appends a positional argument.
    pub fn arg(mut self, v: impl Into<Value>) -> Command {
        self.args.push(v.into());
        self
    }

    /// Sets a keyword argument.
    pub fn kwarg(mut self, key: impl Into<String>, v: impl Into<Value>) -> Command {
        self.kwargs.insert(key.into(), v.into());
        self
    }

    /// Requires the provider to have these resources.
    pub fn locs(mut self, locs: impl IntoIterator<Item = impl AsRef<str>>) -> Command {
        self.locs = locs.into_iter().map(|l| l.as_ref().into()).collect();
        self
    }

    /// Accepts only versions matching `req`.
    pub fn version(mut self, req: VersionReq) -> Command {
        self.version_req = Some(req);
        self
    }

    /// Requires the command to be served in `cluster`.
    pub fn cluster(mut self, cluster: impl AsRef<str>) -> Command {
        self.target_cluster = Some(cluster.as_ref().into());
        self
    }

    /// Commands from a JSON list in upstream's shape: objects with `name`,
    /// `fun`, and optionally `args`, `kwargs`, `locs`,
    /// `version_constraint`, `target_cluster`. Upstream's `function_id` is
    /// accepted as the function's name (here a function is identified by
    /// name and version): it may replace `fun` or repeat it; one naming
    /// another function is refused.
    pub fn list_from_json(json: &[u8]) -> Result<Vec<Command>, RequestError> {
        let raw: Vec<RawCommand> =
            serde_json::from_slice(json).map_err(|e| RequestError::Malformed(e.to_string()))?;
        raw.into_iter().map(Command::try_from).collect()
    }

    /// Commands as a JSON list in upstream's shape.
    pub fn list_to_json(commands: &[Command]) -> Vec<u8> {
        let raw: Vec<RawCommand> = commands.iter().map(RawCommand::from).collect();
        // Strings, lists and maps always serialise.
        serde_json::to_vec(&raw).unwrap_or_default()
    }
}

/// A command as upstream's JSON spells it.
#[derive(Serialize, Deserialize)]
pub(crate) struct RawCommand {
    name: String,
    #[serde(default)]
    fun: String,
    /// Upstream's id of a function capability. A function's id here is its
    /// name: it may stand for `fun`, or repeat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function_id: Option<String>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
    #[serde(default)]
    locs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_constraint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_cluster: Option<String>,
}

impl TryFrom<RawCommand> for Command {
    type Error = RequestError;

    fn try_from(c: RawCommand) -> Result<Command, RequestError> {
        let function = match (c.fun.as_str(), c.function_id.as_deref()) {
            ("", None | Some("")) => {
                let e = format!("command {:?} has neither fun nor function_id", c.name);
                return Err(RequestError::Malformed(e));
            }
            (f, None | Some("")) => f.into(),
            ("", Some(id)) => id.into(),
            (f, Some(id)) if f == id => f.into(),
            (f, Some(id)) => {
                return Err(RequestError::Malformed(format!(
                    "command {:?}: function_id {id:?} is not fun {f:?} (a function's id is its name)",
                    c.name
                )));
            }
        };
        let version_req = match c.version_constraint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(VersionReq::parse(v).map_err(|_| RequestError::Version(v.into()))?),
        };
        Ok(Command {
            name: c.name,
            function,
            args: c.args,
            kwargs: c.kwargs,
            locs: c.locs.iter().map(CompactString::from).collect(),
            version_req,
            target_cluster: c.target_cluster.map(Into::into),
        })
    }
}

impl From<&Command> for RawCommand {
    fn from(c: &Command) -> RawCommand {
        RawCommand {
            name: c.name.clone(),
            fun: c.function.to_string(),
            function_id: None,
            args: c.args.clone(),
            kwargs: c.kwargs.clone(),
            locs: c.locs.iter().map(ToString::to_string).collect(),
            version_constraint: c.version_req.as_ref().map(ToString::to_string),
            target_cluster: c.target_cluster.as_ref().map(ToString::to_string),
        }
    }
}

/// Which arguments refer to other commands' results.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum References {
    /// Strings equal to a command's name (or `name.field`), and
    /// `{"$ref": …}` objects: upstream's rule.
    #[default]
    Names,
    /// Only `{"$ref": …}` objects.
    Explicit,
}

/// A checked request: its commands ordered into levels.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Its commands, in the order given.
    pub commands: Vec<Command>,
    /// Indices of `commands`, level by level: a command's references all
    /// point at earlier levels.
    pub levels: Vec<Vec<usize>>,
    /// The budget of the whole request; `None` takes the node's
    /// `calls.default_timeout`.
    pub timeout: Option<Duration>,
    references: References,
    /// Command index by name.
    index: HashMap<String, usize>,
}

/// Why a request was refused, before anything ran or (a missing field) when
/// a result was substituted.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RequestError {
    /// Not JSON of the expected shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// An upstream request with a role other than `rpc`.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    /// No commands.
    #[error("the request has no commands")]
    Empty,
    /// More than [`MAX_COMMANDS`] commands.
    #[error("the request has {0} commands, more than {MAX_COMMANDS}")]
    TooManyCommands(usize),
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
    /// The variant's name (for machine-readable error details).
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "Malformed",
            RequestError::UnknownRole(_) => "UnknownRole",
            RequestError::Empty => "Empty",
            RequestError::TooManyCommands(_) => "TooManyCommands",
            RequestError::DuplicateName(_) => "DuplicateName",
            RequestError::Cycle(_) => "Cycle",
            RequestError::Version(_) => "Version",
            RequestError::Field { .. } => "Field",
        }
    }
}

/// Why a multi-step call has no results.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ManyError {
    /// The request was refused.
    #[error(transparent)]
    Invalid(#[from] RequestError),
    /// The request as a whole failed: the node left or stopped, was
    /// overloaded, or could not be reached.
    #[error("the request failed: {0}")]
    Request(CallError),
    /// A command failed; the request stopped there (the other commands of
    /// its level were cancelled).
    #[error("command {command:?} failed: {error}")]
    Failed {
        /// The command's name.
        command: String,
        /// Why.
        error: CallError,
    },
}

impl Request {
    /// Checks `commands` and orders them into levels, with upstream's rule
    /// for references.
    pub fn new(commands: Vec<Command>) -> Result<Request, RequestError> {
        Request::with_references(commands, References::Names)
    }

    /// As [`Request::new`], choosing which arguments refer.
    pub fn with_references(
        commands: Vec<Command>,
        references: References,
    ) -> Result<Request, RequestError> {
        if commands.is_empty() {
            return Err(RequestError::Empty);
        }
        if commands.len() > MAX_COMMANDS {
            return Err(RequestError::TooManyCommands(commands.len()));
        }
        let mut index: HashMap<String, usize> = HashMap::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            if index.insert(c.name.clone(), i).is_some() {
                return Err(RequestError::DuplicateName(c.name.clone()));
            }
        }
        let explicit_only = references == References::Explicit;
        let deps: Vec<Vec<usize>> = commands
            .iter()
            .map(|c| {
                let mut d = Vec::new();
                for v in c.args.iter().chain(c.kwargs.values()) {
                    visit_refs(v, explicit_only, &mut |r| {
                        d.extend(resolve(r, &index).map(|(j, _)| j));
                    });
                }
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        let levels = levels(&commands, &deps)?;
        Ok(Request {
            commands,
            levels,
            timeout: None,
            references,
            index,
        })
    }

    /// Sets the budget of the whole request.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Which arguments refer.
    pub fn references(&self) -> References {
        self.references
    }

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

    /// The results of the commands at `indices`, by name.
    pub fn named(
        &self,
        indices: impl IntoIterator<Item = usize>,
        results: &HashMap<usize, Value>,
    ) -> Map<String, Value> {
        indices
            .into_iter()
            .filter_map(|i| Some((self.commands[i].name.clone(), results.get(&i)?.clone())))
            .collect()
    }

    fn substitute(
        &self,
        v: &Value,
        command: &str,
        results: &HashMap<usize, Value>,
    ) -> Result<Value, RequestError> {
        let missing = |r: &str| RequestError::Field {
            command: command.to_string(),
            reference: r.to_string(),
        };
        let lookup = |r: &str| -> Option<Result<Value, RequestError>> {
            let (j, path) = resolve(r, &self.index)?;
            let result = results.get(&j)?;
            Some(field(result, path).cloned().ok_or_else(|| missing(r)))
        };
        match v {
            Value::String(s) if self.references == References::Names => match lookup(s) {
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
                    return lookup(r).unwrap_or_else(|| Err(missing(r)));
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

/// Kahn's algorithm by levels, linear in commands and references; what is
/// left over lies on a cycle or behind one.
fn levels(commands: &[Command], deps: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, RequestError> {
    let n = commands.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut placed = 0;
    while !ready.is_empty() {
        placed += ready.len();
        let mut next = Vec::new();
        for &i in &ready {
            for &k in &dependents[i] {
                waiting[k] -= 1;
                if waiting[k] == 0 {
                    next.push(k);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut ready, next));
    }
    if placed == n {
        return Ok(out);
    }
    // Walk unplaced dependencies from an unplaced command until one
    // repeats: that is a cycle (every unplaced command waits on another).
    let unplaced = |i: usize| waiting[i] > 0;
    let start = (0..n).find(|&i| unplaced(i)).unwrap_or(0);
    let mut on_path: Vec<Option<usize>> = vec![None; n];
    let mut path = vec![start];
    on_path[start] = Some(0);
    loop {
        let at = path[path.len() - 1];
        let Some(&next) = deps[at].iter().find(|&&j| unplaced(j)) else {
            return Err(RequestError::Cycle(vec![commands[start].name.clone()]));
        };
        if let Some(p) = on_path[next] {
            let mut cycle: Vec<String> = path[p..]
                .iter()
                .map(|&i| commands[i].name.clone())
                .collect();
            cycle.push(commands[next].name.clone());
            return Err(RequestError::Cycle(cycle));
        }
        on_path[next] = Some(path.len());
        path.push(next);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(cmds: Value) -> Result<Request, RequestError> {
        Request::new(Command::list_from_json(cmds.to_string().as_bytes())?)
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
        let e = Request::with_references(
            vec![
                Command::new("a", "f"),
                Command::new("b", "g").arg("a").arg(json!({"$ref": "a"})),
            ],
            References::Explicit,
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
        for bad in [
            json!({"name": 1}),
            json!([{"name": "a"}]),
            json!([{"name": "a", "fun": "f", "function_id": "g"}]),
        ] {
            let e = Command::list_from_json(bad.to_string().as_bytes());
            assert!(matches!(e, Err(RequestError::Malformed(_))), "{bad}: {e:?}");
        }
        // A function's id is its name.
        let by_id = json!([{"name": "a", "function_id": "f"}, {"name": "b", "fun": "f", "function_id": "f"}]);
        let cmds = Command::list_from_json(by_id.to_string().as_bytes()).unwrap();
        assert!(cmds.iter().all(|c| c.function == "f"));
    }

    #[test]
    fn long_chains_and_cycles_order_in_linear_time_up_to_the_limit() {
        let chain = |n: usize, cyclic: bool| -> Vec<Command> {
            (0..n)
                .map(|i| {
                    let c = Command::new(format!("c{i}"), "f");
                    match (i, cyclic) {
                        (0, false) => c,
                        (0, true) => c.arg(format!("c{}", n - 1)),
                        _ => c.arg(format!("c{}.x", i - 1)),
                    }
                })
                .collect()
        };
        let r = Request::new(chain(MAX_COMMANDS, false)).unwrap();
        assert_eq!(r.levels.len(), MAX_COMMANDS);
        assert!(r.levels.iter().enumerate().all(|(i, l)| *l == [i]));
        let e = Request::new(chain(MAX_COMMANDS, true)).unwrap_err();
        assert!(
            matches!(&e, RequestError::Cycle(p) if p.len() == MAX_COMMANDS + 1),
            "{e:?}"
        );
        assert_eq!(
            Request::new(chain(MAX_COMMANDS + 1, false)).unwrap_err(),
            RequestError::TooManyCommands(MAX_COMMANDS + 1)
        );
        // One command referring to every other, many times over.
        let mut wide = chain(MAX_COMMANDS - 1, false);
        let all: Vec<Value> = (0..MAX_COMMANDS - 1)
            .flat_map(|i| [json!(format!("c{i}")), json!(format!("c{i}"))])
            .collect();
        wide.push(Command::new("last", "f").arg(all));
        let r = Request::new(wide).unwrap();
        assert_eq!(r.levels.last().unwrap(), &[MAX_COMMANDS - 1]);
    }

    #[test]
    fn commands_survive_their_json_form() {
        let cmds = vec![
            Command::new("a", "f").arg(1).kwarg("k", "v").locs(["gpu"]),
            Command::new("b", "g")
                .arg("a.x")
                .version(VersionReq::parse("^1.2").unwrap())
                .cluster("eu"),
        ];
        let back = Command::list_from_json(&Command::list_to_json(&cmds)).unwrap();
        assert_eq!(back, cmds);
    }
}
