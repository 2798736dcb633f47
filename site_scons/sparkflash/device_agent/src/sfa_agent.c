/* The agent's serial side: stock keys `i` and `f`, line commands ID, SUM, SUMS, SAVE, REC
 * (docs/device-agent.md §2), one YMODEM receiver. A state machine fed bytes: nothing here
 * waits; SUM/SUMS hash at most one 1 KiB chunk per poll. */
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"
#include "sfa_ymodem.h"

#define JOB_CHUNK 1024u
#define INSTALL_DELAY_MS 100u

enum mode { M_LINE, M_DISCARD, M_YMODEM, M_SUM, M_SUMS, M_INSTALL };
enum ym_kind { K_SAVE, K_FIRMWARE };

static const char FW_PROMPT[] = "Waiting for the binary file to be sent ... (press 'a' to abort)\r\n";
static const char FW_TOO_BIG[] = "The file size is higher than the allowed space memory!\r\n";
static const char FW_FAILED[] = "Failed to receive the file!\r\n";
static const char NUMBERS[] = "address and length: 1-8 hex digits";
static const char SHA_TEXT[] = "sha256: 64 hex digits";
static const char TOO_LONG[] = "line longer than 160 characters";

/* One buffer, three uses that never overlap in time: the cloud text at its start (kept
 * while idle; the first CLOUD_GUARD bytes are never reused), the YMODEM frame / SUM read
 * buffer after the guard, and the command line at its end (line mode only). */
#define CLOUD_GUARD 16u
#define SHARED_SIZE (CLOUD_GUARD + SFA_YM_FRAME_MAX)
static uint8_t shared[SHARED_SIZE];
static char *const line_buf = (char *)shared + SHARED_SIZE - (SFA_MAX_LINE + 2);
static const char BUSY[] = "ERR 4 busy";
/* A cloud command longer than one call's argument (REC SET) is gathered here between
 * calls ("+" arguments): after the cloud text, before the serial line. */
#define CLOUD_PENDING (SFA_CLOUD_VAR_MAX + 2u)
typedef char sfa_pending_fits[(CLOUD_PENDING + SFA_MAX_LINE <= SHARED_SIZE - (SFA_MAX_LINE + 2)) ? 1 : -1];

static struct {
    uint8_t mode;
    uint8_t kind;
    uint8_t job_internal;
    uint8_t reopened;  /* the port was closed while a SAVE waited for its sender */
    uint8_t pending;   /* bytes of a cloud command gathered so far */
    uint16_t len;
    uint32_t dest, length;
    uint32_t job_addr, job_left, job_piece_crc, job_crc;
    uint32_t install_at;
    sfa_writer w;
    sfa_sha256 sha;
    sfa_ym ym;
} A;

/* ---- output: the serial port, or the cloud text while sfa_cloud_call runs ---- */
static char *sink;
static size_t sink_len, sink_cap;

static void out(const void *data, size_t n)
{
    if (!sink) {
        sfa_hal_serial_write((const uint8_t *)data, n);
        return;
    }
    if (n > sink_cap - 1u - sink_len) {
        n = sink_cap - 1u - sink_len;  /* the cloud text is cut, never overrun */
    }
    memcpy(sink + sink_len, data, n);
    sink_len += n;
    sink[sink_len] = '\0';
}

static void put(const char *s) { out(s, strlen(s)); }

