/* The C half of the Spark Core binding: external flash through core-common-lib's sFLASH_*,
 * the firmware install through FLASH_End (sets the OTA flag; the bootloader copies the
 * slot), the device id and the millisecond tick. core/sfa_core_unit.c includes it, so the
 * agent calls core-common-lib directly; the C++ half (USB serial, the cloud function) is
 * core/sfa_core.cpp. */
#include <string.h>

#include "hw_config.h"
#include "sst25vf_spi.h"

#include "sfa_agent.h"
#include "sfa_digest.h"

uint32_t sfa_hal_millis(void) { return GetSystem1MsTick(); }  /* what millis() returns */

void sfa_hal_device_id(char out[24])
{
    sfa_hex(out, (const uint8_t *)0x1FFFF7E8u, 12);  /* the STM32's 96-bit unique id (ID1) */
}

void sfa_hal_flash_erase_sector(uint32_t address) { sFLASH_EraseSector(address); }

void sfa_hal_flash_write(const uint8_t *data, uint32_t address, uint32_t n) { sFLASH_WriteBuffer(data, address, n); }

void sfa_hal_flash_read(uint8_t *data, uint32_t address, uint32_t n) { sFLASH_ReadBuffer(data, address, n); }

void sfa_hal_internal_read(uint8_t *data, uint32_t address, uint32_t n)
{
    memcpy(data, (const void *)address, n);  /* internal flash is memory-mapped */
}

void sfa_hal_install_firmware(uint32_t size)
{
    (void)size;
    FLASH_End();  /* OTA flag, backup register, USB off, reset: the bootloader installs the slot */
}
