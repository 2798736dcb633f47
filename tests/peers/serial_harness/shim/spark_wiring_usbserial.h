/* Host shim: USB CDC serial = the device end of a pty (ours). */
#ifndef SHIM_SPARK_WIRING_USBSERIAL_H
#define SHIM_SPARK_WIRING_USBSERIAL_H
#include "spark_wiring.h"

class USBSerial : public Stream {
 public:
  void begin(long) {}
  int available(void) override;
  int read(void) override;
  size_t write(uint8_t c) override;
};
extern USBSerial Serial;
#endif
