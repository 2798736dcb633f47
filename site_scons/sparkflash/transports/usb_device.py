"""A real Spark Core in DFU mode (1d50:607f) as a control pipe, through pyusb/libusb.

Only adapts: finds the device, claims interface 0, turns libusb errors into our
TransportError tree with what-to-do hints (enter DFU mode, udev rules, libusb).
"""

from __future__ import annotations

import errno
from typing import Any

from sparkflash.errors import DeviceGone, TransportError, TransportTimeout
from sparkflash.protocols.dfuse import ControlRequest, EndpointStalled
from sparkflash.protocols.usb_descriptors import SET_INTERFACE

__all__ = ["BUSY_HINT", "DFU_MODE_HINT", "TRANSIENT", "UDEV_HINT", "UsbPipe", "find_devices", "usb_path"]

DFU_MODE_HINT = ("put the Core in DFU mode: hold MODE, tap RESET, release MODE when the LED blinks yellow "
                 "(or open its serial port at 14400 baud while the application runs)")
UDEV_HINT = ('permission denied: add a udev rule, e.g. SUBSYSTEM=="usb", ATTR{idVendor}=="1d50", '
             'ATTR{idProduct}=="607f", MODE="0666" in /etc/udev/rules.d/50-spark.rules, then '
             "`udevadm control --reload` and replug (or run as root)")
BUSY_HINT = ("the device is busy: another program has its interface claimed (dfu-util, a second sparkflash, "
             "ModemManager); close it and retry")
# Errors a full-speed bus produces now and then (CRC, babble, a NAK storm past the timeout) while the
# device is still there: the same request is sent again. DfuSe requests are idempotent: a repeated
# DNLOAD rewrites the same block at the same address, GETSTATUS/UPLOAD/Set Address change nothing new.
TRANSIENT = frozenset({errno.EIO, errno.EPROTO, errno.ETIMEDOUT, errno.EOVERFLOW, errno.EILSEQ})
ATTEMPTS = 3


_pyusb: Any = None


def _usb() -> Any:
    """pyusb, imported on first use (kept: two import statements per control transfer cost ~10 us)."""
    global _pyusb
    if _pyusb is None:
        try:
            import usb.core  # type: ignore[import-untyped]
            import usb.util  # type: ignore[import-untyped]
        except ImportError as e:  # pragma: no cover - pyusb is a dependency
            raise TransportError("pyusb is not installed: pip install pyusb") from e
        _pyusb = usb
    return _pyusb


def usb_path(dev: Any) -> str:
    """dfu-util's BUS-PORT[.PORT...] path of a device."""
    ports = ".".join(str(p) for p in (getattr(dev, "port_numbers", None) or ()))
    return f"{dev.bus}-{ports}" if ports else f"{dev.bus}-{dev.address}"


def find_devices(vid: int, pid: int) -> list[Any]:
    """Every attached device with this VID:PID ([] if none); TransportError if libusb is missing."""
    usb = _usb()
    try:
        return list(usb.core.find(find_all=True, idVendor=vid, idProduct=pid))
    except usb.core.NoBackendError as e:
        raise TransportError("no libusb backend for pyusb: install libusb-1.0 (apt-get install libusb-1.0-0), "
                             "or use --backend dfu-util") from e


def _translate(e: Exception, name: str, what: str) -> Exception:
    code = getattr(e, "errno", None) or getattr(e, "backend_error_code", None)
    if code == errno.EPIPE:
        return EndpointStalled(f"{name}: {what} stalled")
    if code in (errno.ENODEV, errno.ENOENT, errno.ESHUTDOWN):
        return DeviceGone(f"{name}: the device went away during {what} ({e})")
    if code == errno.ETIMEDOUT:
        return TransportTimeout(f"{name}: no answer to {what}")
    if code == errno.EACCES:
        return TransportError(f"{name}: {what}: {UDEV_HINT}")
    if code == errno.EBUSY:
        return TransportError(f"{name}: {what}: {BUSY_HINT}")
    if code in (errno.EIO, errno.EPROTO):
        return TransportError(f"{name}: {what}: I/O error on the USB link ({e}), {ATTEMPTS} attempts; "
                              "check the cable and hub")
    return TransportError(f"{name}: {what}: {e}")


