/* The release record (docs/device-agent.md §5): an append log of 128-byte slots in the
 * release_record sector; the last valid slot wins, a torn write leaves the previous one
 * (the next write goes to the next blank slot). */
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"

#define SLOT 128u
#define SLOTS (SFA_RECORD_SIZE / SLOT)
#define BODY 104u /* magic 4, lengths 2, reserved 2, name 32, version 32, sha256 32 */
#define CRC32_RESIDUE 0x2144df1cu /* zlib's CRC-32 of any data followed by its CRC (little-endian) */

static const uint8_t MAGIC[4] = {'S', 'F', 'R', '1'};
static const char PUNCT[4] = {'.', '_', '+', '-'}; /* and letters, digits: a name's characters */

int sfa_record_name_ok(const char *s, uint32_t n)
{
    if (n < 1 || n > SFA_NAME_MAX) {
        return 0;
    }
    while (n--) {
        char c = *s++, lower = (char)(c | 0x20);
        if (!((lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || memchr(PUNCT, c, 4))) {
            return 0;
        }
    }
    return 1;
}

static void encode(const sfa_record *rec, uint8_t slot[SLOT])
{
    uint32_t nl = (uint32_t)strlen(rec->name), vl = (uint32_t)strlen(rec->version);
    memset(slot, 0, BODY);
    memset(slot + BODY, 0xff, SLOT - BODY);
    memcpy(slot, MAGIC, 4);
    slot[4] = (uint8_t)nl;
    slot[5] = (uint8_t)vl;
    memcpy(slot + 8, rec->name, nl);
    memcpy(slot + 40, rec->version, vl);
    memcpy(slot + 72, rec->sha256, 32);
    uint32_t crc = sfa_crc32_update(0, slot, BODY);
    for (unsigned i = 0; i < 4; i++) {
        slot[BODY + i] = (uint8_t)(crc >> (8 * i));  /* little-endian */
    }
}

static int decode(const uint8_t slot[SLOT], sfa_record *rec)
{
    uint32_t nl = slot[4], vl = slot[5];
    /* the CRC-32 over the body and its own four bytes (little-endian) is CRC-32's residue */
    if (memcmp(slot, MAGIC, 4) != 0 || sfa_crc32_update(0, slot, BODY + 4u) != CRC32_RESIDUE ||
        !sfa_record_name_ok((const char *)slot + 8, nl) || !sfa_record_name_ok((const char *)slot + 40, vl)) {
        return 0;
    }
    memcpy(rec->name, slot + 8, nl);
    rec->name[nl] = '\0';
    memcpy(rec->version, slot + 40, vl);
    rec->version[vl] = '\0';
    memcpy(rec->sha256, slot + 72, 32);
    return 1;
}

int sfa_record_read(sfa_record *rec)
{
    uint8_t slot[SLOT];
    int found = 0;
    for (uint32_t at = SFA_RECORD_START; at < SFA_RECORD_START + SFA_RECORD_SIZE; at += SLOT) {
        sfa_hal_flash_read(slot, at, SLOT);
        found |= decode(slot, rec); /* every slot: a torn one may sit before a good one */
    }
    return found ? SFA_OK : 1;
}

int sfa_record_write(const sfa_record *rec)
{
    uint8_t slot[SLOT];
    encode(rec, slot);
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
