//! The startup line's statement of the connection budget, in the guide's terms.

/// What one instance may hold open on the database server, counted the way the guide's
/// sizing formula counts it: the pool, one migration connection and one readiness check of
/// its own. Behind PgBouncer the pool's connections are PgBouncer's clients, so only the
/// migration and probe connections reach the server from the instance itself.
pub(super) fn budget_per_instance(connection_limit: u32, pgbouncer: bool) -> u32 {
    if pgbouncer {
        2
    } else {
        connection_limit.saturating_add(2)
    }
}

/// The startup line's statement of the budget, in the guide's terms ("Sizing the pool"
/// and "The connection budget" in CONNECTION_POOLING.md), so an operator can add up the
/// fleet from one instance's log.
pub(super) fn budget_line(connection_limit: u32, pgbouncer: bool) -> String {
    let server = "max_connections − superuser_reserved_connections";
    if pgbouncer {
        format!(
            "this instance's connection budget: at most {connection_limit} connection(s) to \
             PgBouncer (count instances at peak × {connection_limit} against its \
             max_client_conn) and 2 to the database server (1 migration + 1 probe: count \
             instances at peak × 2, plus PgBouncer's pools, against {server})"
        )
    } else {
        let total = budget_per_instance(connection_limit, false);
        format!(
            "this instance's connection budget: at most {total} connection(s) to the database \
             server ({connection_limit} pooled + 1 migration + 1 probe: count instances at peak, \
             surge included, × {total} against {server})"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::budget_line;

    #[test]
    fn the_startup_budget_is_the_guides_formula_per_instance() {
        // The shipped manifest: connection_limit 5 → 7 per instance, (2 + 1) × 7 = 21.
        let direct = budget_line(5, false);
        assert!(
            direct.contains(
                "at most 7 connection(s) to the database server (5 pooled + 1 migration + 1 probe"
            ),
            "{direct}"
        );
        assert!(
            direct.contains("× 7 against max_connections − superuser_reserved_connections"),
            "{direct}"
        );
        let bouncer = budget_line(10, true);
        assert!(
            bouncer.contains("at most 10 connection(s) to PgBouncer"),
            "{bouncer}"
        );
        assert!(
            bouncer.contains("× 10 against its max_client_conn"),
            "{bouncer}"
        );
        assert!(
            bouncer.contains("2 to the database server (1 migration + 1 probe"),
            "{bouncer}"
        );
        // Saturates rather than overflowing on an absurd limit.
        assert!(budget_line(u32::MAX, false).contains("4294967295 connection(s)"));
    }
}