class UsbPipe:
    def __init__(self, dev: Any, name: str) -> None:
        self.dev, self.name = dev, name
        self.retries = 0  # transient errors retried (tests and benchmarks read it)
        usb = _usb()
        try:
            if dev.is_kernel_driver_active(0):
                dev.detach_kernel_driver(0)
        except (NotImplementedError, usb.core.USBError):
            pass
        try:
            dev.get_active_configuration()
        except usb.core.USBError:
            # unconfigured (bConfigurationValue 0, e.g. after a bus reset without a driver): the Core has one
            try:
                dev.set_configuration(1)
            except usb.core.USBError as e:
                raise _translate(e, name, "setting configuration 1") from e
        try:
            usb.util.claim_interface(dev, 0)
        except usb.core.USBError as e:
            raise _translate(e, name, "claiming interface 0") from e

    @classmethod
    def open(cls, vid: int, pid: int, path: str | None = None) -> list[UsbPipe]:
        """Open the matching devices (all of them when `path` is None)."""
        devs = find_devices(vid, pid)
        if path is not None:
            devs = [d for d in devs if usb_path(d) == path]
        if not devs:
            where = f" at usb:{path}" if path else ""
            raise TransportError(f"no DFU device {vid:04x}:{pid:04x}{where} found; {DFU_MODE_HINT}")
        return [cls(d, f"usb:{usb_path(d)}") for d in devs]

    def control(self, req: ControlRequest, timeout: float) -> bytes:
        """One transfer; a transient bus error (TRANSIENT) is retried, up to ATTEMPTS in all."""
        usb = _usb()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._control(req, timeout)
            except usb.core.USBError as e:
                code = getattr(e, "errno", None) or getattr(e, "backend_error_code", None)
                timed_out = isinstance(e, usb.core.USBTimeoutError) or code == errno.ETIMEDOUT
                if attempt < ATTEMPTS and (timed_out or code in TRANSIENT):
                    self.retries += 1
                    continue
                what = f"request 0x{req.bmRequestType:02x}/{req.bRequest}"
                if timed_out:
                    raise TransportTimeout(f"{self.name}: no answer to {what} in {timeout:.1f} s, "
                                           f"{attempt} attempts") from e
                if code in TRANSIENT and not self._still_there():
                    raise DeviceGone(f"{self.name}: the device went away during {what} ({e})") from e
                raise _translate(e, self.name, what) from e
        raise AssertionError("unreachable")

    def _control(self, req: ControlRequest, timeout: float) -> bytes:
        usb = _usb()
        try:
            if req.bmRequestType == 0x01 and req.bRequest == SET_INTERFACE:
                self.dev.set_interface_altsetting(interface=req.wIndex, alternate_setting=req.wValue)
                return b""
            out = self.dev.ctrl_transfer(req.bmRequestType, req.bRequest, req.wValue, req.wIndex,
                                         req.length if req.is_in else req.data, timeout=int(timeout * 1000))
        except usb.core.USBError as e:
            if getattr(e, "errno", None) == errno.EPIPE or getattr(e, "backend_error_code", None) == errno.EPIPE:
                raise EndpointStalled(f"{self.name}: request 0x{req.bmRequestType:02x}/{req.bRequest} stalled") from e
            raise
        return bytes(out) if req.is_in else b""

    def _still_there(self) -> bool:
        try:
            return any(usb_path(d) == self.name.partition(":")[2]
                       for d in find_devices(self.dev.idVendor, self.dev.idProduct))
        except TransportError:
            return False

    def close(self) -> None:
        usb = _usb()
        try:
            usb.util.release_interface(self.dev, 0)
            usb.util.dispose_resources(self.dev)
        except usb.core.USBError:
            pass
