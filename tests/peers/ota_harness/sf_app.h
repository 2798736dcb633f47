// The application side of the harness: what a Core application registers with
// Spark.function / Spark.variable. The harness has weak defaults (nothing registered);
// an application such as the device agent links strong definitions.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
void sf_app_init(uint8_t *flash, uint32_t size);  // the 2 MB external flash image
// the device id (24 hex digits) and the internal flash image (from 0x08000000)
void sf_app_device(const char *device_id_hex, uint8_t *internal, uint32_t internal_size);
int sf_app_num_functions(void);
const char *sf_app_function_key(int index);
int sf_app_call_function(const char *key, const char *arg);
int sf_app_num_variables(void);
const char *sf_app_variable_key(int index);
int sf_app_variable_type(const char *key);  // 1 bool, 2 int, 4 string, 9 double
const void *sf_app_get_variable(const char *key);
#ifdef __cplusplus
}
#endif
