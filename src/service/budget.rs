//! The startup line's statement of the connection budget, in the guide's terms ("Sizing the
//! pool" and "The connection budget" in CONNECTION_POOLING.md), so an operator can add up the
//! fleet from one instance's log.

use crate::config::Backend;

/// Where one instance's connections go, counted as the guide's formulas count them: the pool
/// and the readiness check's own connection through `DATABASE_URL`; the migration connection
/// (or, with migrations off, the schema check's) over `DATABASE_URL_DIRECT` when it is set,
/// else through `DATABASE_URL` too. Each is an upper bound: the probe's and the migration's
/// connections are rarely open at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budget {
    /// Connections through `DATABASE_URL`.
    pub(super) through_url: u32,
    /// Connections over `DATABASE_URL_DIRECT`.
    pub(super) direct: u32,
}

impl Budget {
    pub(super) fn of(connection_limit: u32, has_direct_url: bool) -> Self {
        let migration = u32::from(!has_direct_url);
        Self {
            through_url: connection_limit.saturating_add(1).saturating_add(migration),
            direct: u32::from(has_direct_url),
        }
    }
}

/// The budget as the startup line says it.
pub(super) fn budget_line(
    backend: Backend,
    connection_limit: u32,
    pgbouncer: bool,
    b: Budget,
) -> String {
    let has_direct_url = b.direct > 0;
    if backend == Backend::Sqlite {
        return format!(
            "this instance's connection budget: at most {} connection(s) to its SQLite file \
             ({connection_limit} pooled + 1 probe + 1 migration or schema check)",
            b.through_url
        );
    }
    let server = match backend {
        Backend::MySql => "max_connections",
        _ => "max_connections − superuser_reserved_connections",
    };
    let through = if has_direct_url {
        format!(
            "at most {} connection(s) through DATABASE_URL ({connection_limit} pooled + 1 probe) \
             and 1 over DATABASE_URL_DIRECT (migration or schema check)",
            b.through_url
        )
    } else {
        format!(
            "at most {} connection(s) through DATABASE_URL ({connection_limit} pooled + 1 probe \
             + 1 migration or schema check)",
            b.through_url
        )
    };
    let count = if pgbouncer {
        let direct = if has_direct_url {
            " plus instances at peak × 1"
        } else {
            ""
        };
        format!(
            "DATABASE_URL is PgBouncer: count instances at peak, surge included, × {} against \
             its max_client_conn, and PgBouncer's server pools{direct} against the server's {server}",
            b.through_url
        )
    } else {
        format!(
            "count instances at peak, surge included, × {} against the server's {server} \
             (against PgBouncer's max_client_conn instead if DATABASE_URL leads to a PgBouncer)",
            b.through_url + b.direct
        )
    };
    format!("this instance's connection budget: {through}; {count}")
}

#[cfg(test)]
mod tests {
    use super::{Budget, budget_line};
    use crate::config::Backend;

    #[test]
    fn the_startup_budget_is_the_guides_formula_per_instance() {
        // The shipped manifest: connection_limit 5, DATABASE_URL_DIRECT only in the init
        // container → 7 per instance, (2 + 1) × 7 = 21.
        let direct = budget_line(Backend::Postgres, 5, false, Budget::of(5, false));
        assert!(
            direct.contains(
                "at most 7 connection(s) through DATABASE_URL (5 pooled + 1 probe + 1 migration"
            ),
            "{direct}"
        );
        assert!(
            direct.contains("× 7 against the server's max_connections − superuser_reserved"),
            "{direct}"
        );
        // Behind PgBouncer with a direct URL for migrations: the probe counts as PgBouncer's
        // client, the migration as the server's.
        let bouncer = budget_line(Backend::Postgres, 10, true, Budget::of(10, true));
        assert!(
            bouncer.contains("at most 11 connection(s) through DATABASE_URL (10 pooled + 1 probe)"),
            "{bouncer}"
        );
        assert!(bouncer.contains("1 over DATABASE_URL_DIRECT"), "{bouncer}");
        assert!(
            bouncer.contains("× 11 against its max_client_conn"),
            "{bouncer}"
        );
        assert!(
            bouncer.contains("plus instances at peak × 1 against"),
            "{bouncer}"
        );
        // MySQL names its own limit; SQLite has no server to share.
        assert!(
            budget_line(Backend::MySql, 4, false, Budget::of(4, false)).ends_with("against the server's max_connections (against PgBouncer's max_client_conn instead if DATABASE_URL leads to a PgBouncer)")
        );
        assert!(
            budget_line(Backend::Sqlite, 4, false, Budget::of(4, false))
                .contains("to its SQLite file")
        );
        // Saturates rather than overflowing on an absurd limit.
        assert_eq!(Budget::of(u32::MAX, false).through_url, u32::MAX);
    }
}
