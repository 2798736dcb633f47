/* The release record (docs/device-agent.md §5): an append log of 128-byte slots in the
 * release_record sector; the last valid slot wins, a torn write leaves the previous one
 * (the next write goes to the next blank slot). */
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"

#define SLOT SFA_REC_SLOT
#define SLOTS (SFA_RECORD_SIZE / SLOT)
#define BODY 104u /* magic 4, lengths 2, reserved 2, name 32, version 32, sha256 32 */
#define CRC32_RESIDUE 0x2144df1cu /* zlib's CRC-32 of any data followed by its CRC (little-endian) */

static const uint8_t MAGIC[4] = {'S', 'F', 'R', '1'};

int sfa_record_name_ok(const char *s, uint32_t n)
{
    if (n < 1 || n > SFA_NAME_MAX) {
        return 0;
    }
    while (n--) {
        char c = *s++, lower = (char)(c | 0x20);
        /* letters, digits, '_', and '+' '-' '.' (0x2B, 0x2D, 0x2E: not the ',' between) */
        if (!((lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              ((unsigned char)(c - '+') < 4u && c != ','))) {
            return 0;
        }
    }
    return 1;
}

static void encode(const char *name, const char *version, const uint8_t sha256[32], uint8_t slot[SLOT])
{
    uint32_t nl = (uint32_t)strlen(name), vl = (uint32_t)strlen(version);
    memset(slot, 0, BODY);
    memset(slot + BODY, 0xff, SLOT - BODY);
    memcpy(slot, MAGIC, 4);
    slot[4] = (uint8_t)nl;
    slot[5] = (uint8_t)vl;
    memcpy(slot + SFA_REC_NAME, name, nl);
    memcpy(slot + SFA_REC_VERSION, version, vl);
    memcpy(slot + SFA_REC_SHA, sha256, 32);
    uint32_t crc = sfa_crc32_update(0, slot, BODY);
    for (unsigned i = 0; i < 4; i++) {
        slot[BODY + i] = (uint8_t)(crc >> (8 * i));  /* little-endian */
    }
}

static int valid(const uint8_t slot[SLOT])
{
    /* the CRC-32 over the body and its own four bytes (little-endian) is CRC-32's residue */
    return memcmp(slot, MAGIC, 4) == 0 && sfa_crc32_update(0, slot, BODY + 4u) == CRC32_RESIDUE &&
           sfa_record_name_ok((const char *)slot + SFA_REC_NAME, slot[4]) &&
           sfa_record_name_ok((const char *)slot + SFA_REC_VERSION, slot[5]);
}

int sfa_record_read(uint8_t slot[SLOT])
{
    uint8_t buf[SLOT];
    int found = 0;
    for (uint32_t at = SFA_RECORD_START; at < SFA_RECORD_START + SFA_RECORD_SIZE; at += SLOT) {
        sfa_hal_flash_read(buf, at, SLOT);
        if (valid(buf)) {  /* every slot: a torn one may sit before a good one */
            memcpy(slot, buf, SLOT);
            found = 1;
        }
    }
    return found ? SFA_OK : 1;
}

int sfa_record_write(const char *name, const char *version, const uint8_t sha256[32])
{
    uint8_t slot[SLOT];
    encode(name, version, sha256, slot);
    for (int t = 0; t < SFA_TRIES; t++) {
        uint32_t at = SFA_RECORD_START;
        while (at < SFA_RECORD_START + SFA_RECORD_SIZE && !sfa_flash_all_ff(at, SLOT)) {
            at += SLOT;  /* the first blank slot */
        }
        if (at == SFA_RECORD_START + SFA_RECORD_SIZE) { /* full: start the log over */
            sfa_hal_flash_erase_sector(SFA_RECORD_START);
            at = SFA_RECORD_START;
            if (!sfa_flash_all_ff(at, SLOT)) {
                continue;
            }
        }
        sfa_hal_flash_write(slot, at, SLOT);
        if (sfa_flash_equal(at, slot, SLOT)) {
            return SFA_OK;
        }
    }
    return SFA_ERR_FLASH;
}
