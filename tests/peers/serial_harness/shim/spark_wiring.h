/* Host shim of the Spark wiring layer: just what the serial receivers use (ours, not Spark's). */
#ifndef SHIM_SPARK_WIRING_H
#define SHIM_SPARK_WIRING_H

#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "hw_config.h"

#ifdef __cplusplus
namespace spark {}

/* Arduino-style Stream: the receivers call available/read/write/print/println. */
class Stream {
 public:
  virtual ~Stream() {}
  virtual int available(void) = 0;
  virtual int read(void) = 0;
  virtual size_t write(uint8_t c) = 0;
  size_t print(const char *s);
  size_t print(int32_t n);
  size_t println(const char *s);
};

class RGBClass {
 public:
  void control(bool) {}
  void color(uint32_t) {}
};
extern RGBClass RGB;
#define RGB_COLOR_MAGENTA 0xFF00FF

class SystemClass {
 public:
  static void serialSaveFile(Stream *serialObj, uint32_t sFlashAddress);
  static void serialFirmwareUpdate(Stream *serialObj);
};
extern SystemClass System;

extern "C" {
#endif

void delay(unsigned long ms);
unsigned long millis(void);
extern volatile uint32_t TimingFlashUpdateTimeout;
extern volatile uint8_t SPARK_FLASH_UPDATE;

#ifdef __cplusplus
}
#endif
#endif
