/* Agent internals shared by its source files (not part of the binding's API). */
#ifndef SFA_INTERNAL_H
#define SFA_INTERNAL_H

#include <stdint.h>

#include "sfa_agent.h"

#define SFA_TRIES 3

/* NOR-rule writer for one destination [lo, hi) of external flash: the first write into a
 * sector erases it and puts back the bytes outside the destination (through the scratch
 * sector); every write is read back; a failed write is retried SFA_TRIES times. */
typedef struct {
    uint32_t lo, hi;
    uint32_t prepared;  /* sectors below this address have been erased for this file */
    uint32_t bad_at;    /* address of the last failure */
} sfa_writer;

void sfa_writer_begin(sfa_writer *w, uint32_t address, uint32_t length);
int sfa_writer_write(sfa_writer *w, uint32_t address, const uint8_t *data, uint32_t n);

/* Helpers over external flash in small chunks. */
int sfa_flash_equal(uint32_t address, const uint8_t *data, uint32_t n);
int sfa_flash_all_ff(uint32_t address, uint32_t n);

/* Where SAVE may write; NULL if allowed, else a static reason. */
const char *sfa_save_range_error(uint32_t address, uint32_t length, int any_area);
/* 1 if [address, address + length) lies inside one flash memory; *internal says which. */
int sfa_range_in_flash(uint32_t address, uint32_t length, int *internal);
void sfa_read_any(uint8_t *buf, uint32_t address, uint32_t n, int internal);

/* The release record (docs/device-agent.md §5), kept as its 128-byte slot: name and version
 * NUL-padded at SFA_REC_NAME and SFA_REC_VERSION, the SHA-256 at SFA_REC_SHA. */
#define SFA_REC_SLOT 128u
#define SFA_REC_NAME 8u
#define SFA_REC_VERSION 40u
#define SFA_REC_SHA 72u
/* The latest valid slot into slot: SFA_OK, or 1 when the sector holds none. */
int sfa_record_read(uint8_t slot[SFA_REC_SLOT]);
/* Append a record (name and version checked by sfa_record_name_ok): SFA_OK or SFA_ERR_FLASH. */
int sfa_record_write(const char *name, const char *version, const uint8_t sha256[32]);
/* 1-32 of [A-Za-z0-9._+-]. */
int sfa_record_name_ok(const char *s, uint32_t n);

#endif
