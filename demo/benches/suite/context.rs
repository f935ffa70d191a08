//! The session context's cost at pool level: the same single-row read by id, on the same
//! `DbService` (same pool, same connections), without a context (a prepared statement) and
//! through `db.with_context(..)` (one simple-protocol message, `SET LOCAL app."tenant_id" =
//! '42'; EXECUTE dbservice_ctx_N(('7'::int8))` of a statement each connection prepared once),
//! back to back in each round; and, for comparison, the same read on a `pgbouncer=true` pool
//! straight to PostgreSQL: one message with the statement inlined, re-planned every time.

use dbservice::context::SessionContext;

use super::*;

/// The rows, in the order the tables print them (and the ratios index them).
pub(crate) const CONTEXT_VARIANTS: [&str; 3] = [
    "context: DbService, no context (prepared statement)",
    "context: same DbService, with_context (SET LOCAL + EXECUTE of a statement prepared once per connection, one message)",
    "context: DbService, pgbouncer=true, direct (inlined statement, one message, no SET LOCAL)",
];

/// Index of the read without a context in [`CONTEXT_VARIANTS`].
pub(crate) const PLAIN: usize = 0;
/// Index of the read with a context.
pub(crate) const WITH_CONTEXT: usize = 1;
/// Index of the inlined read without `SET LOCAL`.
pub(crate) const INLINED: usize = 2;

/// The three clients and their series.
pub(crate) struct ContextBench {
    clients: [Client; 3],
    pub(crate) series: Vec<Series>,
}

impl ContextBench {
    /// Opens one `DbService` (our defaults, a pool of `size`) for the reads without and with
    /// a context, and a `pgbouncer=true` one straight to `url`.
    pub(crate) async fn open(url: &str, size: u32) -> ContextBench {
        let plain = Client::open(0, url, size).await;
        let Client::Ours(db) = &plain else {
            unreachable!("variant 0 is DbService")
        };
        let tenant = SessionContext::tenant("app.tenant_id", 42).expect("a valid context");
        let with = Client::OursContext(db.with_context(tenant).expect("PostgreSQL"));
        let inlined = Client::open(7, url, size).await;
        ContextBench {
            clients: [plain, with, inlined],
            series: CONTEXT_VARIANTS.iter().map(|n| Series::new(*n)).collect(),
        }
    }

    /// One round: the three back to back, the order reversed every other round (the context
    /// read stays in the middle), so that a drift within a round does not favour one side.
    pub(crate) async fn round(&mut self, round: usize, tasks: usize, seconds: Duration) {
        let order = if round % 2 == 1 {
            [PLAIN, WITH_CONTEXT, INLINED]
        } else {
            [INLINED, WITH_CONTEXT, PLAIN]
        };
        for i in order {
            let sample = pool::run(&self.clients[i], Work::Read, tasks, seconds).await;
            self.series[i].rounds.push(sample);
            log(round, &self.series[i]);
        }
    }

    pub(crate) async fn close(self) {
        for c in self.clients {
            c.close().await;
        }
    }
}
