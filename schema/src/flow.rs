//! Bot flows: a graph of nodes (JSON) and its interpreter, without I/O.
//!
//! A flow is validated when it is saved ([`validate`]: every error names its node). The
//! interpreter is fed `(now, run, input)` ([`step`]) and answers what to do ([`Effect`]): send
//! a message, wait until a time, call an HTTP endpoint, hand off to a queue with the collected
//! variables, end. It never reads a clock, sleeps or does I/O; the shell that runs it performs
//! the effects and feeds back what happened (a customer's message, a timer, an HTTP result).
//!
//! Limits so that a bad flow can never run away: at most [`Limits::max_steps`] nodes per input
//! (the step limit), at most [`Limits::max_visits`] visits of one node per run (the loop
//! breaker), and a run older than [`Limits::lifetime`] ends. Each of them, and any failure (an
//! HTTP call that fails without an `on_error` node, a text naming a variable never set), hands
//! off to the flow's `fallback_queue` with the reason, so a customer is never left with a bot
//! that stopped. Once handed off or ended, a run answers nothing more (a late timer sends
//! nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::campaign::render;

/// A flow as stored (one version of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// The node a run starts at.
    pub start: String,
    /// Where a run that fails goes.
    pub fallback_queue: String,
    pub nodes: BTreeMap<String, Node>,
}

/// One node of a flow; texts may hold `{{variable}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Sends a text, with buttons if given (the channel shows them as it can).
    Send {
        text: String,
        #[serde(default)]
        buttons: Vec<String>,
        next: String,
    },
    /// Waits for the customer's next message into `var`; after `timeout_s` goes to `on_timeout`.
    Wait { var: String, timeout_s: u32, next: String, on_timeout: String },
    /// Goes to the first case whose value equals the variable (case and blanks ignored).
    Branch { var: String, cases: Vec<Case>, default: String },
    /// Sets a variable (its value may name others).
    Set { var: String, value: String, next: String },
    /// Calls an endpoint (GET, the URL may name variables) within `timeout_ms`; its answer goes
    /// into `var`. A failure goes to `on_error`, or hands off.
    Http {
        url: String,
        timeout_ms: u32,
        var: String,
        next: String,
        #[serde(default)]
        on_error: Option<String>,
    },
    /// Hands the conversation to a queue; the variables become the interaction's fields.
    Handoff { queue: String },
    /// The bot is done; the conversation stays with nobody until the customer writes.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub equals: String,
    pub next: String,
}

/// A flow that cannot be saved, naming the node (`None`: the flow as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub node: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(node) => write!(f, "node {node:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The longest wait of a `wait` node, and of an HTTP call.
pub const MAX_WAIT_S: u32 = 7 * 24 * 3600;
pub const MAX_HTTP_MS: u32 = 30_000;

