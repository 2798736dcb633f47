/* Host shim: SystemClass lives in spark_wiring.h here (ours). */
#ifndef SHIM_SPARK_UTILITIES_H
#define SHIM_SPARK_UTILITIES_H
#include "spark_wiring.h"
#endif
