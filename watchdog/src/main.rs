//! `ofc-watchdog`: serves one function inside its image (see the crate doc).

use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let config = match ofc_watchdog::WatchdogConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ofc-watchdog: {error}");
            return ExitCode::FAILURE;
        }
    };
    // All interfaces, as of-watchdog (in a container network the gateway is another host), unless the local
    // runtime, which shares the host's network, asks for loopback only.
    let address = std::env::var("bind_address").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let listener = match std::net::TcpListener::bind((address.as_str(), config.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("ofc-watchdog: port {} cannot be listened on: {error}", config.port);
            return ExitCode::FAILURE;
        }
    };
    let shutdown = Arc::new(ofc_watchdog::Shutdown::default());
    let drain_bound = ofc_watchdog::drain_bound(&config);
    let signals = listener.try_clone().and_then(|clone| ofc_watchdog::stop_on_signals(&shutdown, clone, drain_bound));
    if let Err(error) = signals {
        eprintln!("ofc-watchdog: stop signals cannot be handled: {error}");
        return ExitCode::FAILURE;
    }
    eprintln!("ofc-watchdog: listening on port {} ({:?})", config.port, config.mode);
    ofc_watchdog::serve(&listener, &config, &shutdown);
    // Closing the listener refuses new connections while the accepted ones finish.
    drop(listener);
    if shutdown.drain(drain_bound) {
        eprintln!("ofc-watchdog: drained; exiting");
    } else {
        eprintln!("ofc-watchdog: requests still running after {drain_bound:?} were ended; exiting");
    }
    ExitCode::SUCCESS
}
