//! A fake of SMSC.ru's HTTP API for tests (feature `fake`), speaking its wire format (see
//! `sms`): `send.php` and `status.php` under `/sys/`, by GET or POST (form), with `login` and
//! `psw` checked (error 2 `authorise error`), `fmt=3` answers (JSON), `phones` checked (error 7
//! `invalid number`), `mes` required (error 1 `parameters error`). A message starts at status
//! -1 (waiting); the test moves it ([`FakeSmsc::set_status`]) or makes every message reach one
//! status when it is next asked about ([`FakeSmsc::set_auto_status`]). [`FakeSmsc::fail_next`]
//! answers the next request with an HTTP error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    pub id: u64,
    pub phone: String,
    pub text: String,
    pub sender: Option<String>,
    pub status: i64,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sent: Vec<SentSms>,
    auto_status: Option<i64>,
    fail_next: Option<u16>,
    /// Every request: (script, whether the credentials were right).
    requests: Vec<(String, bool)>,
}

/// The fake, serving on a loopback port for as long as the runtime runs.
#[derive(Clone)]
pub struct FakeSmsc {
    inner: Arc<Mutex<Inner>>,
    login: String,
    password: String,
    addr: SocketAddr,
}

impl FakeSmsc {
    /// Starts the fake on 127.0.0.1 with the account `login` / `password`.
    pub async fn start(login: &str, password: &str) -> FakeSmsc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake SMSC");
        let addr = listener.local_addr().expect("its address");
        let fake = FakeSmsc {
            inner: Arc::new(Mutex::new(Inner { next_id: 1000, ..Inner::default() })),
            login: login.to_owned(),
            password: password.to_owned(),
            addr,
        };
        let router = Router::new().route("/sys/{script}", any(handle)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("the fake SMSC serves") });
        fake
    }

    /// The base URL (`video.sms.url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What was accepted, oldest first.
    pub fn sent(&self) -> Vec<SentSms> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Every request: the script and whether its credentials were right.
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Sets the status of message `id` (SMSC's codes: 1 delivered, 20 undeliverable, ...).
    pub fn set_status(&self, id: u64, status: i64) {
        if let Some(m) = self.inner.lock().unwrap().sent.iter_mut().find(|m| m.id == id) {
            m.status = status;
        }
    }

    /// Every message asked about from now on has this status.
    pub fn set_auto_status(&self, status: Option<i64>) {
        self.inner.lock().unwrap().auto_status = status;
    }

    /// The next request is answered with this HTTP status and no body.
    pub fn fail_next(&self, status: u16) {
        self.inner.lock().unwrap().fail_next = Some(status);
    }
}

fn error(code: i64, message: &str) -> Value {
    json!({"error": message, "error_code": code})
}

/// GET reads the query string, POST the form body (axum's `Form`), as SMSC takes both.
async fn handle(
    State(fake): State<FakeSmsc>,
    axum::extract::Path(script): axum::extract::Path<String>,
    axum::Form(params): axum::Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let authorised = get("login") == fake.login && get("psw") == fake.password;
    let mut inner = fake.inner.lock().unwrap();
    inner.requests.push((script.clone(), authorised));
    if let Some(status) = inner.fail_next.take() {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY).into_response();
    }
    if get("fmt") != "3" {
        // other formats are plain text lines; the hub always asks for JSON
        return "ERROR = 1 (parameters error)".into_response();
    }
    let answer = if !authorised {
        error(2, "authorise error")
    } else {
        match script.as_str() {
            "send.php" => {
                let phone = get("phones");
                if get("mes").is_empty() {
                    error(1, "parameters error")
                } else if !(10..=15).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
                    error(7, "invalid number")
                } else {
                    inner.next_id += 1;
                    let id = inner.next_id;
                    let sender = params.get("sender").cloned();
                    inner.sent.push(SentSms {
                        id,
                        phone: phone.to_owned(),
                        text: get("mes").to_owned(),
                        sender,
                        status: -1,
                    });
                    json!({"id": id, "cnt": 1})
                }
            }
            "status.php" => {
                let auto = inner.auto_status;
                let id: Option<u64> = get("id").parse().ok();
                let phone = get("phone").to_owned();
                match inner.sent.iter_mut().find(|m| Some(m.id) == id && m.phone == phone) {
                    Some(m) => {
                        if let Some(status) = auto {
                            m.status = status;
                        }
                        json!({"status": m.status, "last_date": "07.12.2026 10:00:00", "last_timestamp": 1_796_637_600, "err": 0})
                    }
                    None => json!({"status": -3}),
                }
            }
            _ => error(1, "parameters error"),
        }
    };
    axum::Json(answer).into_response()
}
