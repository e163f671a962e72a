//! Outbound campaigns: create one for an account, add its audience (JSON, or a CSV upload),
//! start, pause, resume or cancel it, and read its report (counts, rate, ETA) and each
//! recipient's outcome (JSON pages or a CSV export). Every change is audited in its own
//! transaction. The account's connector leader sends the campaign in the outbox's bulk lane:
//! it picks a started or resumed campaign up within its rescan (5 s); a pause or cancel takes
//! effect at the next row it would send. Also an account's stop words (opt-out).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ops::input::{InputError, Kind, Validate, check, check_each, check_opt};
use schema::store::{self, CampaignAction, RecipientInput};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::exports::csv_safe;
use super::{page_limit, parse_uuid, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, code};

/// Recipients one call may add at most.
const MAX_RECIPIENTS_PER_CALL: usize = 100_000;

/// The largest body of a recipients upload (a CSV of 100,000 recipients with a few variables).
pub const RECIPIENTS_BODY_MAX: usize = 16 * 1024 * 1024;

/// A campaign's template (WhatsApp).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignTemplate {
    #[schema(example = "order_update")]
    pub name: String,
    #[schema(example = "en_US")]
    pub language: String,
    /// The recipient variables that fill the template's parameters, `{{1}}` first.
    #[serde(default)]
    #[schema(example = json!(["name", "order"]))]
    pub params: Vec<String>,
}

/// A campaign.
#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    /// `draft`, `running`, `paused`, `cancelled` or `finished`.
    #[schema(example = "running")]
    pub state: String,
    /// The message; `{{variable}}` placeholders are filled per recipient.
    #[schema(example = "Hello {{name}}, your order {{order}} has shipped.")]
    pub text: String,
    pub template: Option<CampaignTemplate>,
    /// Messages per second at most (the account's limit always applies too).
    pub rate_per_s: Option<i32>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// Quiet hours in the recipient's local time, `HH:MM-HH:MM`.
    #[schema(example = "21:00-09:00")]
    pub quiet_hours: Option<String>,
    /// The recipients' UTC offset in minutes when a recipient has none.
    pub utc_offset_min: i16,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The bot flow a recipient who answers continues in (docs/bots.md).
    #[schema(example = "after-sale")]
    pub flow: Option<String>,
}

fn hhmm(minutes: i16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl From<store::Campaign> for Campaign {
    fn from(c: store::Campaign) -> Self {
        Campaign {
            id: c.id,
            account_id: c.account_id,
            name: c.name,
            state: c.state.as_str().to_owned(),
            text: c.text,
            template: c.template.map(|t| CampaignTemplate { name: t.name, language: t.language, params: t.params }),
            rate_per_s: c.rate_per_s,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            quiet_hours: c.quiet_from.zip(c.quiet_to).map(|(f, t)| format!("{}-{}", hhmm(f), hhmm(t))),
            utc_offset_min: c.utc_offset_min,
            created_by: c.created_by,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            flow: c.flow,
        }
    }
}

/// A campaign with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignReport {
    pub campaign: Campaign,
    /// Recipients per state: `queued`, `sent`, `delivered`, `read`, `replied`, `failed`, `skipped`.
    #[schema(example = json!({"queued": 7200, "sent": 2750, "delivered": 0, "read": 0, "replied": 12, "failed": 3, "skipped": 35}))]
    pub counts: BTreeMap<String, i64>,
    pub total: i64,
    /// Recipients sent per second over the last 10 seconds.
    pub rate_per_s: f64,
    /// Seconds until the queued recipients are sent at that rate.
    pub eta_s: Option<f64>,
}

impl From<store::CampaignReport> for CampaignReport {
    fn from(r: store::CampaignReport) -> Self {
        CampaignReport {
            campaign: r.campaign.into(),
            counts: r.counts,
            total: r.total,
            rate_per_s: r.rate_per_s,
            eta_s: r.eta_s,
        }
    }
}

/// The campaigns, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub items: Vec<Campaign>,
}

/// A recipient as given: a customer by id or by phone (the customer's identity on the
/// campaign's account says where the message goes), the message's variables, and the
/// recipient's UTC offset for quiet hours.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub customer_id: Option<Uuid>,
    #[schema(example = "+79001234567")]
    pub phone: Option<String>,
    #[serde(default)]
    #[schema(example = json!({"name": "Anna", "order": "7731"}))]
    pub variables: BTreeMap<String, String>,
    #[schema(example = 180)]
    pub utc_offset_min: Option<i16>,
}

