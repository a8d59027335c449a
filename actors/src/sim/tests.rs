//! Tests over real UDP sockets on loopback (ports from the OS).
