//! The one `StandardPolicy` every operation uses.

use once_cell::sync::Lazy;
use sequoia_openpgp::policy::StandardPolicy;

/// Sequoia's standard policy as shipped: SHA-1 signatures, MD5, small RSA and the like are
/// rejected; SHA-1 stays acceptable only where RFC 4880 needs it (the SEIPDv1 MDC).
pub static POLICY: Lazy<StandardPolicy<'static>> = Lazy::new(StandardPolicy::new);
