//! Stage one of argument handling: the clap structs, exactly as typed. `config.rs` turns
//! these (plus environment and config file) into a validated configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const MAIN_AFTER: &str = "\
Examples:
  oneseal key init                                   # create the local master key
  oneseal encrypt request.json -o request.enc.json   # encrypt a One API request body
  oneseal decrypt callback.json                      # decrypt an inbound callback to stdout
  oneseal decrypt - --pretty < callback.json         # '-' (or no INPUT) reads stdin
  oneseal gateway --print-config > oneseal.toml      # every setting, commented

Each command explains itself: oneseal <command> --help.

Key providers: with --kms-key-id (or ONESEAL_KMS_KEY_ID) data keys come from AWS KMS, which
the messaging platform can also use; without it, from the local key file (offline, for
development and tests: the platform cannot decrypt those).

Exit codes: 0 ok, 2 usage/config, 3 bad input, 4 cryptographic failure, 5 key service failure.";

/// `--version`: the package version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ONESEAL_COMMIT"),
    ")"
);

/// oneseal: encrypts WhatsApp message content (text, captions, template parameters, media)
/// before it reaches Clickatell's One API, and decrypts callbacks and downloaded media, with
/// AWS KMS data keys (or a local key for development).
#[derive(Debug, Parser)]
#[command(
    name = "oneseal",
    version = VERSION,
    about = "Client-side encryption of WhatsApp message content for Clickatell's One API: \
             encrypt requests, decrypt callbacks and media, answer WhatsApp Flows",
    after_help = MAIN_AFTER,
    propagate_version = true,
    arg_required_else_help = true,
    subcommand_required = true
)]
pub struct Cli {
    /// Config file (TOML) with defaults for any option below (or ONESEAL_CONFIG; default: ./oneseal.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More diagnostics on stderr (-v info, -vv debug). Never prints keys or plaintext.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Colour in diagnostics: auto (only on a terminal, and not with NO_COLOR set), always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encrypt the sensitive leaves of a request body or callback (see `oneseal encrypt --help`).
    #[command(after_help = ENCRYPT_AFTER)]
    Encrypt(EncryptArgs),
    /// Decrypt a callback or an encrypted request body, removing each encryptionKey used.
    #[command(after_help = DECRYPT_AFTER)]
    Decrypt(DecryptArgs),
    /// Encrypt or decrypt media files (uploads, broadcasts, downloaded media).
    #[command(subcommand)]
    Media(MediaCommand),
    /// WhatsApp Flows endpoint crypto: keys, requests, responses, signatures.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Manage the local master key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run the HTTP gateway: apps send plain One API traffic, the platform sees ciphertext.
    #[command(after_help = GATEWAY_AFTER)]
    Gateway(GatewayArgs),
    /// Print shell completions (bash, zsh, fish, powershell) on stdout.
    #[command(after_help = COMPLETIONS_AFTER)]
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish", "powershell"])]
        shell: String,
    },
    /// Print the man page oneseal(1) (roff) on stdout, or write it and one page per
    /// subcommand (oneseal-encrypt(1), …) into a directory.
    #[command(after_help = MAN_AFTER)]
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

const MAN_AFTER: &str = "\
Install:
  mkdir -p ~/.local/share/man/man1 && oneseal man --out-dir ~/.local/share/man/man1
  man oneseal";

const GATEWAY_AFTER: &str = "\
Examples:
  oneseal gateway --print-config > oneseal.toml            # every setting, commented
  oneseal gateway --config /etc/oneseal/oneseal.toml
  oneseal gateway --config oneseal.toml --check-config     # validate and exit (2 on error)
  oneseal gateway --config oneseal.toml --check-config --check-kms   # and try the KMS key
  oneseal gateway --config oneseal.toml --log-format json
  oneseal gateway replay --config oneseal.toml             # re-queue dead-letter callbacks

The [gateway] table of the config file sets the listeners (app 127.0.0.1:8080, public
127.0.0.1:8081, admin 127.0.0.1:9090), the upstream, the spool directory and the callback
relay; [gateway.clevertap] turns on the CleverTap bridge, [gateway.flows] the WhatsApp Flows
endpoint and [gateway.queue] a shared queue for the callbacks. `oneseal gateway
--print-config` prints every key with its default and what it does. SIGTERM or Ctrl-C: stop
accepting, finish in-flight work (at most 30 s), exit 0.";

