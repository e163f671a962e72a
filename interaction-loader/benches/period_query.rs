//! Period-query latency on 1 million messages in 100,000 interactions.
//!
//! `cargo bench -p interaction-loader --bench period_query` (with the services of
//! `deploy/services.sh` running and its `env` exported). It fills a fresh database with one
//! `INSERT ... SELECT generate_series` per table: 100,000 customers and Telegram interactions
//! spread over 30 days (one every 25.92 s), 10 messages each (5 from the customer, 5 from an
//! agent, 3 minutes apart); then times `store::interactions_in_period` (the query behind
//! `GET /api/v1/interactions`) for several periods, filters and page positions, and prints the
//! `EXPLAIN (ANALYZE, BUFFERS)` plans. Results: `docs/interaction-loader.md`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use schema::store::{self, PeriodFilter, PeriodKey};
use sqlx::PgPool;

const INTERACTIONS: i64 = 100_000;
const MESSAGES_PER_INTERACTION: i64 = 10;
const RUNS: usize = 30;

async fn fill(pool: &PgPool, base: DateTime<Utc>) {
    let steps: [(&str, &str); 6] = [
        ("queue", "INSERT INTO queues (name) VALUES ('support')"),
        (
            "account",
            "INSERT INTO accounts (id, channel, name, default_queue)
             VALUES ('00000000-0000-0000-0000-00000000000a', 'telegram', 'bench', 'support')",
        ),
        ("agents", "INSERT INTO agents (login, name) SELECT 'agent' || g, 'Agent ' || g FROM generate_series(0, 19) g"),
        (
            "customers",
            "INSERT INTO customers (id, name, phone, created_at)
             SELECT md5('c' || g)::uuid, 'Customer ' || g, '+7999' || lpad(g::text, 7, '0'), $1
             FROM generate_series(1, 100000) g",
        ),
        (
            "interactions",
            "INSERT INTO interactions (id, account_id, customer_id, external_id, channel, chat_id, state, queue,
                 agent, last_agent, created_at, updated_at, closed_at, last_customer_message_at)
             SELECT md5('i' || g)::uuid, '00000000-0000-0000-0000-00000000000a', md5('c' || g)::uuid, 'u' || g,
                 'telegram', 'u' || g, CASE WHEN g % 10 = 0 THEN 'assigned' ELSE 'closed' END, 'support',
                 CASE WHEN g % 10 = 0 THEN 'agent' || (g % 20) END, 'agent' || (g % 20),
                 $1 + g * interval '25.92 seconds', $1 + g * interval '25.92 seconds' + interval '30 minutes',
                 CASE WHEN g % 10 <> 0 THEN $1 + g * interval '25.92 seconds' + interval '30 minutes' END,
                 $1 + g * interval '25.92 seconds' + interval '24 minutes'
             FROM generate_series(1, 100000) g",
        ),
        (
            "messages",
            "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
                 kind, text, status, external_message_id, agent_login, created_at)
             SELECT md5('m' || g || '-' || k)::uuid, md5('i' || g)::uuid, '00000000-0000-0000-0000-00000000000a',
                 CASE WHEN k % 2 = 0 THEN 'in' ELSE 'out' END,
                 CASE WHEN k % 2 = 0 THEN 'customer' ELSE 'agent' END,
                 CASE WHEN k % 2 = 0 THEN md5('c' || g) ELSE 'agent' || (g % 20) END,
                 CASE WHEN k % 2 = 0 THEN 'Customer ' || g ELSE 'Agent ' || (g % 20) END,
                 'text', 'message ' || k || ' of chat ' || g || CASE WHEN g % 97 = 0 THEN ' about a refund' ELSE '' END,
                 CASE WHEN k % 2 = 0 THEN 'received' ELSE 'sent' END,
                 CASE WHEN k % 2 = 0 THEN 'x' || g || '-' || k END,
                 CASE WHEN k % 2 = 1 THEN 'agent' || (g % 20) END,
                 $1 + g * interval '25.92 seconds' + k * interval '3 minutes'
             FROM generate_series(1, 100000) g, generate_series(0, 9) k",
        ),
    ];
    for (name, sql) in steps {
        let started = Instant::now();
        let mut query = sqlx::query(sql);
        if sql.contains("$1") {
            query = query.bind(base);
        }
        query.execute(pool).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("  {name:<13} {:>6.1} s", started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    for table in ["customers", "interactions", "messages"] {
        // the table names are constants here
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}"))).execute(pool).await.unwrap();
    }
    println!("  {:<13} {:>6.1} s", "vacuum", started.elapsed().as_secs_f64());
}