impl Recipient {
    fn check(&self, at: usize) -> Result<(), InputError> {
        check_opt(&format!("recipients[{at}].phone"), Kind::Phone, self.phone.as_deref())?;
        for (name, value) in &self.variables {
            check(&format!("recipients[{at}].variables"), Kind::Key, name)?;
            check(&format!("recipients[{at}].variables.{name}"), Kind::Note, value)?;
        }
        if self.customer_id.is_none() && self.phone.is_none() {
            return Err(InputError::new(format!("recipients[{at}]"), "needs customer_id or phone"));
        }
        offset_ok(&format!("recipients[{at}].utc_offset_min"), self.utc_offset_min)
    }

    fn into_input(self) -> RecipientInput {
        RecipientInput {
            customer_id: self.customer_id,
            phone: self.phone,
            variables: self.variables,
            utc_offset_min: self.utc_offset_min,
        }
    }
}

fn offset_ok(field: &str, offset: Option<i16>) -> Result<(), InputError> {
    match offset {
        Some(o) if !(-840..=840).contains(&o) => Err(InputError::new(field, "must be between -840 and 840 minutes")),
        _ => Ok(()),
    }
}

/// A new campaign (state `draft`), with its first recipients if any.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub account_id: Uuid,
    #[schema(example = "December shipping notice")]
    pub name: String,
    #[schema(example = "Hello {{name}}, your order {{order}} has shipped.")]
    pub text: String,
    /// Required on WhatsApp (a campaign reaches customers outside the 24-hour window).
    pub template: Option<CampaignTemplate>,
    /// Messages per second at most, under the account's limit.
    #[schema(example = 20)]
    pub rate_per_s: Option<i32>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// `HH:MM-HH:MM` in the recipient's local time; may wrap midnight.
    #[schema(example = "21:00-09:00")]
    pub quiet_hours: Option<String>,
    /// The recipients' UTC offset in minutes when a recipient gives none; 0 when absent.
    pub utc_offset_min: Option<i16>,
    /// A bot flow (it must exist) the recipients who answer continue in: the reply's
    /// interaction starts a run of the flow's newest version instead of waiting in its queue.
    #[schema(example = "after-sale")]
    pub flow: Option<String>,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
}

/// `HH:MM-HH:MM` as minutes after midnight.
fn parse_quiet(value: &str) -> Result<(i16, i16), InputError> {
    let bad = || InputError::new("quiet_hours", format!("{value:?} is not HH:MM-HH:MM (such as 21:00-09:00)"));
    let minutes = |s: &str| -> Option<i16> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (i16, i16) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
    };
    let (from, to) = value.split_once('-').ok_or_else(bad)?;
    Ok((minutes(from).ok_or_else(bad)?, minutes(to).ok_or_else(bad)?))
}

impl Validate for NewCampaign {
    fn validate(&self) -> Result<(), InputError> {
        check("name", Kind::Name, &self.name)?;
        check("text", Kind::Text, &self.text)?;
        if self.text.trim().is_empty() {
            return Err(InputError::new("text", "is empty"));
        }
        if let Some(t) = &self.template {
            check("template.name", Kind::Key, &t.name)?;
            check("template.language", Kind::Key, &t.language)?;
            check_each("template.params", Kind::Key, &t.params)?;
        }
        if let Some(rate) = self.rate_per_s
            && !(1..=100_000).contains(&rate)
        {
            return Err(InputError::new("rate_per_s", "must be between 1 and 100000"));
        }
        if let Some(q) = &self.quiet_hours {
            parse_quiet(q)?;
        }
        offset_ok("utc_offset_min", self.utc_offset_min)?;
        if let Some(flow) = &self.flow {
            store::check_flow_name(flow).map_err(|e| InputError::new("flow", e))?;
        }
        if self.recipients.len() > MAX_RECIPIENTS_PER_CALL {
            return Err(InputError::new("recipients", format!("at most {MAX_RECIPIENTS_PER_CALL} per call")));
        }
        for (i, r) in self.recipients.iter().enumerate() {
            r.check(i)?;
        }
        Ok(())
    }
}