/// `oneseal gateway`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    /// Validate the configuration and exit (0 if valid, 2 with one line naming the key).
    #[arg(long)]
    pub check_config: bool,

    /// With --check-config: also make one real GenerateDataKey and Decrypt with the configured
    /// key and encryption context (a wrong key id or a missing permission shows now, exit 5).
    #[arg(long, requires = "check_config")]
    pub check_kms: bool,

    /// Print a complete, commented oneseal.toml (every key, its default, what it does) and exit.
    #[arg(long, conflicts_with = "check_config")]
    pub print_config: bool,

    /// Log format on stderr: text or json.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Move the dead-letter callbacks back to the spool, to be delivered again.
    Replay,
}

const COMPLETIONS_AFTER: &str = "\
Examples (each creates the directory it writes to):
  mkdir -p ~/.local/share/bash-completion/completions && oneseal completions bash > ~/.local/share/bash-completion/completions/oneseal
  mkdir -p ~/.zfunc && oneseal completions zsh > ~/.zfunc/_oneseal    # with fpath+=(~/.zfunc) before compinit
  mkdir -p ~/.config/fish/completions && oneseal completions fish > ~/.config/fish/completions/oneseal.fish";

const ENCRYPT_AFTER: &str = "\
Examples:
  oneseal encrypt request.json -o request.enc.json
  oneseal encrypt request.json --kms-key-id alias/whatsapp --encryption-context tenant=acme
  oneseal encrypt request.json --suite cbc --field customData.note
  oneseal encrypt < request.json > request.enc.json
  oneseal encrypt batch.ndjson -o batch.enc.ndjson     # one payload per line, both cores

Each message gets `encryptionKey` (One API) or the document gets one (legacy). Inline media
(`content` with a content type) is encrypted as bytes and `sha256Hash` is set to the SHA-256
of the plaintext file. Only the policy leaves change; routing fields stay readable.
Documents over 2 MiB are streamed message by message in bounded memory (same output).";

const DECRYPT_AFTER: &str = "\
Examples:
  oneseal decrypt callback.json
  oneseal decrypt request.enc.json -o request.json
  oneseal decrypt callback.json --keep-going      # leave undecryptable items as they are
  oneseal decrypt old-callback.json --suite cbc   # a deployment that uses the cbc format
  oneseal decrypt callbacks.ndjson -o plain.ndjson --keep-going   # an archive, line by line

Decrypt uses the configured suite (gcm unless --suite, ONESEAL_SUITE or `suite` in the config
file says cbc): a gcm deployment never runs unauthenticated cbc on what it receives. --suite
auto (gcm, then cbc) is for migrations only.

Local blobs (made without --kms-key-id) are opened with the local key; all others with KMS
(credentials and region from the standard AWS chain). --kms-key-id on decrypt restricts
Decrypt to that key. Documents over 2 MiB are streamed message by message in bounded
memory (same output).";

/// Options shared by every command that reaches a key provider.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// AWS KMS key (id, ARN, alias/NAME; or ONESEAL_KMS_KEY_ID). Selects KMS for encryption; on decrypt, restricts to it.
    #[arg(long, value_name = "ARN")]
    pub kms_key_id: Option<String>,

    /// Local master key file (or ONESEAL_LOCAL_KEY; default: <data dir>/oneseal/local.key).
    #[arg(long, value_name = "PATH")]
    pub local_key: Option<PathBuf>,

    /// KMS encryption context pair, repeatable. Must be the same on decrypt.
    #[arg(long = "encryption-context", value_name = "K=V")]
    pub encryption_context: Vec<String>,

    /// AWS region for KMS (else AWS_REGION / profile).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// AWS profile (else AWS_PROFILE).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// KMS endpoint, e.g. a local KMS for testing (else AWS_ENDPOINT_URL_KMS).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Seconds one KMS call may take in total, retries included (more than 0, at most 3600; default 20).
    #[arg(long, value_name = "SECONDS")]
    pub kms_timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Input JSON file; '-' or nothing reads stdin.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// Output file, written atomically; '-' or nothing writes stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// Suite for new ciphertext (or ONESEAL_SUITE): gcm (authenticated, default) or cbc (One API sample format).
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// A new data key for every message (default: one key for up to 1000 messages / 5 min).
    #[arg(long)]
    pub fresh_key_per_message: bool,

    /// Extra leaf to encrypt, relative to each message/item, repeatable (e.g. customData.note).
    #[arg(long = "field", value_name = "PATH")]
    pub fields: Vec<String>,

    /// Payload family: auto (detect), one, legacy.
    #[arg(long, value_name = "API")]
    pub api: Option<String>,

    /// Refuse any member that is not a policy leaf, a documented routing member or a
    /// `passthrough` path of the config file (instead of sending it as it is).
    #[arg(long)]
    pub strict: bool,

    /// Pretty-print the JSON output.
    #[arg(long, conflicts_with = "ndjson")]
    pub pretty: bool,

    /// One payload per line (automatic for *.ndjson and *.jsonl inputs).
    #[arg(long)]
    pub ndjson: bool,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Input JSON file; '-' or nothing reads stdin.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// Output file, written atomically; '-' or nothing writes stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// Suite to decrypt (or ONESEAL_SUITE): gcm (default), cbc, or auto (gcm, then cbc; for migrations only).
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Leave items that fail as they are, report each on stderr, and still write the output.
    #[arg(long)]
    pub keep_going: bool,

    /// Extra leaf that was encrypted, repeatable (must match what encrypt used).
    #[arg(long = "field", value_name = "PATH")]
    pub fields: Vec<String>,

    /// Payload family: auto (detect), one, legacy.
    #[arg(long, value_name = "API")]
    pub api: Option<String>,

    /// Pretty-print the JSON output.
    #[arg(long, conflicts_with = "ndjson")]
    pub pretty: bool,

    /// One payload per line (automatic for *.ndjson and *.jsonl inputs).
    #[arg(long)]
    pub ndjson: bool,
}

