//! `GET /api/v1/stats/{report}`: the statistics the admin panel charts, read-only.
//!
//! Every report is one table (`columns` and `rows`), so the same answer is the chart's data, its
//! CSV and its Excel sheet (`format=csv` / `format=xlsx`): what an export holds is exactly what
//! the chart drew. The definitions (contacts, answered, abandoned, the times, occupancy, calls)
//! are those of `schema::store::stats`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schema::domain::Channel;
use schema::store::{self, Bucket, StatsQuery};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::{enum_list, required_time};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::model::{StatsColumn, StatsTable};
use ops::input::{InputError, Kind, Validate, check_opt};

/// The reports, with their columns.
pub const REPORTS: [&str; 4] = ["volume", "times", "agents", "calls"];

/// The most buckets one report may have.
const MAX_BUCKETS: usize = 10_000;

/// Default of `abandon_after_s`.
const ABANDON_AFTER_S: u64 = 600;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Start of the period, inclusive (RFC 3339).
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the period, exclusive (RFC 3339); after `from`.
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-08T00:00:00Z")]
    pub to: Option<String>,
    /// `hour` or `day`; default `hour` for periods up to 48 hours, else `day`.
    #[param(value_type = Option<String>, example = "day")]
    pub bucket: Option<String>,
    /// The IANA time zone the buckets follow (`Europe/Moscow`); default `UTC`.
    #[param(value_type = Option<String>, example = "Europe/Moscow")]
    pub tz: Option<String>,
    /// Channels, comma-separated (`telegram,whatsapp`).
    #[param(value_type = Option<String>, example = "telegram")]
    pub channel: Option<String>,
    /// Queues, comma-separated.
    #[param(value_type = Option<String>, example = "support")]
    pub queue: Option<String>,
    /// A contact nobody took counts as abandoned once its customer has been silent this many
    /// seconds (default 600).
    #[param(value_type = Option<u32>, minimum = 1)]
    pub abandon_after_s: Option<String>,
    /// `json` (default), `csv` or `xlsx`: the same table as a file.
    #[param(value_type = Option<String>, example = "csv")]
    pub format: Option<String>,
}

impl Validate for StatsParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("bucket", Kind::Key, self.bucket.as_deref())?;
        check_opt("tz", Kind::Key, self.tz.as_deref())?;
        check_opt("abandon_after_s", Kind::Key, self.abandon_after_s.as_deref())?;
        check_opt("format", Kind::Key, self.format.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Xlsx,
}

impl StatsParams {
    fn query(&self) -> Result<(StatsQuery, Format), ApiError> {
        let from = required_time("from", self.from.as_deref())?;
        let to = required_time("to", self.to.as_deref())?;
        if from >= to {
            return Err(ApiError::bad_request(format!(
                "the period is empty or reversed: from ({}) must be before to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
        let bucket = match self.bucket.as_deref().map(str::trim) {
            None if to - from <= chrono::Duration::hours(48) => Bucket::Hour,
            None => Bucket::Day,
            Some("hour") => Bucket::Hour,
            Some("day") => Bucket::Day,
            Some(other) => return Err(ApiError::bad_request(format!("bucket={other:?} is not one of hour, day"))),
        };
        let span = match bucket {
            Bucket::Hour => (to - from).num_hours(),
            Bucket::Day => (to - from).num_days(),
        };
        if span as usize >= MAX_BUCKETS {
            return Err(ApiError::bad_request(format!(
                "the period holds more than {MAX_BUCKETS} {}s: choose a shorter period or bucket=day",
                bucket.as_str()
            )));
        }
        let abandon_after = match self.abandon_after_s.as_deref() {
            None => ABANDON_AFTER_S,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if (1..=30 * 86_400).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "abandon_after_s={text:?} must be a whole number of seconds from 1 to 2592000"
                    )));
                }
            },
        };
        let format = match self.format.as_deref().map(str::trim) {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("xlsx") => Format::Xlsx,
            Some(other) => {
                return Err(ApiError::bad_request(format!("format={other:?} is not one of json, csv, xlsx")));
            }
        };
        let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        let queues = match self.queue.as_deref() {
            None => Vec::new(),
            Some(list) => ops::input::comma_list("queue", list)?.into_iter().map(str::to_owned).collect(),
        };
        Ok((
            StatsQuery {
                from,
                to,
                bucket,
                tz: self.tz.as_deref().map(str::trim).unwrap_or("UTC").to_owned(),
                channels: enum_list("channel", self.channel.as_deref(), &channels)?,
                queues,
                abandon_after: Duration::from_secs(abandon_after),
            },
            format,
        ))
    }
}