/// Recipients to add (JSON; a CSV upload is the other form of the same call).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientList {
    pub recipients: Vec<Recipient>,
}

impl Validate for RecipientList {
    fn validate(&self) -> Result<(), InputError> {
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS_PER_CALL {
            return Err(InputError::new("recipients", format!("1 to {MAX_RECIPIENTS_PER_CALL} per call")));
        }
        for (i, r) in self.recipients.iter().enumerate() {
            r.check(i)?;
        }
        Ok(())
    }
}

/// What adding recipients did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddedRecipients {
    /// New recipients, queued.
    pub added: u64,
    /// Already in the campaign (the same chat): ignored.
    pub duplicates: u64,
    /// No identity of the customer on the campaign's account: recorded as skipped.
    pub unresolved: u64,
}

/// Reads a CSV upload: a header row naming `customer_id` and/or `phone`, optionally
/// `utc_offset_min`; every other column is a variable of the message. Errors name the line.
pub fn parse_csv(body: &[u8]) -> Result<Vec<Recipient>, InputError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| InputError::new("csv", format!("header row: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader.records().enumerate().map(|(n, record)| {
        let line = n + 2;
        let record = record.map_err(|e| InputError::new(format!("csv line {line}"), e.to_string()))?;
        Ok((line, record.iter().map(str::to_owned).collect()))
    });
    recipients_from_rows("csv", "csv line", &headers, rows)
}

