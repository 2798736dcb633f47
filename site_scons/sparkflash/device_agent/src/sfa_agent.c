/* The agent's serial side: stock keys `i` and `f`, line commands ID, SUM, SUMS, SAVE, REC
 * (docs/device-agent.md §2), one YMODEM receiver. A state machine fed bytes: nothing here
 * waits; SUM/SUMS hash at most one 256-byte chunk per poll. */
#include <stdarg.h>
#include <string.h>

#include "sfa_board.h"
#include "sfa_digest.h"
#include "sfa_internal.h"
#include "sfa_ymodem.h"

#define INSTALL_DELAY_MS 100u

/* the order matters: below M_YMODEM the line parser owns the input, from M_SUM on a job runs */
enum mode { M_LINE, M_YMODEM, M_INSTALL, M_SUM, M_SUMS };
enum ym_kind { K_SAVE, K_FIRMWARE };

static const char FW_PROMPT[] = "Waiting for the binary file to be sent ... (press 'a' to abort)\r\n";
static const char FW_TOO_BIG[] = "The file size is higher than the allowed space memory!\r\n";
static const char FW_FAILED[] = "Failed to receive the file!\r\n";
static const char NUMBERS[] = "address and length: 1-8 hex digits";
static const char SHA_TEXT[] = "sha256: 64 hex digits";
static const char TOO_LONG[] = "line longer than 160 characters";
static const char WRITE_FAILED[] = "ERR 3 %s write failed at 0x%x\r\n"; /* what, address */

/* One buffer (A.shared), uses that never overlap in time: the cloud text at its start (kept
 * while idle; the first CLOUD_GUARD bytes are never reused), the YMODEM frame after the guard,
 * the SUM read buffer and a gathered cloud command after the cloud text, and the command line
 * at its end (line mode only). */
#define CLOUD_GUARD 16u
#define SHARED_SIZE (CLOUD_GUARD + SFA_YM_FRAME_MAX)
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
    uint8_t cloud;     /* replies go to the cloud text (sfa_cloud_call runs) */
    uint16_t len;
    uint16_t cloud_len; /* characters of the cloud text so far */
    sfa_ym ym;
    uint32_t dest, length;
    uint32_t job_addr, job_left, job_crc; /* job_crc: SUM's CRC, or SUMS' current piece */
    uint32_t install_at;
    sfa_writer w;
    sfa_sha256 sha;
    uint8_t shared[SHARED_SIZE]; /* last: the small fields and the receiver near the start (16-bit loads) */
} A;
static char *const line_buf = (char *)A.shared + SHARED_SIZE - (SFA_MAX_LINE + 2);

/* ---- output: the serial port, or the cloud text while sfa_cloud_call runs ---- */
static void out(const void *data, size_t n)
{
    if (!A.cloud) {
        sfa_hal_serial_write((const uint8_t *)data, n);
        return;
    }
    size_t room = (size_t)(SFA_CLOUD_VAR_MAX - A.cloud_len);
    if (n > room) {
        n = room;  /* the cloud text is cut, never overrun */
    }
    memcpy(A.shared + A.cloud_len, data, n);
    A.cloud_len = (uint16_t)(A.cloud_len + n);  /* sfa_cloud_call terminates the text */
}

static void put(const char *s) { out(s, strlen(s)); }

