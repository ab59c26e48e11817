//! ValueStream's pure core: everything between the bytes of a webhook delivery
//! and the state of a span, with no IO and no clock (times are passed in).
//!
//! The flow, module by module:
//! - [`delivery`]: one webhook request as received (headers + raw body).
//! - [`verify`]: HMAC signatures and shared tokens, compared in constant time.
//! - [`sources`]: one module per source turns a delivery into [`span::SpanEvent`]s.
//! - [`link`]: trace references and closing keywords found in branches and text.
//! - [`span`]: folds a span's events, in any arrival order, into one [`span::Span`].
//! - [`export`]: what a span looks like to a trace backend: name, kind, status, attributes.
//! - [`changes`]: changes in branch order, deploys' change sets, incident attribution.
//! - [`vocab`]: the span kinds, outcomes and attribute names matched after parsing.
//! - [`ids`]: deterministic trace and span ids from span keys.
//! - [`stats`]: percentiles, distributions and DORA levels (metrics.md).
//! - [`time`]: the [`time::Timestamp`] used everywhere (UTC nanoseconds).

pub mod changes;
pub mod delivery;
pub mod export;
pub mod ids;
pub mod link;
pub mod settle;
pub mod sources;
pub mod span;
pub mod stats;
pub mod time;
pub mod verify;
pub mod vocab;