fn is_var(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Every problem of `flow`, each naming its node: a missing start, an edge to no node, a bad
/// variable name, an empty text, a wait or HTTP timeout out of range, a URL that is not
/// http(s), an empty queue, a node no path reaches.
pub fn validate(flow: &Flow) -> Result<(), Vec<FlowError>> {
    let mut errors = Vec::new();
    let mut at = |node: &str, message: String| errors.push(FlowError { node: Some(node.to_owned()), message });
    if flow.nodes.is_empty() {
        return Err(vec![FlowError { node: None, message: "a flow needs at least one node".into() }]);
    }
    if flow.fallback_queue.trim().is_empty() {
        return Err(vec![FlowError { node: None, message: "fallback_queue is empty".into() }]);
    }
    let exists = |id: &str| flow.nodes.contains_key(id);
    for (id, node) in &flow.nodes {
        let mut edge = |name: &str, to: &str| {
            if !exists(to) {
                at(id, format!("{name} names no node ({to:?})"));
            }
        };
        match node {
            Node::Send { next, .. } | Node::Set { next, .. } => edge("next", next),
            Node::Wait { next, on_timeout, .. } => {
                edge("next", next);
                edge("on_timeout", on_timeout);
            }
            Node::Branch { cases, default, .. } => {
                for case in cases {
                    edge(&format!("case {:?}", case.equals), &case.next);
                }
                edge("default", default);
            }
            Node::Http { next, on_error, .. } => {
                edge("next", next);
                if let Some(e) = on_error {
                    edge("on_error", e);
                }
            }
            Node::Handoff { .. } | Node::End => {}
        }
        match node {
            Node::Send { text, buttons, .. } => {
                if text.trim().is_empty() {
                    at(id, "text is empty".into());
                }
                if buttons.iter().any(|b| b.trim().is_empty()) {
                    at(id, "a button has no text".into());
                }
            }
            Node::Wait { var, timeout_s, .. } => {
                if !is_var(var) {
                    at(id, format!("var {var:?} is not a variable name (letters, digits, _)"));
                }
                if *timeout_s == 0 || *timeout_s > MAX_WAIT_S {
                    at(id, format!("timeout_s must be 1 to {MAX_WAIT_S}"));
                }
            }
            Node::Branch { var, cases, .. } => {
                if !is_var(var) {
                    at(id, format!("var {var:?} is not a variable name (letters, digits, _)"));
                }
                if cases.is_empty() {
                    at(id, "a branch needs at least one case".into());
                }
            }
            Node::Set { var, .. } => {
                if !is_var(var) {
                    at(id, format!("var {var:?} is not a variable name (letters, digits, _)"));
                }
            }
            Node::Http { url, timeout_ms, var, .. } => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    at(id, format!("url {url:?} is not http(s)"));
                }
                if *timeout_ms == 0 || *timeout_ms > MAX_HTTP_MS {
                    at(id, format!("timeout_ms must be 1 to {MAX_HTTP_MS}"));
                }
                if !is_var(var) {
                    at(id, format!("var {var:?} is not a variable name (letters, digits, _)"));
                }
            }
            Node::Handoff { queue } => {
                if queue.trim().is_empty() {
                    at(id, "queue is empty".into());
                }
            }
            Node::End => {}
        }
    }
    if !exists(&flow.start) {
        errors.push(FlowError { node: None, message: format!("start names no node ({:?})", flow.start) });
    } else {
        // nodes no path from the start reaches are mistakes (an edge pointing elsewhere)
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![flow.start.as_str()];
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            match flow.nodes.get(id) {
                Some(Node::Send { next, .. } | Node::Set { next, .. }) => todo.push(next),
                Some(Node::Wait { next, on_timeout, .. }) => todo.extend([next.as_str(), on_timeout.as_str()]),
                Some(Node::Branch { cases, default, .. }) => {
                    todo.extend(cases.iter().map(|c| c.next.as_str()));
                    todo.push(default);
                }
                Some(Node::Http { next, on_error, .. }) => {
                    todo.push(next);
                    todo.extend(on_error.as_deref());
                }
                _ => {}
            }
        }
        for id in flow.nodes.keys().filter(|id| !seen.contains(id.as_str())) {
            errors.push(FlowError { node: Some(id.clone()), message: "no path from the start reaches it".into() });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The limits of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nodes run for one input at most (the step limit).
    pub max_steps: u32,
    /// Visits of one node in a run at most (the loop breaker).
    pub max_visits: u32,
    /// How long a run may last.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_steps: 50, max_visits: 20, lifetime: Duration::from_secs(24 * 3600) }
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Position {
    /// At this node, about to run it.
    At { node: String },
    /// Waiting for the customer's message (node `node`) until `until`.
    Waiting { node: String, until: Duration },
    /// Waiting for the answer of the HTTP call of node `node`.
    Calling { node: String },
    /// Handed off or ended: nothing more happens.
    Over,
}

/// One run of a flow, stored between inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub position: Position,
    pub vars: BTreeMap<String, String>,
    pub started: Duration,
    pub visits: BTreeMap<String, u32>,
}

impl Run {
    /// A run of `flow` started at `now`, with the variables known at the start.
    pub fn new(flow: &Flow, now: Duration, vars: BTreeMap<String, String>) -> Run {
        Run { position: Position::At { node: flow.start.clone() }, vars, started: now, visits: BTreeMap::new() }
    }

    /// A run started at `now` at the node `node` instead of the flow's start (a re-entry); a
    /// node the flow does not have hands off to the fallback queue at the first step.
    pub fn at(node: &str, now: Duration, vars: BTreeMap<String, String>) -> Run {
        Run { position: Position::At { node: node.to_owned() }, vars, started: now, visits: BTreeMap::new() }
    }

