//! Upstream MPREG's JSON requests (`mpreg_proto::upstream`): any bytes
//! parse to a request or a typed error, never a panic; a request's levels
//! order every command after the ones it refers to; its commands survive
//! their native JSON form; substituting results
//! of any shape and answering produce JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpreg_proto::{multistep, upstream};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let _ = upstream::is_request(data);
    let u = upstream::id_of(data);
    let req = match upstream::parse(data) {
        Ok(r) => r,
        Err(e) => {
            let answer: Value = serde_json::from_slice(&upstream::refuse(&u, &e)).unwrap();
            assert_eq!(answer["error"]["code"], upstream::refusal_code(&e));
            return;
        }
    };
    let steps = &req.steps;
    let placed: usize = steps.levels.iter().map(Vec::len).sum();
    assert_eq!(placed, steps.commands.len(), "every command on one level");
    // The native form of the commands parses back to the same request.
    let json = multistep::Command::list_to_json(&steps.commands);
    let again = multistep::Command::list_from_json(&json).unwrap();
    let again = multistep::Request::with_references(again, steps.references()).unwrap();
    assert_eq!(again.levels, steps.levels);
    // Results of varied shapes, from the input's own bytes.
    let mut results = HashMap::new();
    for (n, level) in steps.levels.iter().enumerate() {
        for &i in level {
            let _ = steps.arguments(i, &results);
            let shape = data.get(i % data.len().max(1)).copied().unwrap_or(0);
            let v = match shape % 4 {
                0 => json!(null),
                1 => json!({"a": [n, {"b": "c"}]}),
                2 => json!([1, "two", [3]]),
                _ => multistep::result_value(&data[..data.len().min(64)]),
            };
            results.insert(i, v);
        }
    }
    let answer = upstream::respond(&req.u, steps, &results, true, true, Duration::ZERO);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert!(answer["error"].is_null());
});