/* A reply from a template: "%s" a text, "%x" 8 hex digits, "%h" hex, "%d" decimal (each
 * takes the next argument, uint32_t for numbers), "%S" a 32-byte digest as 64 hex digits,
 * "%n" n characters at p (two arguments: uint32_t n, then p),
 * "%i" the 24 hex digits of the device id. One call per reply keeps the call sites small. */
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (;;) {
        size_t n = 0;
        while (fmt[n] && fmt[n] != '%') {  /* not strcspn: the Core's libc links it only for us */
            n++;
        }
        out(fmt, n);
        fmt += n;
        if (!*fmt) {
            break;
        }
        char c = fmt[1], d[64];
        fmt += 2;
        if (c == 's') {
            put(va_arg(ap, const char *));
        } else if (c == 'S') {
            sfa_hex(d, va_arg(ap, const uint8_t *), 32);
            out(d, 64);
        } else if (c == 'i') {
            sfa_hal_device_id(d);
            out(d, 24);
        } else if (c == 'n') {
            uint32_t n = va_arg(ap, uint32_t);
            out(va_arg(ap, const char *), n);
        } else {  /* v in base 10 or 16, at least 8 digits for %x */
            uint32_t v = va_arg(ap, uint32_t), base = c == 'd' ? 10u : 16u;
            int i = 10;
            do {
                d[--i] = sfa_hex_digit(v % base);
                v /= base;
            } while (v || (c == 'x' && i > 2));
            out(d + i, (size_t)(10 - i));
        }
    }
    va_end(ap);
}

static void reply_err(int code, const char *text) { say("ERR %d %s\r\n", (uint32_t)code, text); }

/* ---- the YMODEM receiver's hooks (sfa_ymodem.h) ---- */
void sfa_ym_send(const uint8_t *data, size_t n) { out(data, n); }

int sfa_ym_on_header(const char *name, uint32_t size, int has_size)
{
    (void)name;
    if (A.kind == K_FIRMWARE && has_size) {
        if (size > SFA_FIRMWARE_MAX) {
            return SFA_YM_ERR_TOO_BIG;
        }
        A.length = size;  /* 0: refused below, the bootloader would install the slot's stale bytes */
    }
    if (!has_size || size != A.length || size == 0) {
        return SFA_YM_ERR_SIZE;
    }
    sfa_writer_begin(&A.w, A.dest, A.length);
    return SFA_YM_OK;
}

int sfa_ym_on_data(uint32_t offset, const uint8_t *data, uint32_t n)
{
    return sfa_writer_write(&A.w, A.dest + offset, data, n) == SFA_OK ? SFA_YM_OK : SFA_YM_ERR_FLASH;
}

/* The buffer is about to be reused: the cloud text now reads as busy, not as stale bytes. */
static void cloud_text_lost(void)
{
    memcpy(A.shared, BUSY, sizeof BUSY);
    A.pending = 0;
}

char *sfa_cloud_text(void) { return (char *)A.shared; }

static void start_ymodem(int kind, uint32_t dest, uint32_t length)
{
    cloud_text_lost();
    A.kind = (uint8_t)kind;
    A.dest = dest;
    A.length = length;
    A.mode = M_YMODEM;
    A.reopened = 0;
    sfa_ym_start(&A.ym, sfa_hal_millis());
}

/* The session ended: the reply SAVE's sender (or the stock `f` prompt's) waits for. */
static void ymodem_check(void)
{
    sfa_ym *ym = &A.ym;
    int r = ym->result;
    if (ym->state < SFA_YM_DONE) {
        return;
    }
    A.mode = M_LINE;
    if (ym->state == SFA_YM_DONE && ym->have_file) {
        if (A.kind == K_SAVE) {
            say("OK %h\r\n", A.length);  /* SAVE's OK carries the length in hex */
            return;
        }
        say("\r\nDownloaded file successfully!\r\nName: %s\r\nSize: %d bytes\r\n"
            "Restarting system to apply firmware update...\r\n", ym->name, A.length);
        A.install_at = sfa_hal_millis() + INSTALL_DELAY_MS;
        A.mode = M_INSTALL;
    } else if (A.kind == K_FIRMWARE && r != SFA_YM_ERR_SIZE) {  /* the stock texts */
        put(r == SFA_YM_ERR_TOO_BIG ? FW_TOO_BIG : FW_FAILED);
    } else if (ym->state == SFA_YM_DONE) {
        reply_err(SFA_ERR_SIZE, "no file in the batch");
    } else if (r == SFA_YM_ERR_SIZE) {
        reply_err(SFA_ERR_SIZE, "header size missing or not SAVE's length");
    } else if (r == SFA_YM_ERR_FLASH) {
        say(WRITE_FAILED, "flash", A.w.bad_at);
    } else {
        say("ERR 4 YMODEM: %s at byte %d\r\n", ym->why, ym->why_at);
    }
}