    pub fn is_over(&self) -> bool {
        self.position == Position::Over
    }
}

/// What happened since the last step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Run from where the run is (its start).
    Begin,
    /// The customer wrote (or pressed a button with) this text.
    Message(String),
    /// A timer the run asked for came (or any wake-up: a stale one changes nothing).
    Timer,
    /// The HTTP call's answer body, or why it failed (including its timeout).
    Http(Result<String, String>),
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        text: String,
        buttons: Vec<String>,
    },
    /// Feed [`Input::Timer`] at this time (the run's clock).
    WakeAt(Duration),
    /// Call this URL (GET) within the timeout and feed [`Input::Http`].
    Http {
        url: String,
        timeout: Duration,
    },
    /// Hand the conversation to `queue`, the variables as the interaction's fields; `reason`
    /// when the bot failed or a limit stopped it.
    Handoff {
        queue: String,
        fields: BTreeMap<String, String>,
        reason: Option<String>,
    },
    End,
}

/// Feeds `input` at `now` to `run` of `flow`; returns the effects. A run that is over answers
/// nothing.
pub fn step(flow: &Flow, limits: &Limits, run: &mut Run, now: Duration, input: Input) -> Vec<Effect> {
    let mut out = Vec::new();
    if run.is_over() {
        return out;
    }
    if now.saturating_sub(run.started) >= limits.lifetime {
        hand_off(flow, run, &mut out, "the bot's lifetime ran out");
        return out;
    }
    // the input moves the run from where it waits
    let position = run.position.clone();
    let next = match (&position, input) {
        (Position::At { node }, Input::Begin) => Some(node.clone()),
        (Position::Waiting { node, .. }, Input::Message(text)) => match flow.nodes.get(node) {
            Some(Node::Wait { var, next, .. }) => {
                run.vars.insert(var.clone(), text);
                Some(next.clone())
            }
            _ => None,
        },
        (Position::Waiting { node, until }, Input::Timer) if now >= *until => match flow.nodes.get(node) {
            Some(Node::Wait { on_timeout, .. }) => Some(on_timeout.clone()),
            _ => None,
        },
        (Position::Calling { node }, Input::Http(result)) => match (flow.nodes.get(node), result) {
            (Some(Node::Http { var, next, .. }), Ok(body)) => {
                run.vars.insert(var.clone(), body);
                Some(next.clone())
            }
            (Some(Node::Http { on_error: Some(e), var, .. }), Err(error)) => {
                run.vars.insert(format!("{var}_error"), error);
                Some(e.clone())
            }
            (Some(Node::Http { .. }), Err(error)) => {
                hand_off(flow, run, &mut out, &format!("HTTP node {node:?} failed: {error}"));
                return out;
            }
            _ => None,
        },
        // anything else (a stale timer, a message while a call runs) changes nothing
        _ => return out,
    };
    let Some(mut current) = next else {
        hand_off(flow, run, &mut out, "the flow changed under the run");
        return out;
    };
    for _ in 0..limits.max_steps {
        let visits = run.visits.entry(current.clone()).or_default();
        *visits += 1;
        if *visits > limits.max_visits {
            hand_off(flow, run, &mut out, &format!("loop: node {current:?} ran {} times", limits.max_visits));
            return out;
        }
        let Some(node) = flow.nodes.get(&current) else {
            hand_off(flow, run, &mut out, &format!("no node {current:?}"));
            return out;
        };
        current = match node {
            Node::Send { text, buttons, next } => match render(text, &run.vars) {
                Ok(text) => {
                    out.push(Effect::Send { text, buttons: buttons.clone() });
                    next.clone()
                }
                Err(e) => {
                    hand_off(flow, run, &mut out, &format!("node {current:?}: {e}"));
                    return out;
                }
            },
            Node::Set { var, value, next } => match render(value, &run.vars) {
                Ok(value) => {
                    run.vars.insert(var.clone(), value);
                    next.clone()
                }
                Err(e) => {
                    hand_off(flow, run, &mut out, &format!("node {current:?}: {e}"));
                    return out;
                }
            },
            Node::Branch { var, cases, default } => {
                let value = run.vars.get(var).map(|v| v.trim().to_lowercase()).unwrap_or_default();
                cases.iter().find(|c| c.equals.trim().to_lowercase() == value).map_or(default, |c| &c.next).clone()
            }
            Node::Wait { timeout_s, .. } => {
                let until = now + Duration::from_secs(u64::from(*timeout_s));
                run.position = Position::Waiting { node: current, until };
                out.push(Effect::WakeAt(until));
                return out;
            }
            Node::Http { url, timeout_ms, .. } => match render(url, &url_vars(&run.vars)) {
                Ok(url) => {
                    run.position = Position::Calling { node: current };
                    out.push(Effect::Http { url, timeout: Duration::from_millis(u64::from(*timeout_ms)) });
                    return out;
                }
                Err(e) => {
                    hand_off(flow, run, &mut out, &format!("node {current:?}: {e}"));
                    return out;
                }
            },
            Node::Handoff { queue } => {
                out.push(Effect::Handoff { queue: queue.clone(), fields: run.vars.clone(), reason: None });
                run.position = Position::Over;
                return out;
            }
            Node::End => {
                out.push(Effect::End);
                run.position = Position::Over;
                return out;
            }
        };
    }
    hand_off(flow, run, &mut out, &format!("step limit: {} nodes for one input", limits.max_steps));
    out
}

