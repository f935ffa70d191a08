//! Tenancy (`DBSERVICE_TENANT_HEADER`): each `/api` request names its tenant in a header, and
//! all its database work carries `app.tenant_id` through `db.with_context(..)`, so PostgreSQL's
//! row-level security policy (migration `m20250101_000004`) shows it only that tenant's rows.
//! The SQL of the routes stays the same; the [`Scope`] they run it through differs.
//!
//! Off (the default), a request's scope is the service itself, as before tenancy existed; its
//! rows are tenant 0's, which the policy lets any session without the setting see.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use sea_orm::entity::prelude::async_trait;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};

use dbservice::batch::{BatchError, BatchMethod, BatchOptions, BatchOutcome};
use dbservice::config::Backend;
use dbservice::context::SessionContext;
use dbservice::http::ApiError;
use dbservice::replica::{Reader, WalPosition};
use dbservice::{DbService, Transaction, TxError, TxOptions, WithContext};

/// The session setting the policy reads.
pub const TENANT_SETTING: &str = "app.tenant_id";

/// The demo's tenancy: the header when on, and what startup learnt about the database role.
#[derive(Debug, Default)]
pub struct Tenancy {
    /// The header naming the tenant; `None`: tenancy off.
    header: Option<HeaderName>,
    /// The header as configured, for messages (`HeaderName` prints lower-case).
    shown: String,
    /// The role is bound by row-level security (not superuser, not BYPASSRLS), found at
    /// startup. PostgreSQL refuses `COPY FROM` into such a table, so batches use `INSERT`s.
    bound_by_rls: AtomicBool,
}

impl Tenancy {
    /// Tenancy per `header` (`None`: off).
    pub fn new(header: Option<&str>) -> Result<Self, String> {
        let name = header
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| format!("DBSERVICE_TENANT_HEADER is not an HTTP header name: {e}"))
            })
            .transpose()?;
        Ok(Self {
            header: name,
            shown: header.unwrap_or_default().to_owned(),
            bound_by_rls: AtomicBool::new(false),
        })
    }

    /// Whether requests must name a tenant.
    pub fn is_on(&self) -> bool {
        self.header.is_some()
    }

    /// The build-time check: tenancy needs PostgreSQL's row-level security, and
    /// `require_context` needs tenancy (the routes carry a context only with a tenant).
    pub fn check_backend(&self, backend: Backend, require_context: bool) -> Result<(), String> {
        if require_context && !self.is_on() {
            return Err(
                "require_context is on but tenancy is off (DBSERVICE_TENANT_HEADER is \
                        unset): every route would be refused, since only a tenant's requests \
                        carry a session context; set DBSERVICE_TENANT_HEADER, or turn \
                        require_context off"
                    .to_owned(),
            );
        }
        if self.is_on() && backend != Backend::Postgres {
            return Err(format!(
                "tenancy is on (DBSERVICE_TENANT_HEADER={}) but the database is {}, which has \
                 no row-level security to keep tenants apart: use a PostgreSQL DATABASE_URL, or \
                 unset DBSERVICE_TENANT_HEADER",
                self.shown,
                backend.name()
            ));
        }
        Ok(())
    }

    /// The startup check after migrations (PostgreSQL): whether the connected role bypasses
    /// row-level security. With tenancy on, a role that does is refused: every tenant would
    /// see every row. With tenancy off it only decides how batches are written. It sees the
    /// primary pool's role: replica URLs must name the same role (a replica connection as a
    /// superuser would pass the policy on reads).
    pub async fn check_role(&self, db: &DbService) -> Result<(), String> {
        if db.backend() != Backend::Postgres {
            return Ok(());
        }
        let sql = "SELECT current_user::text AS role, (rolsuper OR rolbypassrls) AS bypasses \
                   FROM pg_roles WHERE rolname = current_user";
        let stmt = Statement::from_string(DbBackend::Postgres, sql);
        // With tenancy on, through a context: `require_context=true` would refuse it bare.
        let row = if self.is_on() {
            let scoped = SessionContext::tenant(TENANT_SETTING, 0)
                .and_then(|ctx| db.with_context(ctx))
                .map_err(|e| e.to_string())?;
            scoped.query_one_raw(stmt).await
        } else {
            db.conn().query_one_raw(stmt).await
        };
        let found = row.and_then(|row| {
            let row = row.ok_or_else(|| DbErr::Custom("no pg_roles row".into()))?;
            Ok((
                row.try_get::<String>("", "role")?,
                row.try_get::<bool>("", "bypasses")?,
            ))
        });
        let (role, bypasses) = match found {
            Ok(found) => found,
            Err(e) if self.is_on() => {
                return Err(format!(
                    "tenancy is on but the database role could not be checked for row-level \
                     security: {e}"
                ));
            }
            Err(e) => {
                // Off, nothing depends on it but the batch method: INSERTs work either way.
                tracing::warn!(error = %e, "could not read the role's row-level security");
                self.bound_by_rls.store(true, Ordering::Relaxed);
                return Ok(());
            }
        };
        self.bound_by_rls.store(!bypasses, Ordering::Relaxed);
        if self.is_on() && bypasses {
            return Err(format!(
                "tenancy is on but role {role} bypasses row-level security (superuser or \
                 BYPASSRLS): tenants would not be isolated; connect as a role without them"
            ));
        }
        if self.is_on() {
            tracing::info!(header = %self.shown, %role, "tenancy on: row-level security binds the role");
        }
        Ok(())
    }

    /// The tenant a request names, or a 400 naming the header. The value is never echoed:
    /// it may be anything a client sent.
    fn tenant_of(&self, header: &HeaderName, req: &HttpRequest) -> Result<i64, ApiError> {
        let mut values = req.headers().get_all(header);
        let Some(value) = values.next() else {
            return Err(ApiError::bad_request(
                "missing_tenant",
                format!(
                    "header {} is required: the tenant's id, a whole number from 1 to {}",
                    self.shown,
                    i64::MAX
                ),
            ));
        };
        let invalid = |why: &str| {
            ApiError::bad_request(
                "invalid_tenant",
                format!(
                    "header {} {why}: the tenant's id, a whole number from 1 to {}",
                    self.shown,
                    i64::MAX
                ),
            )
        };
        if values.next().is_some() {
            return Err(invalid("is given more than once"));
        }
        value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|id| *id >= 1)
            .ok_or_else(|| invalid("is not valid"))
    }
}

