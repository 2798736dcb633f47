/* CRC-32 (zlib/IEEE) and SHA-256, incremental, no tables in RAM. */
#ifndef SFA_DIGEST_H
#define SFA_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* crc = sfa_crc32_update(0, data, n) ...; the value is final after every call (zlib.crc32). */
uint32_t sfa_crc32_update(uint32_t crc, const uint8_t *data, size_t n);

/* CRC-16/XMODEM (poly 0x1021, init 0), as YMODEM blocks carry it. */
uint16_t sfa_crc16(const uint8_t *data, size_t n);

typedef struct {
    uint32_t h[8];
    uint32_t bytes; /* hashed so far (the agent hashes at most a 2 MiB flash) */
    uint32_t fill;  /* of block (a word: short loads on Thumb) */
    uint8_t block[64];
} sfa_sha256;

void sfa_sha256_init(sfa_sha256 *s);
void sfa_sha256_update(sfa_sha256 *s, const uint8_t *data, size_t n);
void sfa_sha256_final(sfa_sha256 *s, uint8_t out[32]);

/* Lower-case hex of n bytes into out (2n chars, no NUL). */
void sfa_hex(char *out, const uint8_t *data, size_t n);
/* The lower-case digit of 0-15. */
char sfa_hex_digit(unsigned d);

#ifdef __cplusplus
}
#endif

#endif