/// The variables as an HTTP node's URL takes them: percent-encoded (every byte but the
/// unreserved `A-Z a-z 0-9 - . _ ~`), so what a customer wrote stays one value and cannot add a
/// path, a query or a host to the call.
pub fn url_vars(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let mut encoded = String::with_capacity(v.len());
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    encoded.push(char::from(b));
                } else {
                    encoded.push_str(&format!("%{b:02X}"));
                }
            }
            (k.clone(), encoded)
        })
        .collect()
}

fn hand_off(flow: &Flow, run: &mut Run, out: &mut Vec<Effect>, reason: &str) {
    out.push(Effect::Handoff {
        queue: flow.fallback_queue.clone(),
        fields: run.vars.clone(),
        reason: Some(reason.to_owned()),
    });
    run.position = Position::Over;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn flow(value: serde_json::Value) -> Flow {
        serde_json::from_value(value).unwrap()
    }

    /// Greets, asks two questions with buttons, looks the order up, hands off with the answers.
    fn greeting() -> Flow {
        flow(json!({
            "start": "hello",
            "fallback_queue": "support",
            "nodes": {
                "hello": {"kind": "send", "text": "Hi! Is it about an order?", "buttons": ["Yes", "No"], "next": "ask_topic"},
                "ask_topic": {"kind": "wait", "var": "topic", "timeout_s": 300, "next": "route", "on_timeout": "bye"},
                "route": {"kind": "branch", "var": "topic", "cases": [{"equals": "yes", "next": "ask_order"}], "default": "human"},
                "ask_order": {"kind": "send", "text": "Your order number?", "next": "wait_order"},
                "wait_order": {"kind": "wait", "var": "order", "timeout_s": 300, "next": "lookup", "on_timeout": "bye"},
                "lookup": {"kind": "http", "url": "https://shop.example/orders/{{order}}", "timeout_ms": 2000, "var": "status", "next": "mark"},
                "mark": {"kind": "set", "var": "source", "value": "bot: {{topic}}", "next": "human"},
                "human": {"kind": "handoff", "queue": "orders"},
                "bye": {"kind": "send", "text": "Write any time.", "next": "end"},
                "end": {"kind": "end"}
            }
        }))
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_node_kind_from_greeting_to_handoff() {
        let f = greeting();
        validate(&f).unwrap();
        let limits = Limits::default();
        let mut run = Run::new(&f, s(0), BTreeMap::new());
        assert_eq!(
            step(&f, &limits, &mut run, s(0), Input::Begin),
            vec![
                Effect::Send { text: "Hi! Is it about an order?".into(), buttons: vec!["Yes".into(), "No".into()] },
                Effect::WakeAt(s(300)),
            ]
        );
        assert_eq!(step(&f, &limits, &mut run, s(1), Input::Timer), vec![], "a timer before its time is stale");
        assert_eq!(
            step(&f, &limits, &mut run, s(10), Input::Message(" YES ".into())),
            vec![Effect::Send { text: "Your order number?".into(), buttons: vec![] }, Effect::WakeAt(s(310))]
        );
        assert_eq!(
            step(&f, &limits, &mut run, s(20), Input::Message("7731".into())),
            vec![Effect::Http { url: "https://shop.example/orders/7731".into(), timeout: Duration::from_millis(2000) }]
        );
        assert_eq!(step(&f, &limits, &mut run, s(20), Input::Message("hello?".into())), vec![], "while calling");
        assert_eq!(
            step(&f, &limits, &mut run, s(21), Input::Http(Ok("shipped".into()))),
            vec![Effect::Handoff {
                queue: "orders".into(),
                fields: vars(&[("order", "7731"), ("source", "bot:  YES "), ("status", "shipped"), ("topic", " YES ")]),
                reason: None,
            }]
        );
        assert!(run.is_over());
        assert_eq!(step(&f, &limits, &mut run, s(310), Input::Timer), vec![], "a late timer sends nothing");
        assert_eq!(step(&f, &limits, &mut run, s(400), Input::Message("hi".into())), vec![]);
    }

    #[test]
    fn variables_in_an_http_url_are_percent_encoded() {
        let f = flow(json!({"start": "a", "fallback_queue": "support", "nodes": {
            "a": {"kind": "http", "url": "https://shop.example/orders/{{order}}?q={{q}}", "timeout_ms": 100,
                  "var": "r", "next": "b"},
            "b": {"kind": "end"}}}));
        let mut run = Run::new(&f, s(0), vars(&[("order", "../admin?x=1#"), ("q", "Ж b")]));
        assert_eq!(
            step(&f, &Limits::default(), &mut run, s(0), Input::Begin),
            vec![Effect::Http {
                url: "https://shop.example/orders/..%2Fadmin%3Fx%3D1%23?q=%D0%96%20b".into(),
                timeout: Duration::from_millis(100)
            }]
        );
    }

    #[test]
    fn a_wait_times_out_and_a_branch_takes_its_default() {
        let f = greeting();
        let limits = Limits::default();
        let mut run = Run::new(&f, s(0), BTreeMap::new());
        step(&f, &limits, &mut run, s(0), Input::Begin);
        assert_eq!(
            step(&f, &limits, &mut run, s(300), Input::Timer),
            vec![Effect::Send { text: "Write any time.".into(), buttons: vec![] }, Effect::End]
        );
        let mut other = Run::new(&f, s(0), BTreeMap::new());
        step(&f, &limits, &mut other, s(0), Input::Begin);
        assert!(matches!(
            step(&f, &limits, &mut other, s(5), Input::Message("No".into())).as_slice(),
            [Effect::Handoff { queue, reason: None, .. }] if queue == "orders"
        ));
    }

    #[test]
    fn a_failing_http_node_hands_off_with_the_reason() {
        let f = greeting();
        let limits = Limits::default();
        let mut run = Run::new(&f, s(0), BTreeMap::new());
        step(&f, &limits, &mut run, s(0), Input::Begin);
        step(&f, &limits, &mut run, s(1), Input::Message("yes".into()));
        step(&f, &limits, &mut run, s(2), Input::Message("42".into()));
        let out = step(&f, &limits, &mut run, s(4), Input::Http(Err("timed out after 2000 ms".into())));
        assert_eq!(
            out,
            vec![Effect::Handoff {
                queue: "support".into(),
                fields: vars(&[("order", "42"), ("topic", "yes")]),
                reason: Some("HTTP node \"lookup\" failed: timed out after 2000 ms".into()),
            }]
        );
        // with an on_error node the flow goes on, the error in `<var>_error`
        let mut g = greeting();
        if let Some(Node::Http { on_error, .. }) = g.nodes.get_mut("lookup") {
            *on_error = Some("bye".into());
        }
        let mut run = Run::new(&g, s(0), BTreeMap::new());
        step(&g, &limits, &mut run, s(0), Input::Begin);
        step(&g, &limits, &mut run, s(1), Input::Message("yes".into()));
        step(&g, &limits, &mut run, s(2), Input::Message("42".into()));
        let out = step(&g, &limits, &mut run, s(3), Input::Http(Err("502".into())));
        assert_eq!(out.last(), Some(&Effect::End));
        assert_eq!(run.vars.get("status_error").map(String::as_str), Some("502"));
    }

    fn looping() -> Flow {
        flow(json!({
            "start": "a",
            "fallback_queue": "support",
            "nodes": {
                "a": {"kind": "set", "var": "n", "value": "x{{n}}", "next": "b"},
                "b": {"kind": "send", "text": "again", "next": "a"}
            }
        }))
    }

    #[test]
    fn the_loop_breaker_and_the_step_limit_hand_off() {
        let f = looping();
        let mut run = Run::new(&f, s(0), vars(&[("n", "")]));
        let limits = Limits { max_steps: 1000, max_visits: 3, lifetime: s(3600) };
        let out = step(&f, &limits, &mut run, s(0), Input::Begin);
        assert_eq!(out.iter().filter(|e| matches!(e, Effect::Send { .. })).count(), 3);
        assert!(matches!(out.last(), Some(Effect::Handoff { reason: Some(r), .. }) if r.contains("loop: node \"a\"")));
        let mut run = Run::new(&f, s(0), vars(&[("n", "")]));
        let limits = Limits { max_steps: 7, max_visits: 100, lifetime: s(3600) };
        let out = step(&f, &limits, &mut run, s(0), Input::Begin);
        assert_eq!(out.iter().filter(|e| matches!(e, Effect::Send { .. })).count(), 3);
        assert!(matches!(out.last(), Some(Effect::Handoff { reason: Some(r), fields, .. })
            if r == "step limit: 7 nodes for one input" && fields["n"] == "xxxx"));
        assert!(run.is_over());
    }

    #[test]
    fn the_lifetime_ends_a_run_and_a_missing_variable_hands_off() {
        let f = greeting();
        let limits = Limits { lifetime: s(60), ..Limits::default() };
        let mut run = Run::new(&f, s(0), BTreeMap::new());
        step(&f, &limits, &mut run, s(0), Input::Begin);
        let out = step(&f, &limits, &mut run, s(61), Input::Message("yes".into()));
        assert!(matches!(out.as_slice(), [Effect::Handoff { reason: Some(r), .. }] if r.contains("lifetime")));
        let bad = flow(json!({"start": "a", "fallback_queue": "support", "nodes": {
            "a": {"kind": "send", "text": "Dear {{name}}", "next": "b"}, "b": {"kind": "end"}}}));
        let mut run = Run::new(&bad, s(0), BTreeMap::new());
        let out = step(&bad, &Limits::default(), &mut run, s(0), Input::Begin);
        assert!(
            matches!(out.as_slice(), [Effect::Handoff { reason: Some(r), .. }] if r == "node \"a\": no value for {{name}}")
        );
    }

    #[test]
    fn validation_names_each_bad_node() {
        let f = flow(json!({
            "start": "hello",
            "fallback_queue": "support",
            "nodes": {
                "hello": {"kind": "send", "text": " ", "next": "nowhere"},
                "w": {"kind": "wait", "var": "a b", "timeout_s": 0, "next": "hello", "on_timeout": "hello"},
                "h": {"kind": "http", "url": "ftp://x", "timeout_ms": 99999, "var": "r", "next": "hello"},
                "q": {"kind": "handoff", "queue": ""}
            }
        }));
        let errors: Vec<String> = validate(&f).unwrap_err().iter().map(ToString::to_string).collect();
        for expected in [
            "node \"hello\": next names no node (\"nowhere\")",
            "node \"hello\": text is empty",
            "node \"w\": var \"a b\" is not a variable name (letters, digits, _)",
            "node \"w\": timeout_s must be 1 to 604800",
            "node \"h\": url \"ftp://x\" is not http(s)",
            "node \"h\": timeout_ms must be 1 to 30000",
            "node \"q\": queue is empty",
            "node \"w\": no path from the start reaches it",
        ] {
            assert!(errors.iter().any(|e| e == expected), "{expected:?} in {errors:#?}");
        }
        let unknown = serde_json::from_value::<Flow>(json!({"start": "a", "fallback_queue": "s",
            "nodes": {"a": {"kind": "teleport"}}}));
        assert!(unknown.is_err(), "an unknown node kind is refused when the JSON is read");
        let missing = flow(json!({"start": "x", "fallback_queue": "s", "nodes": {"a": {"kind": "end"}}}));
        assert!(validate(&missing).unwrap_err().iter().any(|e| e.node.is_none() && e.message.contains("start")));
    }
}
