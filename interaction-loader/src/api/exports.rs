//! Exports of the period query: CSV and Excel.
//!
//! Both page through the period query in batches of `loader.export_batch` (the same keyset as
//! the API's cursor, so rows arriving meanwhile neither repeat nor shift the export), and hold at
//! most a few batches in memory however long the export is:
//!
//! - CSV is streamed as it is produced: a producer task writes each batch into a bounded
//!   channel that the response body drains, so a slow client slows the queries down instead of
//!   filling memory.
//! - Excel (a zip archive whose directory comes last) cannot be sent before it is complete:
//!   `rust_xlsxwriter` writes the rows in constant-memory mode (each row goes to a temporary file
//!   as it is written), the finished workbook goes to another temporary file, and that file is
//!   streamed. Memory stays flat; the first byte comes when the last row is written.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schema::store::{PeriodFilter, PeriodKey, PeriodRow};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tracing::warn;

use super::interactions::PeriodParams;
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiQuery, ErrorBody};

/// The columns of both exports.
pub const COLUMNS: [&str; 18] = [
    "interaction_id",
    "channel",
    "account_id",
    "state",
    "queue",
    "agent",
    "last_agent",
    "customer_id",
    "customer_name",
    "customer_phone",
    "customer_external_id",
    "created_at",
    "closed_at",
    "close_reason",
    "first_customer_message_at",
    "last_customer_message_at",
    "rating",
    "fields",
];

/// Excel's row limit, header included.
const XLSX_MAX_ROWS: u32 = 1_048_576;

enum Cell {
    Text(String),
    Time(Option<DateTime<Utc>>),
}

fn cells(row: &PeriodRow) -> [Cell; 18] {
    let i = &row.interaction;
    let text = |s: &str| Cell::Text(s.to_owned());
    let opt = |s: &Option<String>| Cell::Text(s.clone().unwrap_or_default());
    [
        Cell::Text(i.id.to_string()),
        text(i.channel.as_str()),
        Cell::Text(i.account_id.to_string()),
        text(i.state.as_str()),
        opt(&i.queue),
        opt(&i.agent),
        opt(&row.last_agent),
        Cell::Text(i.customer.id.to_string()),
        text(&i.customer.name),
        opt(&i.customer.phone),
        text(&i.customer.external_id),
        Cell::Time(Some(i.created_at)),
        Cell::Time(i.closed_at),
        opt(&row.close_reason),
        Cell::Time(Some(row.first_customer_message_at)),
        Cell::Time(row.last_customer_message_at),
        Cell::Text(row.rating.map(|r| r.to_string()).unwrap_or_default()),
        // the interaction's fields (the admin-defined ones, the bot's, the campaign's) as one
        // JSON object; empty when none
        Cell::Text(if i.fields.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&i.fields).expect("fields serialize")
        }),
    ]
}

/// A text cell as CSV gets it: one that a spreadsheet would take for a formula (it starts with
/// `=`, `+`, `-`, `@`, tab or carriage return and is not a plain number or phone) is prefixed
/// with `'`, so a customer's name cannot run in the integrator's spreadsheet.
pub(crate) fn csv_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let plain_number = text.len() > 1
        && text[1..].chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '(' | ')' | '-' | '.'))
        && text.starts_with(['+', '-']);
    if risky && !plain_number { format!("'{text}").into() } else { text.into() }
}

/// Fetches the export's batches one after another.
struct Batches {
    pool: PgPool,
    filter: PeriodFilter,
    after: Option<PeriodKey>,
    size: i64,
    done: bool,
}

impl Batches {
    async fn next(&mut self) -> Result<Option<Vec<PeriodRow>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        let rows = schema::store::interactions_in_period(&mut conn, &self.filter, self.after, self.size).await?;
        self.done = (rows.len() as i64) < self.size;
        self.after = rows.last().map(PeriodRow::key);
        Ok(if rows.is_empty() { None } else { Some(rows) })
    }
}

fn start(state: &AppState, params: &PeriodParams) -> Result<Batches, ApiError> {
    Ok(Batches {
        pool: state.pool.clone(),
        filter: params.filter()?,
        after: None,
        size: i64::from(state.config.export_batch),
        done: false,
    })
}

fn filename(filter: &PeriodFilter, ext: &str) -> String {
    let fmt = "%Y%m%dT%H%M%SZ";
    format!("interactions-{}-{}.{ext}", filter.from.format(fmt), filter.to.format(fmt))
}