/* ---- SUM / SUMS jobs ---- */
/* The job reads through the part of the buffer between the cloud text and the serial line:
 * over the cloud the gathered command is parsed by then (the job runs to its end inside the
 * call), over serial the cloud text is lost anyway and cloud calls are refused meanwhile. */
#define JOB_CHUNK 256u
typedef char sfa_job_chunk_fits[(CLOUD_PENDING + JOB_CHUNK <= SHARED_SIZE - (SFA_MAX_LINE + 2)) ? 1 : -1];
static void job_step(void)
{
    uint8_t *buf = A.shared + CLOUD_PENDING;
    uint32_t n = JOB_CHUNK;
    int sums = A.mode == M_SUMS;
    uint32_t to_boundary = SFA_SECTOR_SIZE - (A.job_addr & (SFA_SECTOR_SIZE - 1u));
    if (n > to_boundary) {  /* SUMS' pieces end at sector boundaries (SUM's chunks may as well) */
        n = to_boundary;
    }
    if (n > A.job_left) {
        n = A.job_left;
    }
    if (n) {
        sfa_read_any(buf, A.job_addr, n, A.job_internal);
        A.job_crc = sfa_crc32_update(A.job_crc, buf, n);
        if (!sums) {
            sfa_sha256_update(&A.sha, buf, n);
        }
        A.job_addr += n;
        A.job_left -= n;
        if (sums && (A.job_left == 0 || (A.job_addr & (SFA_SECTOR_SIZE - 1u)) == 0)) {
            say(" %x", A.job_crc);
            A.job_crc = 0;
        }
    }
    if (A.job_left == 0) {
        if (!sums) {
            uint8_t sha[32];
            sfa_sha256_final(&A.sha, sha);
            say("OK %x %S", A.job_crc, sha);
        }
        put("\r\n");
        A.mode = M_LINE;
    }
}

static void run_job_to_end(void)
{
    while (A.mode >= M_SUM) {
        job_step();
    }
}

/* How many 4 KiB sectors [a, a + l) touches (SUMS' pieces); a range inside one flash. */
static uint32_t pieces_of(uint32_t a, uint32_t l)
{
    return l ? (a + l - 1u) / SFA_SECTOR_SIZE - a / SFA_SECTOR_SIZE + 1u : 0u;
}

