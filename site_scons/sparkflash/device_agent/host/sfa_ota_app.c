/* Host binding of the agent's cloud side, for the OTA harness (tests/peers/ota_harness):
 * the real core-communication-lib built for the host calls the sf_app_* hooks (sf_app.h)
 * where a Core calls what Spark.function / Spark.variable registered, and this file answers
 * them with the agent, as core/sfa_core.cpp does on a Core. Flash is the harness's mapped
 * images (NOR rules: erase to 0xFF, program 1 -> 0 only). No serial here: the pty binding
 * is host/sfa_host.c. `sfcaps` says "save" when built with the flasher_additions library
 * (SF_DIALECT_CCL_SAVE, which has SaveBegin). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sf_app.h"
#include "sfa_agent.h"
#include "sfa_board.h"

static uint8_t *ext, *in;
static uint32_t ext_size, in_size;
static char id[24];

#if defined(SF_DIALECT_CCL_SAVE)
static const char caps[] = "agent save";
#else
static const char caps[] = "agent"; /* never empty: the library would send a bare payload marker */
#endif

/* ---- the agent's HAL over the harness's images ---- */
int sfa_hal_serial_read(uint8_t *buf, size_t max)
{
    (void)buf;
    (void)max;
    return 0;
}

void sfa_hal_serial_write(const uint8_t *data, size_t n)
{
    (void)data;
    (void)n;
}

uint32_t sfa_hal_millis(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void sfa_hal_device_id(char out[24]) { memcpy(out, id, 24); }

void sfa_hal_flash_erase_sector(uint32_t address)
{
    address &= ~(SFA_SECTOR_SIZE - 1u);
    if (address < ext_size) {
        memset(ext + address, 0xff, SFA_SECTOR_SIZE);
    }
}

void sfa_hal_flash_write(const uint8_t *data, uint32_t address, uint32_t n)
{
    for (uint32_t i = 0; i < n && address < ext_size && i < ext_size - address; i++) {
        ext[address + i] &= data[i];
    }
}

void sfa_hal_flash_read(uint8_t *data, uint32_t address, uint32_t n)
{
    memset(data, 0xff, n);
    if (address < ext_size && n <= ext_size - address) {
        memcpy(data, ext + address, n);
    }
}

void sfa_hal_internal_read(uint8_t *data, uint32_t address, uint32_t n)
{
    uint32_t off = address - SFA_INTERNAL_BASE;
    memset(data, 0xff, n);
    if (address >= SFA_INTERNAL_BASE && off < in_size && n <= in_size - off) {
        memcpy(data, in + off, n);
    }
}

void sfa_hal_install_firmware(uint32_t size)
{
    (void)size;
    abort();  /* only the serial `f` installs; it has no port here */
}

/* ---- the application hooks: one function, two string variables ---- */
void sf_app_init(uint8_t *flash, uint32_t size)
{
    ext = flash;
    ext_size = size;
    sfa_agent_begin();
}

void sf_app_device(const char *device_id_hex, uint8_t *internal, uint32_t internal_size)
{
    memcpy(id, device_id_hex, 24);
    in = internal;
    in_size = internal_size;
}

int sf_app_num_functions(void) { return 1; }

const char *sf_app_function_key(int index) { return index == 0 ? SFA_CLOUD_FUNCTION : ""; }

int sf_app_call_function(const char *key, const char *arg)
{
    return strcmp(key, SFA_CLOUD_FUNCTION) == 0 ? sfa_cloud_call(arg) : -1;
}

int sf_app_num_variables(void) { return 2; }

const char *sf_app_variable_key(int index) { return index == 0 ? SFA_CLOUD_RESULT : index == 1 ? SFA_CLOUD_CAPS : ""; }

int sf_app_variable_type(const char *key)
{
    (void)key;
    return 4; /* STRING */
}

const void *sf_app_get_variable(const char *key)
{
    return strcmp(key, SFA_CLOUD_RESULT) == 0 ? sfa_cloud_text() : caps;
}
