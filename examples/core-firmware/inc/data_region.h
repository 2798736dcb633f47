/* A data region in external flash that the firmware checks at boot: a 16-byte header
 * (magic "SPKD", payload length, CRC-32 of the payload, reserved) then the payload. It sits
 * at the start of the board's "user" area (boards/spark-core.yaml), where a release
 * manifest can place it as a data region. */
#ifndef DATA_REGION_H
#define DATA_REGION_H

#include <stdint.h>

#define DATA_REGION_ADDRESS 0x80000u
#define DATA_REGION_MAGIC 0x444B5053u /* "SPKD" little-endian */
#define DATA_REGION_MAX 0x180000u

struct data_region_header {
    uint32_t magic;
    uint32_t length;
    uint32_t crc32;
    uint32_t reserved;
};

enum data_status { DATA_MISSING, DATA_BAD_LENGTH, DATA_BAD_CRC, DATA_OK };

data_status data_region_check(uint32_t address, uint32_t *length);

void setup();
void loop();

#endif