/* ---- line commands ---- */
/* not inlined: two callers, smaller out of line */
static __attribute__((noinline)) int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);  /* A-F as a-f */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A word of 1-8 hex digits, nothing else. */
static int parse_hex(const char *s, uint32_t *out)
{
    uint32_t v = 0, n = 0;
    for (; s[n]; n++) {
        int d = hex_digit(s[n]);
        if (d < 0 || n == 8) {
            return 0;
        }
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return n > 0;
}

#define MAX_WORDS 6

/* The words of the commands, one table: word_of() gives the index (W_*), or W_NONE. */
enum word { W_ID, W_SUM, W_SUMS, W_SAVE, W_REC, W_ANY, W_SET, W_NONE };
static const char WORDS[] = "ID\0SUM\0SUMS\0SAVE\0REC\0ANY\0SET";

static int word_of(const char *w)
{
    const char *p = WORDS;
    int i = 0;
    for (; i < W_NONE && strcmp(w, p) != 0; i++) {
        while (*p++) {  /* to the next word */
        }
    }
    return i;
}

/* "OK <name> <version> <sha256>" or "OK -" */
static void cmd_rec(void)
{
    uint8_t slot[SFA_REC_SLOT];
    if (sfa_record_read(slot) != SFA_OK) {
        put("OK -\r\n");
    } else {
        say("OK %n %n %S\r\n", (uint32_t)slot[4], slot + SFA_REC_NAME, (uint32_t)slot[5], slot + SFA_REC_VERSION,
            slot + SFA_REC_SHA);  /* the lengths at 4 and 5 */
    }
}

/* REC SET <name> <version> <sha256> */
static void cmd_rec_set(char *const *w)
{
    uint8_t sha[32];
    if (!sfa_record_name_ok(w[2], (uint32_t)strlen(w[2])) || !sfa_record_name_ok(w[3], (uint32_t)strlen(w[3]))) {
        reply_err(SFA_ERR_SYNTAX, "name/version: 1-32 of A-Za-z0-9._+-");
        return;
    }
    int bad = strlen(w[4]) != 64;
    for (uint32_t i = 0; i < 64 && !bad; i++) {
        int d = hex_digit(w[4][i]);
        bad = d < 0;
        sha[i / 2] = (uint8_t)((sha[i / 2] << 4) | (d & 15));
    }
    if (bad) {
        reply_err(SFA_ERR_SYNTAX, SHA_TEXT);
        return;
    }
    if (sfa_record_write(w[2], w[3], sha) != SFA_OK) {
        say(WRITE_FAILED, "release record", (uint32_t)SFA_RECORD_START);
        return;
    }
    put("OK\r\n");
}

/* A complete line (CR LF removed): words split at spaces in place, then the command. */
static void run_line(char *line, uint32_t len)
{
    char *w[MAX_WORDS + 1];
    uint32_t nw = 0;
    for (uint32_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)line[k];
        if (c < 0x20u || c > 0x7eu) {
            reply_err(SFA_ERR_SYNTAX, "bad character in the line");
            return;
        }
        if (c == ' ') {
            line[k] = '\0';
        } else if ((k == 0 || line[k - 1] == '\0') && nw <= MAX_WORDS) {
            w[nw++] = line + k;  /* MAX_WORDS + 1 words: too many for every command */
        }
    }
    line[len] = '\0';
    if (nw == 0) {
        return;
    }
    uint32_t a = 0, l = 0;
    int nums = nw >= 3 && parse_hex(w[1], &a) && parse_hex(w[2], &l);
    int internal = 0, cmd = word_of(w[0]), sums = cmd == W_SUMS;
    uint32_t pieces = pieces_of(a, l);
    if ((sums || cmd == W_SUM) && nw == 3) {
        if (!nums) {
            reply_err(SFA_ERR_SYNTAX, NUMBERS);
        } else if (!sfa_range_in_flash(a, l, &internal)) {
            reply_err(SFA_ERR_RANGE, "not inside one flash memory");
        } else if (A.cloud && sums && 9u * pieces + 10u > SFA_CLOUD_VAR_MAX) {
            reply_err(SFA_ERR_RANGE, "more sector CRCs than the variable holds");
        } else {
            if (!A.cloud) {
                cloud_text_lost();
            }
            A.mode = (uint8_t)(sums ? M_SUMS : M_SUM);
            A.job_addr = a;
            A.job_left = l;
            A.job_internal = (uint8_t)internal;
            A.job_crc = 0;
            sfa_sha256_init(&A.sha);
            if (sums) {
                say("OK %d", pieces);
            }
        }
    } else if (cmd == W_SAVE && (nw == 3 || (nw == 4 && word_of(w[3]) == W_ANY))) {
        const char *why;
        if (A.cloud) {
            reply_err(SFA_ERR_SYNTAX, "SAVE is a serial command");
        } else if (!nums) {
            reply_err(SFA_ERR_SYNTAX, NUMBERS);
        } else if ((why = sfa_save_range_error(a, l, nw == 4)) != NULL) {
            reply_err(SFA_ERR_RANGE, why);
        } else {
            put("OK\r\n");
            start_ymodem(K_SAVE, a, l);
        }
    } else if (cmd == W_ID && nw == 1) {
        say("OK %i\r\n");
    } else if (cmd == W_REC && nw == 1) {
        cmd_rec();
    } else if (cmd == W_REC && nw == 5 && word_of(w[1]) == W_SET) {
        cmd_rec_set(w);
    } else {
        reply_err(SFA_ERR_SYNTAX, "unknown command");
    }
}

