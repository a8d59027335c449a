//! `plantwatch simulate`: wired up once the simulator lands.

use crate::cli::SimulateArgs;
use crate::CommandError;

pub fn run(_args: SimulateArgs) -> Result<(), CommandError> {
    Err(CommandError::Failed("not yet".into()))
}
