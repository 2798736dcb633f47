/* CRC-32, CRC-16/XMODEM and SHA-256 (FIPS 180-4), written for flash size on a small MCU:
 * the CRCs bit by bit (no tables), no heap, one 64-byte block of state. */
#include "sfa_digest.h"

#include <string.h>

/* Bit by bit (reflected, poly 0xEDB88320): no table; SUM's time goes to SHA-256 anyway. */
uint32_t sfa_crc32_update(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        for (int i = 0; i < 8; i++) {
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* In the top half of a word: the shifted-out bit is the sign, no masking to 16 bits. */
uint16_t sfa_crc16(const uint8_t *data, size_t n)
{
    uint32_t crc = 0;
    while (n--) {
        crc ^= (uint32_t)*data++ << 24;
        for (int i = 0; i < 8; i++) {
            crc = (crc << 1) ^ (0x10210000u & (0u - (crc >> 31)));
        }
    }
    return (uint16_t)(crc >> 16);
}

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

/* A big-endian word as it lies in memory <-> its value (one REV on the Cortex-M3). */
static uint32_t be32(uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return v;
#else
    return __builtin_bswap32(v);
#endif
}

/* One array x[24] shifted down a word per round, for code size on Thumb-2: x[0..7] the
 * working variables h, g, ..., a (the oldest first), x[8..23] the message schedule's next
 * 16 words. After the shift, x[7] takes the new a, x[3] (d moved there) becomes e, and
 * x[23] the schedule's next word (past round 48 unused). */
static void compress(sfa_sha256 *s)
{
    uint32_t x[24];
    for (unsigned j = 0; j < 8; j++) {
        x[j] = s->h[7 - j];
    }
    for (unsigned j = 0; j < 16; j++) {
        uint32_t v;
        memcpy(&v, s->block + 4 * j, 4);
        x[8 + j] = be32(v);
    }
    for (unsigned i = 0; i < 64; i++) {
        uint32_t a = x[7], e = x[3], w0 = x[8], w1 = x[9], w14 = x[22];
        uint32_t t1 = x[0] + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & x[2]) ^ (~e & x[1])) + K[i] + w0;
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & x[6]) ^ (a & x[5]) ^ (x[6] & x[5]));
        uint32_t next = w0 + (ror(w1, 7) ^ ror(w1, 18) ^ (w1 >> 3)) + x[17] +
                        (ror(w14, 17) ^ ror(w14, 19) ^ (w14 >> 10));
        memmove(x, x + 1, sizeof x - sizeof x[0]);
        x[7] = t1 + t2;
        x[3] += t1;
        x[23] = next;
    }
    for (unsigned j = 0; j < 8; j++) {
        s->h[7 - j] += x[j];
    }
}

void sfa_sha256_init(sfa_sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, iv, sizeof iv);
    s->bytes = 0;
    s->fill = 0;
}

void sfa_sha256_update(sfa_sha256 *s, const uint8_t *data, size_t n)
{
    s->bytes += (uint32_t)n;
    while (n--) {
        s->block[s->fill++] = *data++;
        if (s->fill == 64u) {
            compress(s);
            s->fill = 0;
        }
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    v = be32(v);
    memcpy(p, &v, 4);
}

/* Padding: 0x80, zeros to 56 mod 64, the message length in bits (64-bit big-endian). */
void sfa_sha256_final(sfa_sha256 *s, uint8_t out[32])
{
    static const uint8_t one = 0x80u, zero = 0;
    uint8_t bits[8];
    put_be32(bits, s->bytes >> 29);
    put_be32(bits + 4, s->bytes << 3);
    sfa_sha256_update(s, &one, 1);
    while (s->fill != 56u) {
        sfa_sha256_update(s, &zero, 1);
    }
    sfa_sha256_update(s, bits, 8);
    for (unsigned i = 0; i < 8; i++) {
        put_be32(out + 4 * i, s->h[i]);
    }
}

char sfa_hex_digit(unsigned d) { return (char)(d < 10u ? '0' + d : 'a' - 10u + d); }

void sfa_hex(char *out, const uint8_t *data, size_t n)
{
    while (n--) {
        *out++ = sfa_hex_digit(*data >> 4);
        *out++ = sfa_hex_digit(*data++ & 15u);
    }
}