/* A.len counts the line's characters; SFA_MAX_LINE + 2 marks a line too long, skipped to its LF. */
static void line_byte(uint8_t b)
{
    uint32_t n = A.len;
    if (n == 0 && (b < 'A' || b > 'Z')) {  /* a line starts with a capital letter */
        if (b == 'i') {  /* a stock key acts at once when it starts a line */
            say("Your core id is %i\r\nsparkflash-agent 1\r\n");
        } else if (b == 'f') {
            put(FW_PROMPT);
            start_ymodem(K_FIRMWARE, SFA_OTA_START, 0);
        }
        return;  /* CR, LF, NUL, space and other keys are ignored, as stock firmware does */
    }
    if (b == '\n') {
        A.len = 0;
        if (n <= SFA_MAX_LINE + 1) {
            while (line_buf[n - 1] == '\r') {  /* stops at the latest at the line's first letter */
                n--;
            }
        }
        if (n > SFA_MAX_LINE) {
            reply_err(SFA_ERR_SYNTAX, TOO_LONG);
        } else {
            run_line(line_buf, n);
        }
    } else if (n <= SFA_MAX_LINE) {
        line_buf[A.len++] = (char)b;  /* up to SFA_MAX_LINE + 1: CRs may follow the last one */
    } else {
        A.len = SFA_MAX_LINE + 2;  /* too long: nothing more is kept */
    }
}

/* ---- the loop ---- */
void sfa_agent_begin(void)
{
    memset(&A, 0, sizeof A);  /* M_LINE, an empty cloud text */
    A.ym.frame = A.shared + CLOUD_GUARD;
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

void sfa_agent_feed(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = data[i];
        run_job_to_end();  /* bytes that came behind SUM wait for its reply */
        if (A.mode == M_YMODEM && A.reopened && !A.ym.started && A.ym.fill == 0 &&
            ((b >= 'A' && b <= 'Z') || b == 'i' || b == 'f')) {
            A.mode = M_LINE;  /* a command, not a sender: the old host gave up */
            A.len = 0;
        }
        if (A.mode == M_YMODEM) {
            sfa_ym_feed(&A.ym, &b, 1, sfa_hal_millis());
            ymodem_check();
        } else if (A.mode < M_YMODEM) {
            line_byte(b);
        }
        /* M_INSTALL: the device is about to reset; input is dropped */
    }
}

int sfa_agent_poll(void)
{
    uint8_t buf[64];
    if (A.mode >= M_SUM) {
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
int sfa_cloud_call(const char *arg)
{
    char *text = (char *)A.shared, *pending = (char *)A.shared + CLOUD_PENDING;
    size_t n = strlen(arg);
    int more = arg[0] == '+';
    if (A.mode >= M_YMODEM) {
        cloud_text_lost();
        return SFA_ERR_TRANSFER;
    }
    A.cloud = 1;
    A.cloud_len = 0;
    n -= (size_t)more;
    if (n > (size_t)SFA_MAX_LINE - A.pending) {
        A.pending = 0;
        reply_err(SFA_ERR_SYNTAX, TOO_LONG);
    } else {
        memcpy(pending + A.pending, arg + more, n);
        A.pending = (uint8_t)(A.pending + n);
        if (more) {
            put("OK\r\n");
        } else {
            uint32_t len = A.pending;
            A.pending = 0;
            run_line(pending, len);
            run_job_to_end();
            if (A.cloud_len == 0) {
                reply_err(SFA_ERR_SYNTAX, "empty command");
            }
        }
    }
    A.cloud = 0;
    text[A.cloud_len - 2] = '\0';  /* there is a reply (at least "ERR 1 ..."), one line: drop its CR LF */
    return text[0] == 'E' ? text[4] - '0' : SFA_OK;  /* "ERR <code> ..." (else "OK ...") */
}
