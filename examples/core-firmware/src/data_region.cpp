// Reads the data region header and payload from external flash and checks its CRC-32.
#include "data_region.h"

#include "crc32.h"
#include "sst25vf_spi.h"

data_status data_region_check(uint32_t address, uint32_t *length)
{
    data_region_header header;
    sFLASH_ReadBuffer(&header, address, sizeof header);
    if (header.magic != DATA_REGION_MAGIC) {
        return DATA_MISSING;
    }
    if (header.length > DATA_REGION_MAX - sizeof header) {
        return DATA_BAD_LENGTH;
    }
    uint8_t chunk[64];
    uint32_t crc = 0;
    for (uint32_t done = 0; done < header.length;) {
        uint32_t n = header.length - done < sizeof chunk ? header.length - done : sizeof chunk;
        sFLASH_ReadBuffer(chunk, address + sizeof header + done, n);
        crc = crc32_update(crc, chunk, n);
        done += n;
    }
    *length = header.length;
    return crc == header.crc32 ? DATA_OK : DATA_BAD_CRC;
}
