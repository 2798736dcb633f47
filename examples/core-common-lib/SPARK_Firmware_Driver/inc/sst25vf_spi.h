/* SST25VF016B external flash on SPI2 (PB13 SCK, PB14 MISO, PB15 MOSI, PB9 CS), read only. */
#ifndef SST25VF_SPI_H
#define SST25VF_SPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define sFLASH_CMD_READ 0x03u
#define sFLASH_SIZE 0x200000u

void sFLASH_Init(void);
void sFLASH_ReadBuffer(void *buffer, uint32_t address, size_t length);

#ifdef __cplusplus
}
#endif

#endif