/// The media type of an Excel workbook (`.xlsx`).
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Reads an Excel (`.xlsx`) upload: its first sheet, laid out like a CSV upload (a header row
/// naming `customer_id` and/or `phone`, optionally `utc_offset_min`, every other column a
/// variable). Numbers are taken as written (`79001234567`, `180`; a whole number without a
/// decimal point), blank rows are skipped; a date, a formula error or a cell that is not a
/// plain value is refused naming its row and column. Errors name the sheet's row.
pub fn parse_xlsx(body: &[u8]) -> Result<Vec<Recipient>, InputError> {
    use calamine::{Data, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(body))
        .map_err(|e| InputError::new("xlsx", format!("not a readable Excel workbook (.xlsx): {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| InputError::new("xlsx", "the workbook has no sheet"))?
        .map_err(|e| InputError::new("xlsx", format!("its first sheet cannot be read: {e}")))?;
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let column = |c: usize| {
        // A, B, ..., Z, AA, ...
        let mut n = c + first_col as usize + 1;
        let mut name = String::new();
        while n > 0 {
            name.insert(0, char::from(b'A' + ((n - 1) % 26) as u8));
            n = (n - 1) / 26;
        }
        name
    };
    let text = |row: usize, c: usize, cell: &Data| -> Result<String, InputError> {
        let at = || format!("xlsx row {row}, column {}", column(c));
        match cell {
            Data::Empty => Ok(String::new()),
            Data::String(s) => Ok(s.trim().to_owned()),
            Data::Int(i) => Ok(i.to_string()),
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(format!("{f:.0}")),
            Data::Float(f) => Ok(f.to_string()),
            Data::Bool(b) => Ok(b.to_string()),
            Data::DateTime(_) | Data::DateTimeIso(_) | Data::DurationIso(_) => {
                Err(InputError::new(at(), "is a date or time; write it as text"))
            }
            Data::Error(e) => Err(InputError::new(at(), format!("holds the error {e}"))),
        }
    };
    let mut rows = range.rows().enumerate().map(|(n, cells)| (n + first_row as usize + 1, cells));
    let Some((header_row, header)) = rows.next() else {
        return Err(InputError::new("xlsx", "the first sheet is empty"));
    };
    let headers =
        header.iter().enumerate().map(|(c, cell)| text(header_row, c, cell)).collect::<Result<Vec<_>, _>>()?;
    let rows = rows.filter(|(_, cells)| cells.iter().any(|c| !matches!(c, Data::Empty))).map(|(row, cells)| {
        let values = cells.iter().enumerate().map(|(c, cell)| text(row, c, cell)).collect::<Result<Vec<_>, _>>()?;
        Ok((row, values))
    });
    recipients_from_rows("xlsx", "xlsx row", &headers, rows)
}

/// The recipients of an upload's rows (CSV or Excel): `source` names the upload in errors about
/// the whole of it, `place` and each row's number name a row.
fn recipients_from_rows(
    source: &str,
    place: &str,
    headers: &[String],
    rows: impl Iterator<Item = Result<(usize, Vec<String>), InputError>>,
) -> Result<Vec<Recipient>, InputError> {
    if !headers.iter().any(|h| h == "customer_id" || h == "phone") {
        return Err(InputError::new(source, "the header row names neither customer_id nor phone"));
    }
    for h in headers {
        check(&format!("{source} header"), Kind::Key, h)?;
    }
    let mut out = Vec::new();
    for row in rows {
        let (line, record) = row?;
        let mut r = Recipient { customer_id: None, phone: None, variables: BTreeMap::new(), utc_offset_min: None };
        for (h, value) in headers.iter().zip(record) {
            match h.as_str() {
                "customer_id" if !value.is_empty() => {
                    r.customer_id = Some(value.parse().map_err(|_| {
                        InputError::new(format!("{place} {line}: customer_id"), format!("{value:?} is not a UUID"))
                    })?);
                }
                "phone" if !value.is_empty() => r.phone = Some(value),
                "utc_offset_min" if !value.is_empty() => {
                    r.utc_offset_min = Some(value.parse().map_err(|_| {
                        InputError::new(format!("{place} {line}: utc_offset_min"), "is not a whole number of minutes")
                    })?);
                }
                "customer_id" | "phone" | "utc_offset_min" => {}
                name => {
                    r.variables.insert(name.to_owned(), value);
                }
            }
        }
        r.check(line).map_err(|e| InputError::new(format!("{place} {line}"), e.to_string()))?;
        out.push(r);
        if out.len() > MAX_RECIPIENTS_PER_CALL {
            return Err(InputError::new(source, format!("at most {MAX_RECIPIENTS_PER_CALL} recipients per upload")));
        }
    }
    if out.is_empty() {
        return Err(InputError::new(source, "no recipient rows"));
    }
    Ok(out)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignListParams {
    /// Only this account's campaigns.
    account_id: Option<String>,
    /// 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

ops::no_strings!(CampaignListParams);

/// The campaigns, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    params(CampaignListParams),
    responses(
        (status = 200, description = "The campaigns", body = CampaignList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CampaignListParams>,
) -> Result<Json<CampaignList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let account = super::optional_uuid("account_id", params.account_id.as_deref())?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let mut conn = state.pool.acquire().await?;
    let items = store::list_campaigns(&mut conn, account, limit).await?;
    Ok(Json(CampaignList { items: items.into_iter().map(Campaign::from).collect() }))
}

/// Creates a campaign in state `draft` (audited), with the recipients given.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created", body = CampaignReport),
        (status = 400, description = "A bad field (named), or a recipient whose variables do not fill the text", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignReport>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    let quiet = input.quiet_hours.as_deref().map(parse_quiet).transpose()?;
    let new = store::NewCampaign {
        account_id: input.account_id,
        name: input.name,
        text: input.text,
        template: input.template.map(|t| store::CampaignTemplate {
            name: t.name,
            language: t.language,
            params: t.params,
        }),
        rate_per_s: input.rate_per_s,
        starts_at: input.starts_at,
        ends_at: input.ends_at,
        quiet,
        utc_offset_min: input.utc_offset_min.unwrap_or(0),
        created_by: principal.actor.clone(),
        flow: input.flow,
    };
    let mut tx = state.pool.begin().await?;
    let campaign = store::create_campaign(&mut tx, &new).await?;
    let recipients: Vec<RecipientInput> = input.recipients.into_iter().map(Recipient::into_input).collect();
    let added = if recipients.is_empty() {
        store::AddedRecipients::default()
    } else {
        store::add_recipients(&mut tx, campaign.id, &recipients, 0).await?
    };
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "campaign.create",
            target_kind: "campaign",
            target_id: &campaign.id.to_string(),
            details: json!({"account_id": campaign.account_id, "name": campaign.name, "recipients": added}),
        },
    )
    .await?;
    let report = store::campaign_report(&mut tx, campaign.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(report.into())))
}

/// A campaign and its progress: recipients per state, the rate of the last 10 s, the ETA.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}",
    tag = "campaigns",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = CampaignReport),
        (status = 400, description = "Not a campaign id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CampaignReport>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::campaign_report(&mut conn, id).await?.into()))
}

/// Adds recipients (audited): `application/json` (`{"recipients": [...]}`), `text/csv` (a
/// header row naming `customer_id` and/or `phone`, optionally `utc_offset_min`; the other
/// columns are the message's variables) or an Excel workbook (`.xlsx`, its first sheet laid out
/// like the CSV; errors name the sheet's row and column). Recipients added to a running campaign are queued at
/// once; a chat already in the campaign is a duplicate and ignored.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/recipients",
    tag = "campaigns",
    params(("id" = Uuid, Path, description = "Campaign id")),
    request_body(content(
        (RecipientList = "application/json"),
        (String = "text/csv", example = "phone,name,order\n+79001234567,Anna,7731\n"),
        (crate::model::XlsxFile = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    )),
    responses(
        (status = 200, description = "Added", body = AddedRecipients),
        (status = 400, description = "A bad recipient, CSV line or sheet row (named)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign is cancelled or finished", body = ErrorBody),
        (status = 413, description = "A body over 16 MiB", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn add_recipients(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AddedRecipients>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id = parse_uuid("id", &id)?;
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            code::BAD_REQUEST,
            format!(
                "the body could not be read ({}); at most {} MiB per call",
                e.body_text(),
                RECIPIENTS_BODY_MAX >> 20
            ),
        )
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let recipients = if content_type.starts_with("text/csv") {
        parse_csv(&body)?
    } else if content_type.starts_with(XLSX) {
        parse_xlsx(&body)?
    } else if content_type.starts_with("application/json") {
        let list: RecipientList =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        list.validate()?;
        list.recipients
    } else {
        return Err(ApiError::bad_request(format!("Content-Type must be application/json, text/csv or {XLSX}")));
    };
    let inputs: Vec<RecipientInput> = recipients.into_iter().map(Recipient::into_input).collect();
    let mut tx = state.pool.begin().await?;
    let added = store::add_recipients(&mut tx, id, &inputs, 0).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "campaign.recipients",
            target_kind: "campaign",
            target_id: &id.to_string(),
            details: json!(added),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(AddedRecipients { added: added.added, duplicates: added.duplicates, unresolved: added.unresolved }))
}

/// Starts, pauses, resumes or cancels a campaign (audited). Start queues one outbox row per
/// recipient (a second start changes nothing); pause keeps the rows, unsent; cancel skips the
/// recipients not sent yet.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/{action}",
    tag = "campaigns",
    params(
        ("id" = Uuid, Path, description = "Campaign id"),
        ("action" = String, Path, description = "`start`, `pause`, `resume` or `cancel`"),
    ),
    responses(
        (status = 200, description = "The campaign as it is now", body = CampaignReport),
        (status = 400, description = "Not a campaign id, or an unknown action", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Not possible in the campaign's state (named)", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn act(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> Result<Json<CampaignReport>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id = parse_uuid("id", &id)?;
    let action = match action.as_str() {
        "start" => CampaignAction::Start,
        "pause" => CampaignAction::Pause,
        "resume" => CampaignAction::Resume,
        "cancel" => CampaignAction::Cancel,
        other => {
            return Err(ApiError::bad_request(format!(
                "action {:?}: one of start, pause, resume, cancel",
                ops::input::escape(other)
            )));
        }
    };
    let mut tx = state.pool.begin().await?;
    let changed = store::change_campaign(&mut tx, id, action).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: &format!("campaign.{}", action.as_str()),
            target_kind: "campaign",
            target_id: &id.to_string(),
            details: json!({"state": changed.campaign.state.as_str()}),
        },
    )
    .await?;
    let report = store::campaign_report(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(report.into()))
}

/// One recipient's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientReport {
    pub id: i64,
    /// Where the message went on the platform (`unresolved:...` when nowhere).
    pub chat_id: String,
    pub customer_id: Option<Uuid>,
    pub phone: Option<String>,
    /// `queued`, `sent`, `delivered`, `read`, `replied`, `failed` or `skipped`.
    pub state: String,
    /// Why it failed (the platform's reason) or was skipped (opted out, cancelled...).
    pub reason: Option<String>,
    pub external_message_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
    /// The interaction the recipient's reply opened or continued.
    pub interaction_id: Option<Uuid>,
}

impl From<store::RecipientReport> for RecipientReport {
    fn from(r: store::RecipientReport) -> Self {
        RecipientReport {
            id: r.id,
            chat_id: r.chat_id,
            customer_id: r.customer_id,
            phone: r.phone,
            state: r.state,
            reason: r.reason,
            external_message_id: r.external_message_id,
            sent_at: r.sent_at,
            replied_at: r.replied_at,
            interaction_id: r.interaction_id,
        }
    }
}

/// A page of recipients.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientPage {
    pub items: Vec<RecipientReport>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecipientParams {
    /// `next_after` of the previous page.
    #[param(value_type = Option<i64>)]
    after: Option<String>,
    /// 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

ops::no_strings!(RecipientParams);

fn parse_after(after: Option<&str>) -> Result<i64, ApiError> {
    match after {
        None => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| ApiError::bad_request(format!("after={v:?} is not a recipient id"))),
    }
}

/// The recipients and their outcomes, in the order they were added.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}/recipients",
    tag = "campaigns",
    params(("id" = Uuid, Path, description = "Campaign id"), RecipientParams),
    responses(
        (status = 200, description = "One page", body = RecipientPage),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn recipients(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<RecipientParams>,
) -> Result<Json<RecipientPage>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let id = parse_uuid("id", &id)?;
    let after = parse_after(params.after.as_deref())?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let mut conn = state.pool.acquire().await?;
    store::get_campaign(&mut conn, id).await?;
    let rows = store::campaign_recipients(&mut conn, id, after, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_after = if more { rows.last().map(|r| r.id) } else { None };
    Ok(Json(RecipientPage { items: rows.into_iter().map(RecipientReport::from).collect(), next_after }))
}

/// The columns of the recipients' CSV export.
pub const RECIPIENT_COLUMNS: [&str; 10] = [
    "recipient_id",
    "chat_id",
    "customer_id",
    "phone",
    "state",
    "reason",
    "external_message_id",
    "sent_at",
    "replied_at",
    "interaction_id",
];

/// Every recipient and its outcome as CSV (read in pages of `loader.export_batch`; cells a
/// spreadsheet would run as formulas are defused as in the interaction exports).
#[utoipa::path(
    get,
    path = "/api/v1/exports/campaigns/{id}/recipients.csv",
    tag = "exports",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The recipients", content_type = "text/csv", body = String),
        (status = 400, description = "Not a campaign id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn export_csv(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::AdminRead)?;
    let id = parse_uuid("id", &id)?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| {
        tracing::error!(error = %e, "cannot write the recipients' CSV");
        ApiError::internal()
    };
    writer.write_record(RECIPIENT_COLUMNS).map_err(csv_error)?;
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    each_recipient_page(&state, id, |rows| {
        for r in rows {
            // what customers and platforms wrote is defused as in the interaction exports
            let text = |s: Option<String>| csv_safe(s.as_deref().unwrap_or_default()).into_owned();
            writer
                .write_record([
                    r.id.to_string(),
                    text(Some(r.chat_id)),
                    r.customer_id.map(|c| c.to_string()).unwrap_or_default(),
                    text(r.phone),
                    r.state,
                    text(r.reason),
                    text(r.external_message_id),
                    time(r.sent_at),
                    time(r.replied_at),
                    r.interaction_id.map(|i| i.to_string()).unwrap_or_default(),
                ])
                .map_err(csv_error)?;
        }
        Ok(())
    })
    .await?;
    let body = writer.into_inner().map_err(|e| csv_error(e.into_error().into()))?;
    Ok(super::exports::attachment(super::exports::CSV, &format!("campaign-{id}-recipients.csv"), body))
}

/// Every recipient and its outcome as an Excel workbook: the CSV's columns, the times as Excel
/// times (UTC), written in constant-memory mode to a temporary file as the pages are read.
#[utoipa::path(
    get,
    path = "/api/v1/exports/campaigns/{id}/recipients.xlsx",
    tag = "exports",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The recipients",
         content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::model::XlsxFile),
        (status = 400, description = "Not a campaign id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn export_xlsx(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    use rust_xlsxwriter::{Format, Workbook};
    principal.require(Scope::AdminRead)?;
    let id = parse_uuid("id", &id)?;
    let xlsx_error = |e: rust_xlsxwriter::XlsxError| {
        tracing::error!(error = %e, "cannot write the recipients' Excel export");
        ApiError::internal()
    };
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let sheet = workbook.add_worksheet_with_constant_memory().map_err(xlsx_error)?;
    sheet.set_name("recipients").map_err(xlsx_error)?;
    for (col, name) in RECIPIENT_COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, *name, &bold).map_err(xlsx_error)?;
        sheet
            .set_column_width(col as u16, if name.ends_with("_id") || name.ends_with("_at") { 24 } else { 16 })
            .map_err(xlsx_error)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
    let mut row: u32 = 1;
    each_recipient_page(&state, id, |rows| {
        for r in rows {
            let texts = [
                (0, Some(r.id.to_string())),
                (1, Some(r.chat_id)),
                (2, r.customer_id.map(|c| c.to_string())),
                (3, r.phone),
                (4, Some(r.state)),
                (5, r.reason),
                (6, r.external_message_id),
                (9, r.interaction_id.map(|i| i.to_string())),
            ];
            // a string cell is never a formula in a workbook: nothing to defuse
            for (col, text) in texts {
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    sheet.write_string(row, col, text).map_err(xlsx_error)?;
                }
            }
            for (col, at) in [(7, r.sent_at), (8, r.replied_at)] {
                if let Some(at) = at {
                    sheet.write_datetime_with_format(row, col, at.naive_utc(), &time).map_err(xlsx_error)?;
                }
            }
            row += 1;
        }
        Ok(())
    })
    .await?;
    let file = tempfile::NamedTempFile::new().map_err(|e| {
        tracing::error!(error = %e, "cannot create the Excel export's file");
        ApiError::internal()
    })?;
    workbook.save(file.path()).map_err(xlsx_error)?;
    let bytes = tokio::fs::read(file.path()).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the Excel export back");
        ApiError::internal()
    })?;
    Ok(super::exports::attachment(super::exports::XLSX, &format!("campaign-{id}-recipients.xlsx"), bytes))
}

