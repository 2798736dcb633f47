/* CRC-32 (IEEE 802.3, as zlib/binascii.crc32), so the device checks a data region with the
 * same checksum the manifest records for it. */
#ifndef CRC32_H
#define CRC32_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

uint32_t crc32_update(uint32_t crc, const void *data, size_t length);

#ifdef __cplusplus
}
#endif

#endif