struct Stats {
    p50: Duration,
    p95: Duration,
    rows: usize,
}

async fn time(pool: &PgPool, filter: &PeriodFilter, after: Option<PeriodKey>, limit: i64) -> Stats {
    let mut conn = pool.acquire().await.unwrap();
    let mut times = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        rows = store::interactions_in_period(&mut conn, filter, after, limit).await.unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    Stats { p50: times[RUNS / 2], p95: times[RUNS * 95 / 100], rows }
}

/// Pages through the whole period; returns (pages, rows, total time).
async fn walk(pool: &PgPool, filter: &PeriodFilter, limit: i64) -> (usize, usize, Duration) {
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    let (mut pages, mut rows, mut after) = (0, 0, None);
    loop {
        let page = store::interactions_in_period(&mut conn, filter, after, limit).await.unwrap();
        pages += 1;
        rows += page.len();
        if (page.len() as i64) < limit {
            return (pages, rows, started.elapsed());
        }
        after = page.last().map(|r| r.key());
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let (_, pool) = testenv::database().await;
    let base: DateTime<Utc> = "2024-04-01T00:00:00Z".parse().unwrap();
    println!("filling: {INTERACTIONS} interactions, {} messages", INTERACTIONS * MESSAGES_PER_INTERACTION);
    fill(&pool, base).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&pool).await.unwrap();
    assert_eq!(count, INTERACTIONS * MESSAGES_PER_INTERACTION);

    let day = |d: i64| PeriodFilter {
        from: base + chrono::Duration::days(d),
        to: base + chrono::Duration::days(d + 1),
        ..Default::default()
    };
    let month = PeriodFilter { from: base, to: base + chrono::Duration::days(31), ..Default::default() };
    let mut conn = pool.acquire().await.unwrap();
    let deep_day = {
        let mut after = None;
        for _ in 0..30 {
            let page = store::interactions_in_period(&mut conn, &day(10), after, 100).await.unwrap();
            after = page.last().map(|r| r.key());
        }
        after
    };
    let deep_month = {
        let page = store::interactions_in_period(&mut conn, &month, None, 50_000).await.unwrap();
        page.last().map(|r| r.key())
    };
    drop(conn);

    let cases: Vec<(&str, PeriodFilter, Option<PeriodKey>, i64)> = vec![
        ("1 day, first page of 100", day(10), None, 100),
        ("1 day, page 31 (after 3,000 rows)", day(10), deep_day, 100),
        ("30 days, first page of 100", month.clone(), None, 100),
        ("30 days, page after 50,000 rows", month.clone(), deep_month, 100),
        ("1 day, first page of 500", day(10), None, 500),
        ("1 day, state=assigned", PeriodFilter { states: vec!["assigned".into()], ..day(10) }, None, 100),
        ("1 day, agent=agent7", PeriodFilter { agent: Some("agent7".into()), ..day(10) }, None, 100),
        ("1 day, q=refund", PeriodFilter { text: Some("refund".into()), ..day(10) }, None, 100),
        (
            "1 hour, first page of 100",
            PeriodFilter { to: day(10).from + chrono::Duration::hours(1), ..day(10) },
            None,
            100,
        ),
    ];
    println!("\nperiod query latency ({RUNS} runs each):");
    println!("  {:<38} {:>6} {:>10} {:>10}", "case", "rows", "p50", "p95");
    for (name, filter, after, limit) in &cases {
        let s = time(&pool, filter, *after, *limit).await;
        println!("  {name:<38} {:>6} {:>10} {:>10}", s.rows, ms(s.p50), ms(s.p95));
    }

    println!("\nwhole-period walks (what an export does):");
    for (name, filter, limit) in
        [("1 day in pages of 1000", day(10), 1000), ("30 days in pages of 1000", month.clone(), 1000)]
    {
        let (pages, rows, took) = walk(&pool, &filter, limit).await;
        println!(
            "  {name:<38} {rows:>6} rows, {pages:>3} pages, {} ({:.0} rows/s)",
            ms(took),
            rows as f64 / took.as_secs_f64()
        );
    }

    let mut conn = pool.acquire().await.unwrap();
    for (name, filter, after, limit) in [&cases[0], &cases[3], &cases[5], &cases[7]] {
        println!("\nEXPLAIN (ANALYZE, BUFFERS): {name}");
        for line in store::explain_period_query(&mut conn, filter, *after, *limit).await.unwrap() {
            println!("  {line}");
        }
    }
}