/// The campaign's recipients in id order, `loader.export_batch` at a time, given to `each`;
/// 404 when there is no such campaign.
async fn each_recipient_page(
    state: &AppState,
    id: Uuid,
    mut each: impl FnMut(Vec<store::RecipientReport>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut conn = state.pool.acquire().await?;
    store::get_campaign(&mut conn, id).await?;
    let mut after = 0;
    loop {
        let rows =
            store::campaign_recipients(&mut conn, id, after, i64::from(state.config.export_batch.max(1))).await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.id;
        each(rows)?;
    }
}

/// An account's stop words: a customer whose whole message is one of them (any case,
/// punctuation around it ignored) is opted out of the account's campaigns.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutWords {
    /// `null` (on a PUT) restores the default: STOP, СТОП, ОТПИСАТЬСЯ.
    #[schema(example = json!(["STOP", "СТОП", "ОТПИСАТЬСЯ"]))]
    pub words: Option<Vec<String>>,
}

impl Validate for OptOutWords {
    fn validate(&self) -> Result<(), InputError> {
        if let Some(words) = &self.words {
            check_each("words", Kind::Name, words)?;
            if words.len() > 100 {
                return Err(InputError::new("words", "at most 100"));
            }
        }
        Ok(())
    }
}

/// Sets an account's stop words (audited).
#[utoipa::path(
    put,
    path = "/api/v1/accounts/{id}/opt-out-words",
    tag = "campaigns",
    params(("id" = Uuid, Path, description = "Account id")),
    request_body = OptOutWords,
    responses(
        (status = 200, description = "The words now in force", body = OptOutWords),
        (status = 400, description = "A bad word (named)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put_opt_out_words(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<OptOutWords>,
) -> Result<Json<OptOutWords>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id = parse_uuid("id", &id)?;
    let mut tx = state.pool.begin().await?;
    store::set_opt_out_words(&mut tx, id, input.words.as_deref()).await?;
    let words = store::opt_out_words(&mut tx, id).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "account.opt_out_words",
            target_kind: "account",
            target_id: &id.to_string(),
            details: json!({"words": words}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(OptOutWords { words: Some(words) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_upload_names_its_bad_line() {
        let ok = parse_csv(b"phone,name,order\n+79001234567,Anna,7731\n+79007654321,Boris,7732\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].phone.as_deref(), Some("+79007654321"));
        assert_eq!(ok[1].variables.get("name").map(String::as_str), Some("Boris"));
        let err = parse_csv(b"customer_id,name\nnot-a-uuid,Anna\n").unwrap_err();
        assert_eq!(err.to_string(), "`csv line 2: customer_id` \"not-a-uuid\" is not a UUID");
        let err = parse_csv(b"name\nAnna\n").unwrap_err();
        assert!(err.to_string().contains("neither customer_id nor phone"), "{err}");
        let err = parse_csv(b"phone,name\n,Anna\n").unwrap_err();
        assert!(err.to_string().contains("csv line 2"), "{err}");
        assert!(parse_csv(b"phone\n").is_err(), "no rows");
    }

    /// A workbook of `rows` (a cell per value: numbers as numbers, the rest as text), built
    /// with the writer the exports use.
    fn workbook(rows: &[&[&str]]) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                if value.is_empty() {
                    continue;
                }
                match value.parse::<f64>() {
                    Ok(n) if !value.starts_with('+') => sheet.write_number(r as u32, c as u16, n).unwrap(),
                    _ => sheet.write_string(r as u32, c as u16, *value).unwrap(),
                };
            }
        }
        book.save_to_buffer().unwrap()
    }

    #[test]
    fn an_xlsx_upload_reads_like_the_csv_and_names_its_bad_row_and_column() {
        let body = workbook(&[
            &["phone", "name", "order", "utc_offset_min"],
            &["79001234567", "Anna", "7731", "180"],
            &[],
            &["+79007654321", "Boris", "7732.5", ""],
        ]);
        let ok = parse_xlsx(&body).unwrap();
        assert_eq!(ok.len(), 2, "the blank row is skipped");
        assert_eq!(ok[0].phone.as_deref(), Some("79001234567"), "a whole number without a decimal point");
        assert_eq!(ok[0].utc_offset_min, Some(180));
        assert_eq!(ok[0].variables.get("order").map(String::as_str), Some("7731"));
        assert_eq!(ok[1].phone.as_deref(), Some("+79007654321"));
        assert_eq!(ok[1].variables.get("order").map(String::as_str), Some("7732.5"));
        assert_eq!(ok[1].utc_offset_min, None);

        let bad = workbook(&[&["customer_id", "name"], &["0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f", "A"], &["nope", "B"]]);
        assert_eq!(parse_xlsx(&bad).unwrap_err().to_string(), "`xlsx row 3: customer_id` \"nope\" is not a UUID");
        let bad = workbook(&[&["phone", "name"], &["+79001234567", "Anna"], &["", "Nobody"]]);
        assert!(parse_xlsx(&bad).unwrap_err().to_string().contains("xlsx row 3"), "a row with neither id");
        let bad = workbook(&[&["phone", "utc_offset_min"], &["+79001234567", "soon"]]);
        assert_eq!(
            parse_xlsx(&bad).unwrap_err().to_string(),
            "`xlsx row 2: utc_offset_min` is not a whole number of minutes"
        );
        let err = parse_xlsx(&workbook(&[&["name"], &["Anna"]])).unwrap_err();
        assert!(err.to_string().contains("neither customer_id nor phone"), "{err}");
        assert!(parse_xlsx(&workbook(&[&["phone"]])).unwrap_err().to_string().contains("no recipient rows"));
        let err = parse_xlsx(b"phone\n+79001234567\n").unwrap_err();
        assert!(err.to_string().contains("not a readable Excel workbook"), "{err}");

        // a date is refused naming its cell
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        sheet.write_string(0, 0, "phone").unwrap();
        sheet.write_string(0, 1, "due").unwrap();
        sheet.write_string(1, 0, "+79001234567").unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap().and_hms_opt(9, 0, 0).unwrap();
        let format = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        sheet.write_datetime_with_format(1, 1, date, &format).unwrap();
        let err = parse_xlsx(&book.save_to_buffer().unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "`xlsx row 2, column B` is a date or time; write it as text");
    }

    #[test]
    fn quiet_hours_read_as_minutes() {
        assert_eq!(parse_quiet("21:00-09:00").unwrap(), (1260, 540));
        assert_eq!(parse_quiet(" 13:30 - 14:05 ").unwrap(), (810, 845));
        assert!(parse_quiet("25:00-09:00").is_err());
        assert!(parse_quiet("21:00").is_err());
    }
}
