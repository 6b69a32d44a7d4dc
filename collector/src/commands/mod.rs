//! The subcommands of `safeguard`, each from parsed arguments to an exit
//! status.

mod check;
mod generate;
mod learn;
mod run;
mod status;
mod stop;
mod unpin;

use std::process::ExitCode;

pub use check::check;
pub use generate::generate;
pub use learn::learn;
pub use run::run;
pub use status::status;
pub use stop::stop;
pub use unpin::unpin;

use crate::{
    cli::ConfigArgs,
    config::{self, Config},
};

/// Exit status for a configuration error (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// The configuration the arguments name, or every error in it on stderr,
/// one per line, and [`EXIT_CONFIG`].
fn load_config(args: &ConfigArgs) -> Result<Config, ExitCode> {
    config::load(&config::Sources {
        file: args.config.clone(),
        overrides: args.overrides(),
        environment: true,
    })
    .map_err(|errors| {
        for e in &errors {
            eprintln!("safeguard: configuration error: {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}
