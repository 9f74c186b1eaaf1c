//! Wire and storage contracts of DISPR at scale.
//!
//! Everything that crosses a process boundary is defined here and nowhere else: the job and
//! result messages on RabbitMQ ([`messages`]), the queues and exchange they travel through with
//! their arguments ([`queues`]), the run manifest and the per-cell records written to the object
//! store ([`records`]), the object key layout ([`keys`]) and the validated identifiers that keys
//! are built from ([`ids`]). This crate knows nothing of brokers or storage backends: it is serde
//! types, plain data and pure functions.

pub mod ids;
pub mod keys;
pub mod messages;
pub mod queues;
pub mod records;
pub mod seed;
pub mod version;
pub mod volume_format;

pub use ids::{CellId, IdError, JobId, RunId};
pub use messages::{DEFAULT_SAMPLER, Job, JobResult, ModelRef, ResultBody, SamplerSpec};
pub use records::{CellFailure, CellFeatures, HandBack, JobRecord, Manifest, SampleFeatures, Uncertainty};
pub use version::{ProtoError, SCHEMA_VERSION};
pub use volume_format::VolumeFormat;
