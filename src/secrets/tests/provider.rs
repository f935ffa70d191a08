//! The provider, the precedence of the sources, and `describe`.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use crate::config::Credentials;
use crate::config::CredentialsProvider;
use crate::config::ProviderError;

use super::*;

/// How the test provider answers.
#[derive(Clone, Copy)]
enum Answer {
    Token,
    Fail,
    Hang,
}

/// A provider that counts its calls.
struct Provider {
    answer: Answer,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl CredentialsProvider for Provider {
    async fn credentials(
        &self,
        request: &CredentialsRequest<'_>,
    ) -> Result<Credentials, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.answer {
            Answer::Token => Ok(Credentials::user_password(
                format!("iam-{}", request.user),
                format!("token-{n}"),
            )),
            Answer::Fail => Err("vault sealed".into()),
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Credentials::password("late"))
            }
        }
    }
}

/// Sources with a provider answering `answer` (and the count of its calls).
fn provided(answer: Answer) -> (Arc<Provider>, Secrets) {
    let provider = Arc::new(Provider {
        answer,
        calls: AtomicUsize::new(0),
    });
    let secrets = Secrets::open(CredentialSources {
        provider: Some(Arc::clone(&provider) as Arc<dyn CredentialsProvider>),
        ..CredentialSources::default()
    })
    .expect("open");
    (provider, secrets)
}

#[tokio::test]
async fn the_provider_is_asked_for_each_connection_and_may_replace_the_user() {
    let (provider, secrets) = provided(Answer::Token);
    for n in 1..=2 {
        let resolved = secrets
            .resolve(&db(), true, false, BOUND)
            .await
            .expect("resolve");
        assert_eq!(resolved.user.as_deref(), Some("iam-app"));
        assert_eq!(resolved.password, Some(format!("token-{n}")));
        assert_eq!(resolved.source.as_deref(), Some("credentials provider"));
        assert!(resolved.rereadable);
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_provider_gives_its_text() {
    let (_, secrets) = provided(Answer::Fail);
    let err = secrets
        .resolve(&db(), false, false, BOUND)
        .await
        .expect_err("fails");
    assert!(
        matches!(&err, SecretError::Provider(text) if text == "vault sealed"),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_slow_provider_is_cut_off_at_the_bound() {
    let (_, secrets) = provided(Answer::Hang);
    let bound = Duration::from_millis(50);
    let err = secrets
        .resolve(&db(), false, false, bound)
        .await
        .expect_err("times out");
    assert!(
        matches!(err, SecretError::ProviderTimedOut(b) if b == bound),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_sources_are_asked_in_precedence_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    let pass = dir.path().join("pgpass");
    let home = dir.path().join(".pgpass");
    write(&pw, "from-password-file\n", 0o600);
    write(&pass, "*:*:*:*:from-passfile\n", 0o600);
    write(&home, "*:*:*:*:from-default\n", 0o600);
    let provider: Arc<dyn CredentialsProvider> = Arc::new(Provider {
        answer: Answer::Token,
        calls: AtomicUsize::new(0),
    });
    let mut sources = CredentialSources {
        provider: Some(provider),
        password_file: Some(named("DATABASE_PASSWORD_FILE", &pw)),
        passfile: Some(named("PGPASSFILE", &pass)),
        env_password: Some(("PGPASSWORD", String::from("from-env"))),
        default_passfile: Some(named("~/.pgpass", &home)),
    };
    let secrets = Secrets::open(sources.clone()).expect("open");
    // The list ends at the first source that always answers.
    assert_eq!(secrets.describe(), "credentials provider");
    let only_files = CredentialSources {
        provider: None,
        password_file: None,
        env_password: None,
        ..sources.clone()
    };
    assert_eq!(
        Secrets::open(only_files).expect("open").describe(),
        format!(
            "PGPASSFILE {} > ~/.pgpass {}",
            pass.display(),
            home.display()
        )
    );
    let resolve = |sources: &CredentialSources, url_password: bool| {
        let secrets = Secrets::open(sources.clone()).expect("open");
        async move {
            let r = secrets
                .resolve(&db(), url_password, false, BOUND)
                .await
                .expect("resolve");
            (r.password, r.source)
        }
    };
    assert_eq!(resolve(&sources, true).await.0.as_deref(), Some("token-1"));
    sources.provider = None;
    assert_eq!(resolve(&sources, true).await, (None, None));
    let expected = [
        (
            "from-password-file",
            format!("DATABASE_PASSWORD_FILE {}", pw.display()),
        ),
        ("from-passfile", format!("PGPASSFILE {}", pass.display())),
        ("from-env", String::from("PGPASSWORD")),
        ("from-default", format!("~/.pgpass {}", home.display())),
    ];
    for (n, (password, source)) in expected.into_iter().enumerate() {
        let got = resolve(&sources, false).await;
        assert_eq!(got, (Some(password.to_owned()), Some(source)));
        match n {
            0 => sources.password_file = None,
            1 => sources.passfile = None,
            2 => sources.env_password = None,
            _ => sources.default_passfile = None,
        }
    }
    assert_eq!(resolve(&sources, false).await, (None, None));
    let secrets = Secrets::open(sources).expect("open");
    assert_eq!(secrets.describe(), "url");
    assert!(!secrets.is_configured());
}

#[tokio::test]
async fn describe_never_shows_a_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    write(&pw, "file-secret", 0o600);
    let secrets = Secrets::open(CredentialSources {
        password_file: Some(named("DATABASE_PASSWORD_FILE", &pw)),
        env_password: Some(("PGPASSWORD", String::from("env-secret"))),
        ..CredentialSources::default()
    })
    .expect("open");
    let described = secrets.describe();
    assert_eq!(
        described,
        format!("DATABASE_PASSWORD_FILE {}", pw.display())
    );
    let debug = format!("{secrets:?}");
    for shown in [described, debug] {
        assert!(
            !shown.contains("secret\"") && !shown.contains("-secret"),
            "{shown}"
        );
    }
}
