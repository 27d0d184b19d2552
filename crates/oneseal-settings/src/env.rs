//! Every environment variable oneseal reads itself, in one place (AWS's own are read by the
//! AWS SDK; the gateway's secrets are read from the variables its config file names).

/// The config file (`--config`).
pub const CONFIG: &str = "ONESEAL_CONFIG";
/// The KMS key for new data keys (`--kms-key-id`, `kms_key_id`).
pub const KMS_KEY_ID: &str = "ONESEAL_KMS_KEY_ID";
/// The local master key file (`--local-key`, `local_key`).
pub const LOCAL_KEY: &str = "ONESEAL_LOCAL_KEY";
/// The suite, for encryption and decryption alike (`--suite`, `suite`).
pub const SUITE: &str = "ONESEAL_SUITE";
/// The passphrase of an encrypted Flows private key (`oneseal flows …`).
pub const FLOWS_PASSPHRASE: &str = "ONESEAL_FLOWS_PASSPHRASE";
/// The Meta app secret (`oneseal flows verify-signature`).
pub const FLOWS_APP_SECRET: &str = "ONESEAL_FLOWS_APP_SECRET";

/// Reads environment variables: the process's own, or a table in tests.
pub trait Env {
    /// The value of `name`, if set and valid UTF-8.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process;

impl Env for Process {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}
