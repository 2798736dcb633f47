/* External-flash writes with NOR rules (docs/device-agent.md §3): erase only the 4 KiB
 * sectors a file touches, keep the other bytes of partly covered sectors, read back every
 * write, SFA_TRIES tries. The 4 KiB of a kept sector go through the scratch sector 0
 * (sFLASH_SelfTest's sector), not RAM. */
#include <string.h>

#include "sfa_board.h"
#include "sfa_internal.h"

#define CHUNK 64u

/* 1 if flash [address, address + n) holds data (all 0xFF when data is NULL). */
static int flash_is(uint32_t address, const uint8_t *data, uint32_t n)
{
    uint8_t buf[CHUNK];
    while (n) {
        uint32_t k = n < CHUNK ? n : CHUNK;
        sfa_hal_flash_read(buf, address, k);
        for (uint32_t i = 0; i < k; i++) {
            if (buf[i] != (data ? data[i] : 0xffu)) {
                return 0;
            }
        }
        address += k;
        data = data ? data + k : NULL;
        n -= k;
    }
    return 1;
}

int sfa_flash_equal(uint32_t address, const uint8_t *data, uint32_t n) { return flash_is(address, data, n); }

int sfa_flash_all_ff(uint32_t address, uint32_t n) { return flash_is(address, NULL, n); }

/* Program [src, src + n) of flash to dst (skipping erased chunks) and read it back. */
static int copy(uint32_t dst, uint32_t src, uint32_t n)
{
    uint8_t buf[CHUNK];
    while (n) {
        uint32_t k = n < CHUNK ? n : CHUNK;
        sfa_hal_flash_read(buf, src, k);
        if (!flash_is(dst, buf, k)) {  /* blank chunks of the copy are blank in dst already */
            sfa_hal_flash_write(buf, dst, k);
            if (!flash_is(dst, buf, k)) {
                return 0;
            }
        }
        dst += k;
        src += k;
        n -= k;
    }
    return 1;
}

/* Erase sector dst (read back blank) and copy bytes [0, lo) and [hi, 4 KiB) of sector src
 * into it; SFA_TRIES tries. */
static int renew(uint32_t dst, uint32_t src, uint32_t lo, uint32_t hi)
{
    for (int t = 0; t < SFA_TRIES; t++) {
        sfa_hal_flash_erase_sector(dst);
        if (sfa_flash_all_ff(dst, SFA_SECTOR_SIZE) && copy(dst, src, lo) &&
            copy(dst + hi, src + hi, SFA_SECTOR_SIZE - hi)) {
            return 1;
        }
    }
    return 0;
}

/* Erase sector s so that [wlo, whi) is blank and every other byte of s is what it was
 * (kept through the scratch sector when any of them is not blank). */
static int prepare(uint32_t s, uint32_t wlo, uint32_t whi)
{
    if (sfa_flash_all_ff(s, wlo - s) && sfa_flash_all_ff(whi, s + SFA_SECTOR_SIZE - whi)) {
        return renew(s, s, 0, SFA_SECTOR_SIZE);  /* nothing to keep */
    }
    return renew(SFA_SCRATCH_START, s, SFA_SECTOR_SIZE, SFA_SECTOR_SIZE) &&
           renew(s, SFA_SCRATCH_START, wlo - s, whi - s);
}

void sfa_writer_begin(sfa_writer *w, uint32_t address, uint32_t length)
{
    w->lo = address;
    w->hi = address + length;
    w->prepared = address & ~(SFA_SECTOR_SIZE - 1u);
    w->bad_at = 0;
}

int sfa_writer_write(sfa_writer *w, uint32_t address, const uint8_t *data, uint32_t n)
{
    if (n == 0) {
        return SFA_OK;
    }
    if (address < w->lo || address - w->lo > w->hi - w->lo || n > w->hi - address) {
        w->bad_at = address;
        return SFA_ERR_FLASH;  /* never outside the destination */
    }
    uint32_t first = address & ~(SFA_SECTOR_SIZE - 1u), end = address + n;
    for (int t = 0; t < SFA_TRIES; t++) {
        /* the first try erases the sectors the file enters here (blank to the file's end);
         * a retry starts the block over: blank it again, keep everything else */
        for (uint32_t s = first; s < end; s += SFA_SECTOR_SIZE) {
            if (t == 0 && s < w->prepared) {
                continue;
            }
            uint32_t wlo = s > address ? s : address, top = t ? end : w->hi;
            uint32_t whi = s + SFA_SECTOR_SIZE < top ? s + SFA_SECTOR_SIZE : top;
            if (!prepare(s, wlo, whi)) {
                if (t) {
                    break;
                }
                w->bad_at = s;
                return SFA_ERR_FLASH;
            }
            if (t == 0) {
                w->prepared = s + SFA_SECTOR_SIZE;
            }
        }
        sfa_hal_flash_write(data, address, n);
        if (sfa_flash_equal(address, data, n)) {
            return SFA_OK;
        }
    }
    w->bad_at = address;
    return SFA_ERR_FLASH;
}

/* 1 if [a, a + l) lies inside [base, base + size) (no overflow for any a, l). */
static int inside(uint32_t a, uint32_t l, uint32_t base, uint32_t size)
{
    return a >= base && a - base <= size && l <= size - (a - base);
}

const char *sfa_save_range_error(uint32_t address, uint32_t length, int any_area)
{
    if (length == 0) {
        return "empty file";
    }
    if (!inside(address, length, SFA_EXTERNAL_BASE, SFA_EXTERNAL_SIZE)) {
        return "outside external flash 0x000000..0x200000";
    }
    if (address < SFA_SCRATCH_START + SFA_SCRATCH_SIZE) {
        return "sector 0 is the agent's scratch sector";
    }
    if (any_area || (address == SFA_OTA_START && inside(address, length, SFA_OTA_START, SFA_OTA_SIZE)) ||
        inside(address, length, SFA_USER_START, SFA_USER_SIZE)) {
        return NULL;
    }
    return "not the OTA slot 0x060000 or in the user area 0x080000+; send ANY if allowed";
}

int sfa_range_in_flash(uint32_t address, uint32_t length, int *internal)
{
    *internal = inside(address, length, SFA_INTERNAL_BASE, SFA_INTERNAL_SIZE);
    return *internal || inside(address, length, SFA_EXTERNAL_BASE, SFA_EXTERNAL_SIZE);
}

void sfa_read_any(uint8_t *buf, uint32_t address, uint32_t n, int internal)
{
    if (internal) {
        sfa_hal_internal_read(buf, address, n);
    } else {
        sfa_hal_flash_read(buf, address, n);
    }
}