#[derive(Debug, Subcommand)]
#[command(arg_required_else_help = true, subcommand_required = true)]
pub enum KeyCommand {
    /// Create the local master key (mode 0600). Never overwrites an existing key.
    #[command(
        after_help = "Examples:\n  oneseal key init                          # at the default place (<data dir>/oneseal/local.key)\n  oneseal key init --local-key ./dev.key    # elsewhere (its directory must exist)\n\nThe local key is for development, tests and offline use: the messaging platform cannot\ndecrypt what it encrypts. Back it up if you keep anything encrypted with it."
    )]
    Init {
        /// Where to create it (or ONESEAL_LOCAL_KEY; default: <data dir>/oneseal/local.key).
        #[arg(long, value_name = "PATH")]
        local_key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
#[command(arg_required_else_help = true, subcommand_required = true)]
pub enum MediaCommand {
    /// Encrypt a file for upload (POST /v1/media) and print the upload parameters as JSON.
    #[command(after_help = MEDIA_ENCRYPT_AFTER)]
    Encrypt(MediaEncryptArgs),
    /// Decrypt a downloaded media file; nothing is left at -o unless it verifies.
    #[command(after_help = MEDIA_DECRYPT_AFTER)]
    Decrypt(MediaDecryptArgs),
}

const MEDIA_ENCRYPT_AFTER: &str = "\
Examples:
  oneseal media encrypt statement.pdf -o statement.pdf.enc --to 2799900001 --kms-key-id alias/wa > params.json
  oneseal media encrypt promo.mp4 -o promo.enc --broadcast --kms-key-id alias/wa > params.json
  oneseal media encrypt - --file-name scan.pdf -o scan.enc --to 2799900001 < scan.pdf > params.json

The upload parameters are printed as JSON on stdout (on stderr with -o -). Then upload:
  curl -X POST -H \"Authorization: $ONE_API_KEY\" -H 'Content-Type: application/pdf' \\
       --data-binary @statement.pdf.enc \"$(jq -r .uploadUrl < params.json)\"";

const MEDIA_DECRYPT_AFTER: &str = "\
Examples:
  oneseal media decrypt encrypted.jpg -o photo.jpg --callback moMedia.json
  oneseal media decrypt file.enc -o file.pdf --encryption-key \"$KEY_B64\" --sha256 \"$SHA256_HEX\"
  oneseal media decrypt file.enc -o - --callback moMedia.json | less

The file is checked (length, hash format) before any KMS call, decrypted into a temp file,
and released only once the GCM tag and the SHA-256 verify. cbc media (--suite cbc) is
unauthenticated and needs the expected SHA-256 (--sha256 or the callback's sha256Hash).";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("recipient").required(true).multiple(false)))]
pub struct MediaEncryptArgs {
    /// The plaintext file; '-' reads stdin (then give --file-name).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Where to write the encrypted file (atomically); '-' writes stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    /// Recipient MSISDN the upload is for (or --broadcast).
    #[arg(long, value_name = "MSISDN", group = "recipient")]
    pub to: Option<String>,

    /// Upload for broadcasting to many recipients (no personal data in the file!).
    #[arg(long, group = "recipient")]
    pub broadcast: bool,

    /// File name to report (default: the input's file name).
    #[arg(long, value_name = "NAME")]
    pub file_name: Option<String>,

    /// Content type (default: guessed from the extension).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// Suite (or ONESEAL_SUITE): gcm (default) or cbc.
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,

    /// Base URL of the media endpoint.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://platform.clickatell.com/v1/media"
    )]
    pub upload_base_url: String,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct MediaDecryptArgs {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Where to write the plaintext (only after it verifies); '-' writes stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    /// The encryptionKey (base64) from the callback or the upload.
    #[arg(long, value_name = "B64", required_unless_present = "callback")]
    pub encryption_key: Option<String>,

    /// Expected SHA-256 (hex) of the plaintext.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// A moMedia callback to take the key and hash from.
    #[arg(long, value_name = "CALLBACK.json", conflicts_with = "encryption_key")]
    pub callback: Option<PathBuf>,

    /// Which file of the callback (default 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub file_index: usize,

    /// Suite to decrypt (or ONESEAL_SUITE): gcm (default), cbc (needs the SHA-256), or auto (migrations only).
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Subcommand)]
#[command(arg_required_else_help = true, subcommand_required = true)]
pub enum FlowsCommand {
    /// Generate a 2048-bit RSA business key pair (PKCS#8 private, SPKI public, PEM).
    #[command(
        after_help = "Examples:\n  oneseal flows keygen --private-key-out flows.key --public-key-out flows.pub --print-upload-body\n  ONESEAL_FLOWS_PASSPHRASE=... oneseal flows keygen --private-key-out k.pem --public-key-out p.pem --encrypt"
    )]
    Keygen {
        /// Private key destination (created with mode 0600; never overwritten).
        #[arg(long, value_name = "PATH")]
        private_key_out: PathBuf,
        /// Public key destination.
        #[arg(long, value_name = "PATH")]
        public_key_out: PathBuf,
        /// Encrypt the private key with a passphrase (from ONESEAL_FLOWS_PASSPHRASE, else a prompt).
        #[arg(long)]
        encrypt: bool,
        /// Print the JSON body for POST /whatsapp-business-encryption.
        #[arg(long)]
        print_upload_body: bool,
    },
    /// Decrypt a Flows data-exchange request body and print the flow JSON.
    #[command(
        after_help = "Examples:\n  oneseal flows decrypt-request body.json --private-key flows.key\n\nAn undecryptable request exits 4; the endpoint should answer HTTP 421."
    )]
    DecryptRequest {
        /// The request body; '-' or nothing reads stdin.
        #[arg(value_name = "REQUEST")]
        input: Option<PathBuf>,
        /// The business private key (PKCS#8 or PKCS#1 PEM; encrypted PKCS#8 needs ONESEAL_FLOWS_PASSPHRASE).
        #[arg(long, value_name = "PATH")]
        private_key: PathBuf,
        /// Output file; default stdout.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Encrypt a response JSON for the request it answers; prints the base64 body.
    #[command(
        after_help = "Examples:\n  oneseal flows encrypt-response response.json --private-key flows.key --request body.json"
    )]
    EncryptResponse {
        /// The response JSON; '-' or nothing reads stdin.
        #[arg(value_name = "RESPONSE")]
        input: Option<PathBuf>,
        /// The business private key.
        #[arg(long, value_name = "PATH")]
        private_key: PathBuf,
        /// The encrypted request this answers (its key and IV are reused, IV flipped).
        #[arg(long, value_name = "REQUEST")]
        request: PathBuf,
        /// Output file; default stdout.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Verify the x-hub-signature-256 header of a request body (HMAC-SHA256 with the app secret).
    #[command(
        after_help = "Examples:\n  ONESEAL_FLOWS_APP_SECRET=... oneseal flows verify-signature body.json --signature 'sha256=ab12...'\n\nA bad signature exits 4; the endpoint should answer HTTP 432."
    )]
    VerifySignature {
        /// The raw request body; '-' or nothing reads stdin.
        #[arg(value_name = "BODY")]
        input: Option<PathBuf>,
        /// The header value, `sha256=<hex>`.
        #[arg(long, value_name = "HEADER")]
        signature: String,
    },
}
