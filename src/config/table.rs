//! The machinery behind the pool-parameter table in [`super::params`]: one macro turns each
//! entry into everything a parameter needs, so that adding one is one entry plus its docs.
//!
//! From an entry `name: Type = default, parser [, only SUPPORT] [, url_alias "other"];` inside
//! a group, the macro makes:
//! - the field `name` (with the entry's doc and serde attributes) in the group's struct, and
//!   its value in the group's `Default`;
//! - the group as a field of [`PoolOptions`](super::PoolOptions), flattened when serialized
//!   and shown flat by `Debug`, so the startup line and logs read one list of parameters;
//! - the key `name` in [`POOL_KEYS`](super::POOL_KEYS): the URL query key, the config file key
//!   and `DBSERVICE_<NAME>` in the environment, and the set of keys whose provenance is
//!   tracked;
//! - a [`Param`] in `PARAMS`: how a written value is parsed and bounded (the parser's errors
//!   name the parameter and the value), which backends accept it, and the other name the URL
//!   query accepts for it (a driver's or Prisma's spelling).

use super::backend::Backend;
use super::error::ConfigError;

/// One pool parameter as the loaders see it.
pub(crate) struct Param {
    /// Its key, in the URL query, the config file and (upper-cased, `DBSERVICE_`-prefixed) the
    /// environment.
    pub key: &'static str,
    /// Parses a written value and stores it.
    pub set: fn(&mut super::PoolOptions, &str) -> Result<(), ConfigError>,
    /// The backends that accept it; `None`: all.
    pub only: Option<Support>,
    /// Another key for it in the URL query (the driver's or Prisma's spelling).
    pub url_alias: Option<&'static str>,
}

/// The backends a parameter is restricted to, and how an error names them.
pub(crate) struct Support {
    /// The backends that accept the parameter.
    pub on: &'static [Backend],
    /// Their names, as the error shows them.
    pub named: &'static str,
    /// Which hosts the primary's pool looks for: replicas do not inherit it from the file or
    /// the environment (a replica's own URL says what it looks for).
    pub primary_only: bool,
}

impl Param {
    /// Whether the primary's value of this parameter stays the primary's (see
    /// [`Support::primary_only`]).
    pub fn primary_only(&self) -> bool {
        self.only.as_ref().is_some_and(|s| s.primary_only)
    }
}

/// A session setting of PostgreSQL's.
pub(crate) const POSTGRES: Support = Support {
    on: &[Backend::Postgres],
    named: "PostgreSQL",
    primary_only: false,
};

/// A PostgreSQL setting of the primary's pool alone: which of its hosts it looks for.
pub(crate) const POSTGRES_PRIMARY: Support = Support {
    primary_only: true,
    ..POSTGRES
};

/// A driver option SQLite's driver lacks.
pub(crate) const NOT_SQLITE: Support = Support {
    on: &[Backend::Postgres, Backend::MySql],
    named: "PostgreSQL and MySQL/MariaDB",
    primary_only: false,
};

/// `Some(value)` when an entry has the optional clause, else `None`.
macro_rules! optional {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

/// Generates the groups, [`PoolOptions`](super::PoolOptions), `POOL_KEYS` and `PARAMS` from
/// the table (see the module docs).
macro_rules! pool_params {
    (
        $(
            $(#[$gmeta:meta])*
            $group:ident: $Group:ident {
                $(
                    $(#[$meta:meta])*
                    $field:ident: $ty:ty = $default:expr, $parse:expr
                        $(, only $only:expr)? $(, url_alias $alias:literal)?;
                )*
            }
        )*
    ) => {
        $(
            $(#[$gmeta])*
            #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
            #[non_exhaustive]
            pub struct $Group {
                $(
                    $(#[$meta])*
                    pub $field: $ty,
                )*
            }

            impl Default for $Group {
                fn default() -> Self {
                    Self {
                        $($field: $default,)*
                    }
                }
            }
        )*

        /// The pool parameters with their effective values, by concern. Every field can be
        /// set in the URL query (and the layered settings) under its own name; durations
        /// written as bare numbers are seconds. Serialized and shown by `Debug` as one flat
        /// list of parameters.
        #[derive(Clone, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct PoolOptions {
            $(
                $(#[$gmeta])*
                #[serde(flatten)]
                pub $group: $Group,
            )*
        }

        impl std::fmt::Debug for PoolOptions {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("PoolOptions")
                    $($(.field(stringify!($field), &self.$group.$field))*)*
                    .finish()
            }
        }

        /// Our pool parameters, as accepted in the URL query and in the layered settings
        /// (`DBSERVICE_<KEY>` in the environment).
        pub const POOL_KEYS: &[&str] = &[$($(stringify!($field),)*)*];

        /// Every pool parameter's parser and backends, in the order of [`POOL_KEYS`].
        pub(crate) const PARAMS: &[Param] = &[
            $($(
                Param {
                    key: stringify!($field),
                    set: |pool, value| {
                        pool.$group.$field = ($parse)(stringify!($field), value)?;
                        Ok(())
                    },
                    only: optional!($($only)?),
                    url_alias: optional!($($alias)?),
                },
            )*)*
        ];
    };
}

pub(crate) use {optional, pool_params};
