//! `plantwatch check-config`: load the configuration as `serve` would, and
//! print a short summary of it, or the first problem (exit code 64).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use crate::cli::CheckConfigArgs;
use crate::config::{self, Config, DeviceConfig, NetworkConfig};
use crate::CommandError;

/// Checks the files of `args` with the `PLANTWATCH__*` variables of `env` over them.
pub fn run(args: &CheckConfigArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let text = summary(&config, &args.config, &config::env_overrides(env));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| CommandError::Failed(format!("stdout: {e}")))
}

/// What was loaded, in a few lines.
pub fn summary(config: &Config, files: &[PathBuf], env: &[String]) -> String {
    let list = |items: Vec<String>| if items.is_empty() { "(none)".to_string() } else { items.join(", ") };
    let mut s = String::from("configuration is valid\n");
    let files = list(files.iter().map(|f| f.display().to_string()).collect());
    let _ = writeln!(s, "  files        built-in defaults, then {files}");
    let _ = writeln!(s, "  environment  {}", list(env.to_vec()));
    let _ = writeln!(s, "  listen       {}", config.server.listen);
    let _ = writeln!(s, "  auth         {}", if config.auth.enabled { "on" } else { "OFF: the API accepts anyone" });
    let _ = writeln!(s, "  store        {}", config.store.path.display());
    let log_file = config.log.file.as_ref().map(|f| format!(", file {}", f.display())).unwrap_or_default();
    let _ = writeln!(s, "  log          {} {}{log_file}", config.log.level, config.log.format);
    let _ = writeln!(s, "  networks     {}", config.networks.len());
    for n in &config.networks {
        let _ = writeln!(s, "    {:<10} {}", n.name, network_line(n));
    }
    let _ = writeln!(s, "  devices      {} configured", config.device_count());
    if let Some(v) = config.testing.poison_value {
        let _ = writeln!(s, "  testing      poison_value = {v}: a write of it panics a device actor (never on a site)");
    }
    s
}

fn network_line(n: &NetworkConfig) -> String {
    let mut parts = vec![format!("bind {}", n.bind)];
    let routed = n.devices.iter().filter(|d| d.route.is_some()).count();
    let devices = match (n.devices.len(), routed) {
        (1, 0) => "1 device".to_string(),
        (count, 0) => format!("{count} devices"),
        (count, routed) => format!("{count} devices ({routed} routed)"),
    };
    parts.push(devices);
    parts.push(format!("poll {}", config::format_duration(n.poll)));
    if n.discover {
        parts.push("discover".into());
    }
    if n.cov || n.devices.iter().any(|d: &DeviceConfig| d.cov == Some(true)) {
        parts.push("cov".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_what_was_loaded() {
        let text = "[server]\nlisten = \"0.0.0.0:8080\"\n[[network]]\nname = \"bldg-a\"\npoll = \"30s\"\ndiscover = true\n\
                    [[network.device]]\ninstance = 1\naddress = \"10.0.0.1:47808\"\nroute = { network = 5, mac = \"0a\" }\n\
                    [[network.device]]\ninstance = 2\naddress = \"10.0.0.2:47808\"\n";
        let files = vec![PathBuf::from("site.toml")];
        let env: HashMap<String, String> = [
            ("PLANTWATCH__AUTH__ENABLED".to_string(), "false".to_string()),
            ("PLANTWATCH__AUTH__ALLOW_DISABLED_ON_NETWORK".to_string(), "true".to_string()),
        ]
        .into();
        let config =
            config::load_texts(&[(files[0].clone(), text.to_string())], &env).unwrap_or_else(|e| panic!("{e}"));
        let s = summary(&config, &files, &config::env_overrides(&env));
        assert!(s.starts_with("configuration is valid\n"), "{s}");
        for line in [
            "  files        built-in defaults, then site.toml\n",
            "  environment  PLANTWATCH__AUTH__ALLOW_DISABLED_ON_NETWORK, PLANTWATCH__AUTH__ENABLED\n",
            "  listen       0.0.0.0:8080\n",
            "  auth         OFF",
            "  store        data/plantwatch.db\n",
            "  networks     1\n",
            "    bldg-a     bind 0.0.0.0:47808, 2 devices (1 routed), poll 30s, discover\n",
            "  log          info text\n",
            "  devices      2 configured\n",
        ] {
            assert!(s.contains(line), "{s} lacks {line:?}");
        }
    }
}
