"""Sans-I/O protocol state machines: bytes and events in, bytes and events out; no clock, no port."""
