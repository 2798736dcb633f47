/* The agent's cloud function (docs/device-agent.md §6): `addr len` (hex) in, the digest
 * text out, for a Spark.function + Spark.variable pair. Plain C; the binding registers it.
 * Two passes over the range instead of a buffer of sector CRCs: no big stack frame. */
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"

typedef struct {
    char *out;
    size_t size, len;
} text;

static void add(text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->size) {
        n = t->size - t->len - 1;  /* never reached: the sizes below are computed to fit */
    }
    memcpy(t->out + t->len, s, n);
    t->len += n;
    t->out[t->len] = '\0';
}

static void add_str(text *t, const char *s) { add(t, s, strlen(s)); }

static void add_dec(text *t, uint32_t v)
{
    char d[10];
    int i = 10;
    do {
        d[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v && i > 0);
    add(t, d + i, (size_t)(10 - i));
}

static size_t dec_len(uint32_t v)
{
    size_t n = 1;
    while (v >= 10u) {
        v /= 10u;
        n++;
    }
    return n;
}

/* CRC-32 of [a, a + n) (and SHA-256 into s unless NULL). */
static uint32_t scan(uint32_t a, uint32_t n, int internal, sfa_sha256 *s)
{
    uint8_t buf[64];
    uint32_t crc = 0;
    while (n) {
        uint32_t k = n < sizeof buf ? n : (uint32_t)sizeof buf;
        sfa_read_any(buf, a, k, internal);
        crc = sfa_crc32_update(crc, buf, k);
        if (s) {
            sfa_sha256_update(s, buf, k);
        }
        a += k;
        n -= k;
    }
    return crc;
}

int sfa_cloud_sum(const char *arg, char *out, size_t out_size)
{
    text t = {out, out_size < SFA_CLOUD_VAR_MAX + 1 ? out_size : SFA_CLOUD_VAR_MAX + 1, 0};
    uint32_t a, l;
    int internal;
    const char *sp = strchr(arg, ' ');
    if (out_size < 200) {
        return SFA_ERR_SYNTAX;
    }
    out[0] = '\0';
    if (strlen(arg) >= 64 || !sp || !sfa_parse_hex(arg, (uint32_t)(sp - arg), &a) ||
        !sfa_parse_hex(sp + 1, (uint32_t)strlen(sp + 1), &l)) {
        add_str(&t, "ERR 1 arg: <addr> <len>, 1-8 hex digits each");
        return SFA_ERR_SYNTAX;
    }
    if (!sfa_range_in_flash(a, l, &internal)) {
        add_str(&t, "ERR 2 not inside one flash memory");
        return SFA_ERR_RANGE;
    }
    sfa_sha256 s;
    uint8_t sha[32];
    char hex[64];
    sfa_sha256_init(&s);
    uint32_t crc = scan(a, l, internal, &s);
    sfa_sha256_final(&s, sha);
    add_str(&t, "SUM ");
    sfa_hex32(hex, crc);
    add(&t, hex, 8);
    add_str(&t, " ");
    sfa_hex(hex, sha, 32);
    add(&t, hex, 64);
    sfa_record rec;
    add_str(&t, "\nREC ");
    if (sfa_record_read(&rec) == SFA_OK) {
        add_str(&t, rec.name);
        add_str(&t, " ");
        add_str(&t, rec.version);
        add_str(&t, " ");
        sfa_hex(hex, rec.sha256, 32);
        add(&t, hex, 64);
    } else {
        add_str(&t, "-");
    }
    /* Last, as many sector CRCs as fit: "SUMS <pieces> <shown> crc..." */
    uint32_t pieces = 0;
    if (l) {
        uint32_t last = (uint32_t)(((uint64_t)a + l - 1u) & ~(uint64_t)(SFA_SECTOR_SIZE - 1u));
        pieces = (last - (a & ~(SFA_SECTOR_SIZE - 1u))) / SFA_SECTOR_SIZE + 1u;
    }
    size_t room = t.size - t.len - 1 - 6 - dec_len(pieces) - 1;
    uint32_t shown = pieces;
    while (shown && dec_len(shown) + 9u * shown > room) {
        shown--;
    }
    add_str(&t, "\nSUMS ");
    add_dec(&t, pieces);
    add_str(&t, " ");
    add_dec(&t, shown);
    for (uint32_t i = 0, p = a; i < shown; i++) {
        uint32_t n = SFA_SECTOR_SIZE - (p & (SFA_SECTOR_SIZE - 1u));
        n = n < a + l - p ? n : a + l - p;
        add_str(&t, " ");
        sfa_hex32(hex, scan(p, n, internal, NULL));
        add(&t, hex, 8);
        p += n;
    }
    return SFA_OK;
}