/// The period query as CSV (UTF-8, a header row, times in RFC 3339 UTC), streamed.
#[utoipa::path(
    get,
    path = "/api/v1/exports/interactions.csv",
    tag = "exports",
    params(PeriodParams),
    responses(
        (status = 200, description = "The interactions of the period, one per row, in the order of the period query",
         content_type = "text/csv", body = String),
        (status = 400, description = "A missing, malformed or reversed period, or a bad filter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn csv(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PeriodParams>,
) -> Result<Response, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let mut batches = start(&state, &params)?;
    let name = filename(&batches.filter, "csv");
    // the first batch before the 200, so a failing database is still an error status
    let first = batches.next().await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut batch = first;
        let mut header = true;
        loop {
            let mut out = csv::Writer::from_writer(Vec::new());
            if header {
                let _ = out.write_record(COLUMNS);
                header = false;
            }
            for row in batch.iter().flatten() {
                let record = cells(row).map(|cell| match cell {
                    Cell::Text(s) => csv_safe(&s).into_owned(),
                    Cell::Time(t) => {
                        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
                    }
                });
                let _ = out.write_record(&record);
            }
            let bytes = out.into_inner().unwrap_or_default();
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return; // the client went away
            }
            if batch.is_none() {
                return;
            }
            batch = match batches.next().await {
                Ok(Some(rows)) => Some(rows),
                Ok(None) => return,
                Err(e) => {
                    warn!(error = ?e, "CSV export stopped by a database error");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
        }
    });
    let body =
        Body::from_stream(futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|item| (item, rx)) }));
    Ok(attachment(CSV, &name, body))
}

/// The period query as an Excel workbook (one sheet, a header row, times as Excel dates in UTC).
/// At most 1,048,575 rows (Excel's limit).
#[utoipa::path(
    get,
    path = "/api/v1/exports/interactions.xlsx",
    tag = "exports",
    params(PeriodParams),
    responses(
        (status = 200, description = "The interactions of the period, one per row, in the order of the period query",
         content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::model::XlsxFile),
        (status = 400, description = "A missing, malformed or reversed period, or a bad filter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn xlsx(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PeriodParams>,
) -> Result<Response, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let mut batches = start(&state, &params)?;
    let name = filename(&batches.filter, "xlsx");
    let (tx, rx) = mpsc::channel::<Vec<PeriodRow>>(2);
    let writer = tokio::task::spawn_blocking(move || write_workbook(rx));
    let fetched = async {
        while let Some(rows) = batches.next().await? {
            if tx.send(rows).await.is_err() {
                break; // the writer stopped (the sheet is full, or it failed)
            }
        }
        Ok::<_, ApiError>(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(|e| {
        warn!(error = %e, "the Excel writer panicked");
        ApiError::internal()
    })?;
    fetched?;
    let file = written.map_err(|e| {
        warn!(error = %e, "cannot write the Excel export");
        ApiError::internal()
    })?;
    // Open the finished file, then let the temporary path go: the open handle keeps the data.
    let handle = file.reopen().map_err(|e| {
        warn!(error = %e, "cannot reopen the Excel export");
        ApiError::internal()
    })?;
    drop(file);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(handle));
    Ok(attachment(XLSX, &name, Body::from_stream(stream)))
}

/// Writes the batches from `rx` into a constant-memory workbook saved to a temporary file.
fn write_workbook(
    mut rx: mpsc::Receiver<Vec<PeriodRow>>,
) -> Result<tempfile::NamedTempFile, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    {
        let sheet = workbook.add_worksheet_with_constant_memory()?;
        sheet.set_name("interactions")?;
        for (col, name) in COLUMNS.iter().enumerate() {
            sheet.write_string_with_format(0, col as u16, *name, &bold)?;
            let width = if name.ends_with("_at") || name.ends_with("_id") { 24 } else { 16 };
            sheet.set_column_width(col as u16, width)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        let mut row_num: u32 = 1;
        'batches: while let Some(rows) = rx.blocking_recv() {
            for row in &rows {
                if row_num >= XLSX_MAX_ROWS {
                    warn!("Excel export stopped at the sheet's row limit");
                    break 'batches;
                }
                for (col, cell) in cells(row).into_iter().enumerate() {
                    match cell {
                        Cell::Text(s) if !s.is_empty() => {
                            sheet.write_string(row_num, col as u16, s)?;
                        }
                        Cell::Time(Some(t)) => {
                            sheet.write_datetime_with_format(row_num, col as u16, t.naive_utc(), &time)?;
                        }
                        _ => {}
                    }
                }
                row_num += 1;
            }
        }
    }
    let file = tempfile::NamedTempFile::new()?;
    workbook.save(file.path())?;
    Ok(file)
}

/// The media type of a CSV download.
pub(crate) const CSV: &str = "text/csv; charset=utf-8";
/// The media type of an Excel download.
pub(crate) const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A download: `body` as `content_type`, saved by the browser as `filename`.
pub(crate) fn attachment(content_type: &str, filename: &str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_phones_kept() {
        assert_eq!(csv_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_safe("-1+2"), "'-1+2");
        assert_eq!(csv_safe("+7 (999) 123-45-67"), "+7 (999) 123-45-67");
        assert_eq!(csv_safe("-15"), "-15");
        assert_eq!(csv_safe("Anna"), "Anna");
        assert_eq!(csv_safe("+"), "'+");
    }
}
