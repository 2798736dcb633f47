/* Host shim: the Wi-Fi layer's flash-update flags (ours). */
#ifndef SHIM_SPARK_WLAN_H
#define SHIM_SPARK_WLAN_H
#include "spark_wiring.h"
#endif
