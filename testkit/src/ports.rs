//! A free loopback port, for a process or server a test starts and must tell its port in advance.
//!
//! Why here: binding `127.0.0.1:0` and reading back the port the kernel chose was written out in several test files
//! and in the benchmarks. The listener is dropped before the port is returned, so the port is free but not reserved:
//! use it at once. A test that can hand over a bound listener (an in-process server) should use [`crate::app`]
//! instead, which never lets go of its port.

/// A loopback port that nothing listens on right now (the kernel's choice for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_port_is_free_to_bind() {
        let port = super::free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