/// Where a request's database work runs: the service (tenancy off) or a tenant's context.
/// A SeaORM executor itself (`&scope` in any SeaORM call), with the service's entry points the
/// routes use. Extracted from each request (a 400 naming the header when tenancy is on and
/// the request names no valid tenant).
#[derive(Debug, Clone)]
pub struct Scope {
    db: DbService,
    /// The tenant and the executor carrying its context; `None`: tenancy off.
    tenant: Option<(i64, WithContext)>,
    /// The role is bound by row-level security (see [`Tenancy`]).
    bound_by_rls: bool,
}

impl Scope {
    /// The tenant rows are written for: 0 with tenancy off.
    pub fn tenant_id(&self) -> i64 {
        self.tenant.as_ref().map_or(0, |(id, _)| *id)
    }

    /// The service behind the scope (write positions, transaction defaults).
    pub fn service(&self) -> &DbService {
        &self.db
    }

    /// Replica reads with read-your-writes ([`DbService::read`]).
    pub fn read(&self) -> Reader {
        match &self.tenant {
            None => self.db.read(),
            Some((_, scoped)) => scoped.read(),
        }
    }

    /// Replica reads that wait for `position` ([`DbService::read_after`]).
    pub fn read_after(&self, position: WalPosition) -> Reader {
        match &self.tenant {
            None => self.db.read_after(position),
            Some((_, scoped)) => scoped.read_after(position),
        }
    }

    /// A transaction with `opts` ([`DbService::transaction_with`]). Not an `async fn`, so
    /// the location the service records for the transaction is the route's, not this one's.
    #[track_caller]
    pub fn transaction_with<'a, F, T, E>(
        &'a self,
        opts: TxOptions,
        body: F,
    ) -> Pin<Box<dyn Future<Output = Result<T, TxError<E>>> + 'a>>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send + 'a,
        T: Send + 'a,
        E: std::error::Error + Send + 'static,
    {
        match &self.tenant {
            None => Box::pin(self.db.transaction_with(opts, body)),
            Some((_, scoped)) => Box::pin(scoped.transaction_with(opts, body)),
        }
    }

    /// `models` in one transaction ([`DbService::insert_batch`]).
    pub async fn insert_batch<A>(
        &self,
        models: Vec<A>,
        opts: BatchOptions,
    ) -> Result<BatchOutcome, BatchError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
    {
        // PostgreSQL refuses COPY FROM into a table whose policy binds the role (the owner
        // too, under FORCE); a superuser's COPY stays the fast path it was.
        let opts = if self.bound_by_rls {
            opts.method(BatchMethod::Insert)
        } else {
            opts
        };
        match &self.tenant {
            None => self.db.insert_batch(models, opts).await,
            Some((_, scoped)) => scoped.insert_batch(models, opts).await,
        }
    }

    /// The executor of statements outside a transaction.
    fn conn(&self) -> Conn<'_> {
        match &self.tenant {
            None => Conn::Service(self.db.conn()),
            Some((_, scoped)) => Conn::Tenant(scoped),
        }
    }
}

enum Conn<'a> {
    Service(&'a dbservice::DbConn),
    Tenant(&'a WithContext),
}

/// Runs `$body` with `$c` bound to whichever executor the scope has.
macro_rules! on_conn {
    ($scope:expr, |$c:ident| $body:expr) => {
        match $scope.conn() {
            Conn::Service($c) => $body,
            Conn::Tenant($c) => $body,
        }
    };
}

#[async_trait::async_trait]
impl ConnectionTrait for Scope {
    fn get_database_backend(&self) -> DbBackend {
        on_conn!(self, |c| ConnectionTrait::get_database_backend(c))
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        on_conn!(self, |c| c.execute_raw(stmt).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        on_conn!(self, |c| c.execute_unprepared(sql).await)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        on_conn!(self, |c| c.query_one_raw(stmt).await)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        on_conn!(self, |c| c.query_all_raw(stmt).await)
    }

    fn support_returning(&self) -> bool {
        on_conn!(self, |c| c.support_returning())
    }
}

impl FromRequest for Scope {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(scope_of(req))
    }
}

fn scope_of(req: &HttpRequest) -> Result<Scope, ApiError> {
    let db = req
        .app_data::<web::Data<DbService>>()
        .ok_or_else(|| ApiError::internal(&"no DbService in the app data"))?
        .get_ref()
        .clone();
    let Some(tenancy) = req.app_data::<web::Data<Tenancy>>() else {
        return Ok(Scope {
            db,
            tenant: None,
            bound_by_rls: false,
        });
    };
    let bound_by_rls = tenancy.bound_by_rls.load(Ordering::Relaxed);
    let Some(header) = &tenancy.header else {
        return Ok(Scope {
            db,
            tenant: None,
            bound_by_rls,
        });
    };
    let id = tenancy.tenant_of(header, req)?;
    let scoped = SessionContext::tenant(TENANT_SETTING, id)
        .and_then(|ctx| db.with_context(ctx))
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Scope {
        db,
        tenant: Some((id, scoped)),
        bound_by_rls,
    })
}
