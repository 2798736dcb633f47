/* RAM-backed HAL for fuzzing: every access is bounds-checked and a NOR program that would
 * set a bit (write without erase) is fine, as on the chip; anything out of range aborts. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_hal.h"
#include "sfa_agent.h"
#include "sfa_board.h"

static uint8_t ext[SFA_EXTERNAL_SIZE];
static uint8_t dirty[SFA_EXTERNAL_SIZE / SFA_SECTOR_SIZE];
static uint32_t now;
static int ready;
static volatile uint8_t sink;

void fuzz_hal_reset(void)
{
    if (!ready) {
        memset(ext, 0xff, sizeof ext);
        ready = 1;
    }
    for (uint32_t s = 0; s < sizeof dirty; s++) {
        if (dirty[s]) {
            memset(ext + s * SFA_SECTOR_SIZE, 0xff, SFA_SECTOR_SIZE);
            dirty[s] = 0;
        }
    }
    now = 0;
}

void fuzz_hal_advance(uint32_t ms) { now += ms; }

static void check(uint32_t address, uint32_t n)
{
    if (address >= SFA_EXTERNAL_SIZE || n > SFA_EXTERNAL_SIZE - address) {
        abort();
    }
}

void sfa_hal_flash_erase_sector(uint32_t address)
{
    check(address, 1);
    address &= ~(SFA_SECTOR_SIZE - 1u);
    memset(ext + address, 0xff, SFA_SECTOR_SIZE);
    dirty[address / SFA_SECTOR_SIZE] = 1;
}

void sfa_hal_flash_write(const uint8_t *data, uint32_t address, uint32_t n)
{
    check(address, n);
    for (uint32_t i = 0; i < n; i++) {
        ext[address + i] &= data[i];
        dirty[(address + i) / SFA_SECTOR_SIZE] = 1;
    }
}

void sfa_hal_flash_read(uint8_t *data, uint32_t address, uint32_t n)
{
    check(address, n);
    memcpy(data, ext + address, n);
}

void sfa_hal_internal_read(uint8_t *data, uint32_t address, uint32_t n)
{
    if (address < SFA_INTERNAL_BASE || address - SFA_INTERNAL_BASE > SFA_INTERNAL_SIZE ||
        n > SFA_INTERNAL_SIZE - (address - SFA_INTERNAL_BASE)) {
        abort();
    }
    memset(data, (int)(address & 0xffu), n);
}

int sfa_hal_serial_read(uint8_t *buf, size_t max)
{
    (void)buf;
    (void)max;
    return 0;
}

void sfa_hal_serial_write(const uint8_t *data, size_t n)
{
    if (n && !data) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        sink ^= data[i];  /* ASan sees every byte read */
    }
}

uint32_t sfa_hal_millis(void) { return now; }

void sfa_hal_device_id(char out[24]) { memcpy(out, "0123456789abcdef01234567", 24); }

void sfa_hal_install_firmware(uint32_t size)
{
    if (size > SFA_FIRMWARE_MAX) {
        abort();
    }
    sfa_agent_begin();
}
