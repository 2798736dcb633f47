"""Thin adapters to real ports (pyserial, pyusb, sockets) that translate backend errors."""