fn column(name: &'static str, kind: &'static str, title: &'static str) -> StatsColumn {
    StatsColumn { name: name.to_owned(), kind: kind.to_owned(), title: title.to_owned() }
}

fn time(t: DateTime<Utc>) -> Value {
    json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Seconds rounded to a tenth (what the chart shows, and the export holds).
fn secs(s: Option<f64>) -> Value {
    s.map_or(Value::Null, |s| json!((s * 10.0).round() / 10.0))
}

/// Runs one report into its table.
async fn table(state: &AppState, report: &str, q: &StatsQuery) -> Result<StatsTable, ApiError> {
    let mut conn = state.pool.acquire().await?;
    if !store::valid_time_zone(&mut conn, &q.tz).await? {
        return Err(ApiError::bad_request(format!(
            "tz={:?} is not a time zone: give an IANA name such as Europe/Moscow or UTC",
            q.tz
        )));
    }
    let buckets = store::stats_buckets(&mut conn, q).await?;
    let (columns, rows): (Vec<StatsColumn>, Vec<Vec<Value>>) = match report {
        "volume" => (
            vec![
                column("bucket", "time", "Start of the bucket"),
                column("channel", "text", "Channel"),
                column("queue", "text", "Queue"),
                column("contacts", "count", "Contacts: a customer's first message or return"),
                column("answered", "count", "Contacts an agent took"),
                column("abandoned", "count", "Contacts nobody took before the customer left"),
            ],
            store::stats_volume(&mut conn, q)
                .await?
                .into_iter()
                .map(|r| {
                    vec![
                        time(r.bucket),
                        json!(r.channel),
                        json!(r.queue),
                        json!(r.contacts),
                        json!(r.answered),
                        json!(r.abandoned),
                    ]
                })
                .collect(),
        ),
        "times" => (
            vec![
                column("bucket", "time", "Start of the bucket"),
                column("contacts", "count", "Contacts"),
                column("answered", "count", "Contacts an agent took"),
                column("wait_p50_s", "seconds", "Waiting time, median"),
                column("wait_p90_s", "seconds", "Waiting time, 90th percentile"),
                column("handle_p50_s", "seconds", "Handling time, median"),
                column("handle_p90_s", "seconds", "Handling time, 90th percentile"),
                column("first_response_p50_s", "seconds", "First response time, median"),
                column("first_response_p90_s", "seconds", "First response time, 90th percentile"),
            ],
            store::stats_times(&mut conn, q)
                .await?
                .into_iter()
                .map(|r| {
                    vec![
                        time(r.bucket),
                        json!(r.contacts),
                        json!(r.answered),
                        secs(r.wait_p50_s),
                        secs(r.wait_p90_s),
                        secs(r.handle_p50_s),
                        secs(r.handle_p90_s),
                        secs(r.first_response_p50_s),
                        secs(r.first_response_p90_s),
                    ]
                })
                .collect(),
        ),
        "agents" => (
            vec![
                column("agent", "text", "Agent login"),
                column("name", "text", "Name"),
                column("handled", "count", "Assignments that began in the period"),
                column("handle_s", "seconds", "Handling time (chats at once add up)"),
                column("ready_s", "seconds", "Time with the status ready"),
                column("max_interactions", "count", "Capacity"),
                column("occupancy", "ratio", "Handling time / (ready time x capacity), at most 1"),
            ],
            store::stats_agents(&mut conn, q)
                .await?
                .into_iter()
                .map(|r| {
                    let occupancy = r.occupancy().map_or(Value::Null, |o| json!((o * 1000.0).round() / 1000.0));
                    vec![
                        json!(r.login),
                        json!(r.name),
                        json!(r.handled),
                        secs(Some(r.handle_s)),
                        secs(Some(r.ready_s)),
                        json!(r.max_interactions),
                        occupancy,
                    ]
                })
                .collect(),
        ),
        "calls" => (
            vec![
                column("bucket", "time", "Start of the bucket"),
                column("quality", "text", "Resolution cap of the call"),
                column("calls", "count", "Calls started"),
                column("connected", "count", "Calls the customer joined"),
                column("duration_p50_s", "seconds", "Duration from the customer's join to the end, median"),
                column("duration_p90_s", "seconds", "Duration, 90th percentile"),
                column("duration_total_s", "seconds", "Duration, total"),
            ],
            store::stats_calls(&mut conn, q)
                .await?
                .into_iter()
                .map(|r| {
                    vec![
                        time(r.bucket),
                        json!(r.quality),
                        json!(r.calls),
                        json!(r.connected),
                        secs(r.duration_p50_s),
                        secs(r.duration_p90_s),
                        secs(Some(r.duration_total_s)),
                    ]
                })
                .collect(),
        ),
        other => {
            return Err(ApiError::not_found(format!("no report {other:?}: the reports are {}", REPORTS.join(", "))));
        }
    };
    Ok(StatsTable {
        report: report.to_owned(),
        from: q.from,
        to: q.to,
        bucket: q.bucket.as_str().to_owned(),
        tz: q.tz.clone(),
        buckets,
        columns,
        rows,
    })
}

/// One report of a period as a table: as JSON, or as the CSV / Excel file of the same rows.
///
/// - `volume`: contacts per bucket, channel and queue (a contact is a customer's first message
///   or return after a close), how many an agent took, how many were abandoned;
/// - `times`: per bucket, the median and 90th percentile of the waiting time (to the first
///   assignment), the handling time (assignment to close) and the first response time (to the
///   first agent message), in seconds;
/// - `agents`: per agent, assignments, handling time, ready time and occupancy;
/// - `calls`: video calls per bucket and resolution, how many the customer joined, durations.
///
/// Buckets without data have no rows; `buckets` lists them all. Times are RFC 3339 UTC.
#[utoipa::path(
    get,
    path = "/api/v1/stats/{report}",
    tag = "stats",
    params(("report" = String, Path, description = "`volume`, `times`, `agents` or `calls`"), StatsParams),
    responses(
        (status = 200, description = "The report (with `format=csv` a CSV file, with `format=xlsx` an Excel workbook, of the same columns and rows)",
         body = StatsTable),
        (status = 400, description = "A missing, malformed or reversed period, a bad bucket, time zone, filter or format", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such report", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn report(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(report): ApiPath<String>,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Response, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    if !REPORTS.contains(&report.as_str()) {
        return Err(ApiError::not_found(format!("no report {report:?}: the reports are {}", REPORTS.join(", "))));
    }
    let (query, format) = params.query()?;
    let table = table(&state, &report, &query).await?;
    let name = |ext: &str| {
        let fmt = "%Y%m%dT%H%M%SZ";
        format!("stats-{report}-{}-{}.{ext}", query.from.format(fmt), query.to.format(fmt))
    };
    match format {
        Format::Json => Ok(Json(table).into_response()),
        Format::Csv => Ok(super::exports::attachment(super::exports::CSV, &name("csv"), csv(&table))),
        Format::Xlsx => {
            let bytes = tokio::task::spawn_blocking(move || xlsx(&table)).await.map_err(|e| {
                tracing::warn!(error = %e, "the Excel writer panicked");
                ApiError::internal()
            })?;
            let bytes = bytes.map_err(|e| {
                tracing::warn!(error = %e, "cannot write the statistics workbook");
                ApiError::internal()
            })?;
            Ok(super::exports::attachment(super::exports::XLSX, &name("xlsx"), bytes))
        }
    }
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The table as CSV: a header of the column names, then the rows (cells a spreadsheet would run
/// as formulas defused, as in the interaction export).
fn csv(table: &StatsTable) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record(table.columns.iter().map(|c| c.name.as_str()));
    for row in &table.rows {
        let _ = out.write_record(row.iter().map(|v| super::exports::csv_safe(&cell_text(v)).into_owned()));
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The table as one Excel sheet (times as dates in UTC, numbers as numbers).
fn xlsx(table: &StatsTable) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let when = Format::new().set_num_format("yyyy-mm-dd hh:mm");
    let sheet = workbook.add_worksheet();
    sheet.set_name(&table.report)?;
    for (col, c) in table.columns.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, &c.name, &bold)?;
        sheet.set_column_width(col as u16, if c.kind == "time" { 20 } else { 14 })?;
    }
    sheet.set_freeze_panes(1, 0)?;
    for (i, row) in table.rows.iter().enumerate() {
        let r = i as u32 + 1;
        for (col, (v, c)) in row.iter().zip(&table.columns).enumerate() {
            let col = col as u16;
            match v {
                Value::Null => {}
                Value::Number(n) => {
                    sheet.write_number(r, col, n.as_f64().unwrap_or_default())?;
                }
                Value::String(s) if c.kind == "time" => match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => {
                        sheet.write_datetime_with_format(r, col, t.naive_utc(), &when)?;
                    }
                    Err(_) => {
                        sheet.write_string(r, col, s)?;
                    }
                },
                other => {
                    sheet.write_string(r, col, cell_text(other))?;
                }
            }
        }
    }
    workbook.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> StatsParams {
        let uri: axum::http::Uri = format!("/?{q}").parse().unwrap();
        axum::extract::Query::<StatsParams>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn the_period_bucket_and_format_are_checked() {
        let (q, f) = params("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z").query().unwrap();
        assert_eq!((q.bucket, f, q.tz.as_str()), (Bucket::Hour, Format::Json, "UTC"));
        let (q, f) =
            params("from=2024-05-01T00:00:00Z&to=2024-05-09T00:00:00Z&format=csv&tz=Europe/Moscow").query().unwrap();
        assert_eq!((q.bucket, f, q.tz.as_str()), (Bucket::Day, Format::Csv, "Europe/Moscow"));
        for (bad, says) in [
            ("to=2024-05-02T00:00:00Z", "from is required"),
            ("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "reversed"),
            ("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&bucket=week", "bucket=\"week\""),
            ("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&format=pdf", "format=\"pdf\""),
            ("from=2020-01-01T00:00:00Z&to=2024-05-02T00:00:00Z&bucket=hour", "more than 10000 hours"),
            ("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&abandon_after_s=0", "abandon_after_s"),
            ("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&channel=icq", "channel=\"icq\""),
            ("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&queue=,", "`queue`"),
        ] {
            let e = params(bad).query().unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn csv_holds_the_rows_of_the_table() {
        let table = StatsTable {
            report: "volume".into(),
            from: Utc::now(),
            to: Utc::now(),
            bucket: "hour".into(),
            tz: "UTC".into(),
            buckets: vec![],
            columns: vec![column("bucket", "time", ""), column("queue", "text", ""), column("contacts", "count", "")],
            rows: vec![
                vec![json!("2024-05-01T10:00:00Z"), json!("=cmd"), json!(3)],
                vec![json!("x"), Value::Null, json!(1.5)],
            ],
        };
        assert_eq!(csv(&table), "bucket,queue,contacts\n2024-05-01T10:00:00Z,'=cmd,3\nx,,1.5\n");
        assert!(xlsx(&table).unwrap().starts_with(b"PK"));
    }
}
