/* The agent's cloud function (docs/device-agent.md §6): `addr len` (hex) in, the digest
 * text out, for a Spark.function + Spark.variable pair. Plain C; the binding registers it. */
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"

typedef struct {
    char *out;
    size_t size, len;
    int full;
} text;

static void add(text *t, const char *s, size_t n)
{
    if (t->full || t->len + n + 1 > t->size) {
        t->full = 1;
        return;
    }
    memcpy(t->out + t->len, s, n);
    t->len += n;
    t->out[t->len] = '\0';
}

static void add_str(text *t, const char *s) { add(t, s, strlen(s)); }

static void add_hex32(text *t, uint32_t v)
{
    char h[8];
    sfa_hex32(h, v);
    add(t, h, 8);
}

static int parse_args(const char *arg, uint32_t *a, uint32_t *l)
{
    uint32_t v[2] = {0, 0};
    const char *p = arg;
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        while (*p) {
            char c = *p;
            uint32_t d;
            if (c >= '0' && c <= '9') {
                d = (uint32_t)(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                d = (uint32_t)(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                d = (uint32_t)(c - 'A' + 10);
            } else {
                break;
            }
            if (++digits > 8) {
                return 0;
            }
            v[k] = (v[k] << 4) | d;
            p++;
        }
        if (!digits || (k == 0 && *p++ != ' ')) {
            return 0;
        }
    }
    if (*p != '\0') {
        return 0;
    }
    *a = v[0];
    *l = v[1];
    return 1;
}

int sfa_cloud_sum(const char *arg, char *out, size_t out_size)
{
    text t = {out, out_size < SFA_CLOUD_VAR_MAX + 1 ? out_size : SFA_CLOUD_VAR_MAX + 1, 0, 0};
    uint32_t a, l;
    int internal;
    if (out_size == 0) {
        return SFA_ERR_SYNTAX;
    }
    out[0] = '\0';
    if (strlen(arg) >= 64 || !parse_args(arg, &a, &l)) {
        add_str(&t, "ERR 1 arg: <addr> <len>, 1-8 hex digits each");
        return SFA_ERR_SYNTAX;
    }
    if (!sfa_range_in_flash(a, l, &internal)) {
        add_str(&t, "ERR 2 not inside one flash memory");
        return SFA_ERR_RANGE;
    }
    /* One pass: the whole range's CRC-32 and SHA-256, and one CRC-32 per 4 KiB piece. */
    uint8_t buf[64];
    uint32_t crcs_len = 0, pieces = 0, crc = 0, piece = 0;
    char crcs[SFA_CLOUD_VAR_MAX];
    sfa_sha256 s;
    sfa_sha256_init(&s);
    for (uint32_t addr = a, left = l; left;) {
        uint32_t k = left < sizeof buf ? left : (uint32_t)sizeof buf;
        uint32_t to_boundary = SFA_SECTOR_SIZE - (addr & (SFA_SECTOR_SIZE - 1u));
        k = k < to_boundary ? k : to_boundary;
        sfa_read_any(buf, addr, k, internal);
        crc = sfa_crc32_update(crc, buf, k);
        piece = sfa_crc32_update(piece, buf, k);
        sfa_sha256_update(&s, buf, k);
        addr += k;
        left -= k;
        if (left == 0 || (addr & (SFA_SECTOR_SIZE - 1u)) == 0) {
            if (crcs_len + 9 <= sizeof crcs) {
                crcs[crcs_len++] = ' ';
                sfa_hex32(crcs + crcs_len, piece);
                crcs_len += 8;
            }
            pieces++;
            piece = 0;
        }
    }
    uint8_t sha[32];
    char hex[64];
    sfa_sha256_final(&s, sha);
    sfa_hex(hex, sha, 32);
    add_str(&t, "SUM ");
    add_hex32(&t, crc);
    add_str(&t, " ");
    add(&t, hex, 64);
    sfa_record rec;
    add_str(&t, "\nREC ");
    if (sfa_record_read(&rec) == SFA_OK) {
        sfa_hex(hex, rec.sha256, 32);
        add_str(&t, rec.name);
        add_str(&t, " ");
        add_str(&t, rec.version);
        add_str(&t, " ");
        add(&t, hex, 64);
    } else {
        add_str(&t, "-");
    }
    /* Last, as many sector CRCs as fit: "SUMS <n> <shown> crc..." */
    char num[24];
    size_t room = t.size - t.len - 1;
    uint32_t shown = pieces;
    for (;;) {
        char *p = num + sizeof num;
        *--p = '\0';
        uint32_t v = shown;
        do { *--p = (char)('0' + v % 10u); v /= 10u; } while (v);
        *--p = ' ';
        v = pieces;
        do { *--p = (char)('0' + v % 10u); v /= 10u; } while (v);
        size_t head = 6 + strlen(p); /* "\nSUMS " */
        if (head + 9u * shown <= room || shown == 0) {
            add_str(&t, "\nSUMS ");
            add_str(&t, p);
            if (head + 9u * shown <= room) {
                add(&t, crcs, 9u * shown);
            }
            break;
        }
        shown--;
    }
    return SFA_OK;
}