/* v in `base` (10 or 16), at least `width` digits (lower-case hex). */
static void put_num(uint32_t v, uint32_t base, int width)
{
    char d[10];
    int i = 10;
    do {
        d[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while ((v || 10 - i < width) && i > 0);
    out(d + i, (size_t)(10 - i));
}

static void put_hex32(uint32_t v) { put_num(v, 16, 8); }
static void put_hex(uint32_t v) { put_num(v, 16, 1); }  /* SAVE's OK carries the length so */
static void put_dec(uint32_t v) { put_num(v, 10, 1); }

static void put_sha(const uint8_t sha[32])
{
    char hex[64];
    sfa_hex(hex, sha, 32);
    out(hex, 64);
}

/* "ERR <code> " (the text and CR LF follow) */
static void err_head(int code)
{
    put("ERR ");
    put_dec((uint32_t)code);
    put(" ");
}

static void reply_err(int code, const char *text)
{
    err_head(code);
    put(text);
    put("\r\n");
}

/* the 24 hex digits of the device id */
static void put_id(void)
{
    char id[24];
    sfa_hal_device_id(id);
    out(id, 24);
}

/* ---- YMODEM glue ---- */
static void ym_send(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    out(data, n);
}

static int ym_header(void *ctx, const char *name, uint32_t size, int has_size)
{
    (void)ctx;
    (void)name;
    if (!has_size) {
        return SFA_YM_ERR_SIZE;
    }
    if (A.kind == K_FIRMWARE) {
        if (size > SFA_FIRMWARE_MAX) {
            return SFA_YM_ERR_TOO_BIG;
        }
        if (size == 0) {
            return SFA_YM_ERR_SIZE;  /* the bootloader would install the slot's stale bytes */
        }
        A.length = size;
    } else if (size != A.length) {
        return SFA_YM_ERR_SIZE;
    }
    sfa_writer_begin(&A.w, A.dest, A.length);
    return SFA_YM_OK;
}

static int ym_data(void *ctx, uint32_t offset, const uint8_t *data, uint32_t n)
{
    (void)ctx;
    return sfa_writer_write(&A.w, A.dest + offset, data, n) == SFA_OK ? SFA_YM_OK : SFA_YM_ERR_FLASH;
}

/* The buffer is about to be reused: the cloud text now reads as busy, not as stale bytes. */
static void cloud_text_lost(void)
{
    memcpy(shared, BUSY, sizeof BUSY);
    A.pending = 0;
}

char *sfa_cloud_text(void) { return (char *)shared; }

static void start_ymodem(int kind, uint32_t dest, uint32_t length)
{
    cloud_text_lost();
    A.kind = (uint8_t)kind;
    A.dest = dest;
    A.length = length;
    A.mode = M_YMODEM;
    A.reopened = 0;
    A.ym.ctx = NULL;
    A.ym.send = ym_send;
    A.ym.on_header = ym_header;
    A.ym.on_data = ym_data;
    A.ym.frame = shared + CLOUD_GUARD;
    sfa_ym_start(&A.ym, sfa_hal_millis());
}

static void ymodem_failed(void)
{
    sfa_ym *ym = &A.ym;
    if (A.kind == K_FIRMWARE && ym->result != SFA_YM_ERR_SIZE) {
        put(ym->result == SFA_YM_ERR_TOO_BIG ? FW_TOO_BIG : FW_FAILED);
        return;
    }
    int code = ym->result == SFA_YM_ERR_FLASH ? SFA_ERR_FLASH
             : ym->result == SFA_YM_ERR_SIZE ? SFA_ERR_SIZE : SFA_ERR_TRANSFER;
    err_head(code);
    if (ym->result == SFA_YM_ERR_SIZE) {
        put("header size missing or not SAVE's length");
    } else if (ym->result == SFA_YM_ERR_FLASH) {
        put("flash write failed at 0x");
        put_hex32(A.w.bad_at);
    } else {
        put("YMODEM: ");
        put(ym->why);
        put(" at byte ");
        put_dec(ym->why_at);
    }
    put("\r\n");
}

static void ymodem_check(void)
{
    sfa_ym *ym = &A.ym;
    if (ym->state == SFA_YM_FAILED) {
        A.mode = M_LINE;
        ymodem_failed();
    } else if (ym->state == SFA_YM_DONE) {
        A.mode = M_LINE;
        if (!ym->have_file) {
            if (A.kind == K_FIRMWARE) {
                put(FW_FAILED);
            } else {
                reply_err(SFA_ERR_SIZE, "no file in the batch");
            }
        } else if (A.kind == K_SAVE) {
            put("OK ");
            put_hex(A.length);
            put("\r\n");
        } else {
            put("\r\nDownloaded file successfully!\r\nName: ");
            put(ym->name);
            put("\r\nSize: ");
            put_dec(A.length);
            put(" bytes\r\nRestarting system to apply firmware update...\r\n");
            A.install_at = sfa_hal_millis() + INSTALL_DELAY_MS;
            A.mode = M_INSTALL;
        }
    }
}

/* ---- SUM / SUMS jobs ---- */
static uint32_t pieces_of(uint32_t a, uint32_t l);

static void start_job(int mode, uint32_t address, uint32_t length, int internal)
{
    if (!sink) {
        cloud_text_lost();
    }
    A.mode = (uint8_t)mode;
    A.job_addr = address;
    A.job_left = length;
    A.job_internal = (uint8_t)internal;
    A.job_crc = A.job_piece_crc = 0;
    sfa_sha256_init(&A.sha);
    if (mode == M_SUMS) {
        put("OK ");
        put_dec(pieces_of(address, length));
    }
}

/* Over the cloud the job runs to its end inside the call, reading through a small buffer
 * (the shared one holds the cloud text). */
static void job_step(void)
{
    uint8_t small[64];
    uint8_t *buf = sink ? small : shared + CLOUD_GUARD;
    uint32_t n = sink ? sizeof small : JOB_CHUNK;
    n = A.job_left < n ? A.job_left : n;
    if (A.mode == M_SUMS) {
        uint32_t to_boundary = SFA_SECTOR_SIZE - (A.job_addr & (SFA_SECTOR_SIZE - 1u));
        n = n < to_boundary ? n : to_boundary;
    }
    if (n) {
        sfa_read_any(buf, A.job_addr, n, A.job_internal);
        if (A.mode == M_SUM) {
            A.job_crc = sfa_crc32_update(A.job_crc, buf, n);
            sfa_sha256_update(&A.sha, buf, n);
        } else {
            A.job_piece_crc = sfa_crc32_update(A.job_piece_crc, buf, n);
        }
        A.job_addr += n;
        A.job_left -= n;
    }
    if (A.mode == M_SUMS && n && (A.job_left == 0 || (A.job_addr & (SFA_SECTOR_SIZE - 1u)) == 0)) {
        put(" ");
        put_hex32(A.job_piece_crc);
        A.job_piece_crc = 0;
    }
    if (A.job_left == 0) {
        if (A.mode == M_SUM) {
            uint8_t sha[32];
            sfa_sha256_final(&A.sha, sha);
            put("OK ");
            put_hex32(A.job_crc);
            put(" ");
            put_sha(sha);
        }
        put("\r\n");
        A.mode = M_LINE;
    }
}

/* ---- line commands ---- */
/* 1-8 hex digits, nothing else. */
int sfa_parse_hex(const char *s, uint32_t n, uint32_t *out)
{
    uint32_t v = 0;
    if (n < 1 || n > 8) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        char c = s[i];
        uint32_t d;
        if (c >= '0' && c <= '9') {
            d = (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            d = (uint32_t)(c - 'A' + 10);
        } else {
            return 0;
        }
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

#define MAX_WORDS 6

static int word_is(const char *w, uint32_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* "<name> <version> <sha256>" or "-" */
static void put_record(void)
{
    sfa_record rec;
    if (sfa_record_read(&rec) != SFA_OK) {
        put("-");
        return;
    }
    put(rec.name);
    put(" ");
    put(rec.version);
    put(" ");
    put_sha(rec.sha256);
}

static void cmd_rec(void)
{
    put("OK ");
    put_record();
    put("\r\n");
}

static void cmd_rec_set(const char *const *w, const uint32_t *wl)
{
    sfa_record rec;
    if (!sfa_record_name_ok(w[2], wl[2]) || !sfa_record_name_ok(w[3], wl[3])) {
        reply_err(SFA_ERR_SYNTAX, "name/version: 1-32 of A-Za-z0-9._+-");
        return;
    }
    if (wl[4] != 64) {
        reply_err(SFA_ERR_SYNTAX, SHA_TEXT);
        return;
    }
    for (uint32_t i = 0; i < 32; i++) {
        uint32_t b;
        if (!sfa_parse_hex(w[4] + 2 * i, 2, &b)) {
            reply_err(SFA_ERR_SYNTAX, SHA_TEXT);
            return;
        }
        rec.sha256[i] = (uint8_t)b;
    }
    memcpy(rec.name, w[2], wl[2]);
    rec.name[wl[2]] = '\0';
    memcpy(rec.version, w[3], wl[3]);
    rec.version[wl[3]] = '\0';
    if (sfa_record_write(&rec) != SFA_OK) {
        reply_err(SFA_ERR_FLASH, "release record write failed at 0x00003000");
        return;
    }
    put("OK\r\n");
}

static void run_line(char *line, uint32_t len)
{
    const char *w[MAX_WORDS];
    uint32_t wl[MAX_WORDS];
    uint32_t nw = 0, i = 0;
    for (uint32_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)line[k];
        if (c != ' ' && (c < 0x21u || c > 0x7eu)) {
            reply_err(SFA_ERR_SYNTAX, "bad character in the line");
            return;
        }
    }
    while (i < len) {
        while (i < len && line[i] == ' ') {
            i++;
        }
        if (i == len) {
            break;
        }
        if (nw == MAX_WORDS) {
            nw++;
            break;
        }
        w[nw] = line + i;
        while (i < len && line[i] != ' ') {
            i++;
        }
        wl[nw] = (uint32_t)(line + i - w[nw]);
        nw++;
    }
    if (nw == 0) {
        return;
    }
    uint32_t a = 0, l = 0;
    int nums = nw >= 3 && sfa_parse_hex(w[1], wl[1], &a) && sfa_parse_hex(w[2], wl[2], &l);
    int internal = 0;
    if (word_is(w[0], wl[0], "ID") && nw == 1) {
        put("OK ");
        put_id();
        put("\r\n");
    } else if ((word_is(w[0], wl[0], "SUM") || word_is(w[0], wl[0], "SUMS")) && nw == 3) {
        if (!nums) {
            reply_err(SFA_ERR_SYNTAX, NUMBERS);
        } else if (!sfa_range_in_flash(a, l, &internal)) {
            reply_err(SFA_ERR_RANGE, "not inside one flash memory");
        } else {
            int mode = wl[0] == 3 ? M_SUM : M_SUMS;
            if (sink && mode == M_SUMS && 9u * pieces_of(a, l) + 10u > SFA_CLOUD_VAR_MAX) {
                reply_err(SFA_ERR_RANGE, "more sector CRCs than the variable holds");
            } else {
                start_job(mode, a, l, internal);
            }
        }
    } else if (word_is(w[0], wl[0], "SAVE") && (nw == 3 || (nw == 4 && word_is(w[3], wl[3], "ANY")))) {
        const char *why;
        if (sink) {
            reply_err(SFA_ERR_SYNTAX, "SAVE is a serial command");
        } else if (!nums) {
            reply_err(SFA_ERR_SYNTAX, NUMBERS);
        } else if ((why = sfa_save_range_error(a, l, nw == 4)) != NULL) {
            reply_err(SFA_ERR_RANGE, why);
        } else {
            put("OK\r\n");
            start_ymodem(K_SAVE, a, l);
        }
    } else if (word_is(w[0], wl[0], "REC") && nw == 1) {
        cmd_rec();
    } else if (word_is(w[0], wl[0], "REC") && nw == 5 && word_is(w[1], wl[1], "SET")) {
        cmd_rec_set(w, wl);
    } else {
        reply_err(SFA_ERR_SYNTAX, "unknown command");
    }
}

static void key_i(void)
{
    put("Your core id is ");
    put_id();
    put("\r\nsparkflash-agent 1\r\n");
}

static void line_byte(uint8_t b)
{
    if (A.mode == M_DISCARD) {
        if (b == '\n') {
            A.mode = M_LINE;
            reply_err(SFA_ERR_SYNTAX, TOO_LONG);
        }
        return;
    }
    if (A.len == 0) {  /* a stock key acts at once when it starts a line */
        if (b == 'i') {
            key_i();
        } else if (b == 'f') {
            put(FW_PROMPT);
            start_ymodem(K_FIRMWARE, SFA_OTA_START, 0);
        } else if (b >= 'A' && b <= 'Z') {
            line_buf[A.len++] = (char)b;
        }
        return;  /* CR, LF, NUL, space and other keys are ignored, as stock firmware does */
    }
    if (b == '\n') {
        uint32_t n = A.len;
        while (n > 0 && line_buf[n - 1] == '\r') {
            n--;
        }
        A.len = 0;
        if (n > SFA_MAX_LINE) {
            reply_err(SFA_ERR_SYNTAX, TOO_LONG);
        } else {
            run_line(line_buf, n);
        }
        return;
    }
    if (A.len < SFA_MAX_LINE + 1) {
        line_buf[A.len++] = (char)b;
    } else {
        A.len = 0;
        A.mode = M_DISCARD;
    }
}

/* ---- the loop ---- */
void sfa_agent_begin(void)
{
    memset(&A, 0, sizeof A);
    A.mode = M_LINE;
    shared[0] = '\0';
}

void sfa_agent_link_reset(void)
{
    /* A transfer under way is dead: its host is gone. A SAVE still waiting for its sender
     * survives (`echo SAVE ... >port; sb ... >port` closes between the two), but the new
     * host's first command byte ends it. */
    if (A.mode == M_YMODEM && !A.ym.started) {
        A.reopened = 1;
        return;
    }
    if (A.mode == M_INSTALL) {
        return;  /* the image is complete and announced: the reset happens regardless */
    }
    A.mode = M_LINE;
    A.len = 0;
}

static void run_job_to_end(void)
{
    while (A.mode == M_SUM || A.mode == M_SUMS) {
        job_step();
    }
}

void sfa_agent_feed(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        run_job_to_end();  /* bytes that came behind SUM wait for its reply */
        if (A.mode == M_YMODEM && A.reopened && !A.ym.started && A.ym.fill == 0 &&
            ((data[i] >= 'A' && data[i] <= 'Z') || data[i] == 'i' || data[i] == 'f')) {
            A.mode = M_LINE;  /* a command, not a sender: the old host gave up */
            A.len = 0;
        }
        if (A.mode == M_YMODEM) {
            sfa_ym_feed(&A.ym, data + i, 1, sfa_hal_millis());
            ymodem_check();
        } else if (A.mode == M_LINE || A.mode == M_DISCARD) {
            line_byte(data[i]);
        }
        /* M_INSTALL: the device is about to reset; input is dropped */
    }
}

int sfa_agent_poll(void)
{
    uint8_t buf[64];
    if (A.mode == M_SUM || A.mode == M_SUMS) {
        job_step();
        return 1;
    }
    if (A.mode == M_INSTALL) {
        if ((int32_t)(sfa_hal_millis() - A.install_at) >= 0) {
            A.mode = M_LINE;
            sfa_hal_install_firmware(A.length);
        }
        return 1;
    }
    int n = sfa_hal_serial_read(buf, sizeof buf);
    if (n > 0) {
        sfa_agent_feed(buf, (size_t)n);
    }
    if (A.mode == M_YMODEM) {
        sfa_ym_tick(&A.ym, sfa_hal_millis());
        ymodem_check();
    }
    return n > 0 || A.mode != M_LINE;
}

/* ---- the cloud function (docs/device-agent.md §6) ---- */
static uint32_t pieces_of(uint32_t a, uint32_t l)
{
    if (l == 0) {
        return 0;
    }
    uint32_t last = (uint32_t)(((uint64_t)a + l - 1u) & ~(uint64_t)(SFA_SECTOR_SIZE - 1u));
    return (last - (a & ~(SFA_SECTOR_SIZE - 1u))) / SFA_SECTOR_SIZE + 1u;
}

int sfa_cloud_call(const char *arg)
{
    char *text = (char *)shared, *pending = (char *)shared + CLOUD_PENDING;
    size_t n = strlen(arg);
    int more = n > 0 && arg[0] == '+';
    if (A.mode != M_LINE && A.mode != M_DISCARD) {
        cloud_text_lost();
        return SFA_ERR_TRANSFER;
    }
    text[0] = '\0';
    sink = text;
    sink_len = 0;
    sink_cap = SFA_CLOUD_VAR_MAX + 1u;
    if (n - (size_t)more > (size_t)SFA_MAX_LINE - A.pending) {
        A.pending = 0;
        reply_err(SFA_ERR_SYNTAX, TOO_LONG);
    } else {
        memcpy(pending + A.pending, arg + more, n - (size_t)more);
        A.pending = (uint8_t)(A.pending + n - (size_t)more);
        if (more) {
            put("OK\r\n");
        } else {
            uint32_t len = A.pending;
            A.pending = 0;
            run_line(pending, len);
            run_job_to_end();
            if (sink_len == 0) {
                reply_err(SFA_ERR_SYNTAX, "empty command");
            }
        }
    }
    sink = NULL;
    if (sink_len >= 2) {
        text[sink_len - 2] = '\0';  /* every reply is one line: drop its CR LF */
    }
    return memcmp(text, "ERR ", 4) == 0 ? text[4] - '0' : SFA_OK;
}
