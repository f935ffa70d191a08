use super::finish::session_ended;
use super::*;
use crate::classify::tests::server;

/// A body's own error type that carries a `DbErr` as its source.
#[derive(Debug, thiserror::Error)]
#[error("the transfer failed")]
struct Transfer(#[source] DbErr);

fn step<E: std::error::Error + 'static>(e: &TxError<E>, committing: bool) -> &'static str {
    match next_step(e, committing, false) {
        Next::Conflict => "conflict",
        Next::Failover => "failover",
        Next::GiveUp => "give up",
    }
}

#[test]
fn a_lost_server_before_commit_is_retried_and_never_after() {
    for code in ["25006", "57P01", "57P02", "08006"] {
        let begin = TxError::<Transfer>::Database(server(code));
        assert_eq!(step(&begin, false), "failover", "BEGIN {code}");
        let body = TxError::Aborted(Transfer(server(code)));
        assert_eq!(step(&body, false), "failover", "body {code}");
        assert_eq!(step(&begin, true), "give up", "COMMIT {code}");
    }
    // A conflict is answered by a rollback wherever it comes from.
    assert_eq!(
        step(&TxError::<Transfer>::Database(server("40001")), true),
        "conflict"
    );
    assert_eq!(
        step(&TxError::Aborted(Transfer(server("40P01"))), false),
        "conflict"
    );
    // The body's own write in the read-only transaction it asked for.
    let own = TxError::Aborted(Transfer(server("25006")));
    assert!(matches!(next_step(&own, false, true), Next::GiveUp));
    assert!(matches!(
        next_step(&TxError::Aborted(Transfer(server("57P01"))), false, true),
        Next::Failover
    ));
    // Nothing to find, or nothing about the server.
    let user = TxError::Aborted(std::io::Error::other("insufficient funds"));
    assert_eq!(step(&user, false), "give up");
    assert_eq!(
        step(&TxError::Aborted(Transfer(server("23505"))), false),
        "give up"
    );
    assert_eq!(
        step(&TxError::<Transfer>::Timeout(Duration::from_secs(1)), false),
        "give up"
    );
    assert_eq!(
        step(&TxError::<Transfer>::MaxWait(Duration::from_secs(1)), false),
        "give up"
    );
}

#[test]
fn a_commit_answered_with_the_end_of_the_session_is_not_a_rollback() {
    for code in ["57P01", "57P02", "08006"] {
        assert!(session_ended(&server(code)), "{code}");
    }
    for code in ["40001", "23505", "25P02", "57014"] {
        assert!(!session_ended(&server(code)), "{code}");
    }
}

#[test]
fn failover_pauses_grow_from_50_ms_to_at_most_1_s() {
    let pauses: Vec<Duration> = failover_backoff().take(12).collect();
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&pauses[0]),
        "{pauses:?}"
    );
    assert!(
        pauses.iter().all(|p| *p <= Duration::from_secs(1)),
        "{pauses:?}"
    );
    assert!(pauses[11] >= Duration::from_millis(500), "{pauses:?}");
}
