/* YMODEM batch receiver (docs/serial-protocol.md §4): one file per session, CRC-16 only,
 * duplicate blocks re-ACKed, CAN CAN from the sender ends the session, more than
 * SFA_YM_MAX_ERRORS consecutive errors cancel it. Every input byte is consumed at once;
 * the only buffer is one frame. */
#include "sfa_ymodem.h"

#include <stddef.h>
#include <string.h>

#include "sfa_digest.h"

#define SOH 0x01u
#define STX 0x02u
#define EOT 0x04u
#define ACK 0x06u
#define NAK 0x15u
#define CAN 0x18u
#define CRC_START 0x43u

static void send1(uint8_t b) { sfa_ym_send(&b, 1); }

/* ACK, then C: a header taken */
static void ack_c(void)
{
    send1(ACK);
    send1(CRC_START);
}

/* Called only while the session runs (feed and tick check the state first). Out of line: it
 * has eight callers. */
static __attribute__((noinline)) void fail(sfa_ym *ym, int result, const char *why, int send_cancel)
{
    static const uint8_t cancel[8] = {CAN, CAN, CAN, CAN, CAN, CAN, CAN, CAN};
    if (send_cancel) {
        sfa_ym_send(cancel, sizeof cancel);
    }
    ym->state = SFA_YM_FAILED;
    ym->result = result;
    ym->why = why;
    ym->why_at = ym->received;
}

void sfa_ym_cancel(sfa_ym *ym, int result, const char *why)
{
    if (ym->state < SFA_YM_DONE) {
        fail(ym, result, why, 1);
    }
}

/* One more consecutive error: answer it with `reply`, or cancel the session after too many. */
static void error(sfa_ym *ym, const char *why, uint8_t reply)
{
    if (++ym->errors > SFA_YM_MAX_ERRORS) {
        fail(ym, SFA_YM_ERR_TRANSFER, why, 1);
    } else {
        send1(reply);
    }
}

void sfa_ym_start(sfa_ym *ym, uint32_t now_ms)
{
    /* every field before the frame pointer: state SFA_YM_HEADER, result SFA_YM_OK,
     * counters 0, no name */
    memset(ym, 0, offsetof(sfa_ym, frame));
    ym->starts = 1;
    ym->seq = 1;
    ym->last_ms = now_ms;
    send1(CRC_START);
}

static void on_header(sfa_ym *ym, const uint8_t *payload, uint32_t plen)
{
    uint8_t seq = ym->frame[1];
    if (seq != 0) {
        int late = ym->started && seq == (uint8_t)(ym->seq - 1u);  /* the last block again */
        send1(late ? ACK : NAK);
        return;
    }
    ym->errors = 0;
    if (payload[0] == 0) {  /* end of batch (lrzsz leaves junk in bytes 126-127: look only here) */
        send1(ACK);
        ym->state = SFA_YM_DONE;
        return;
    }
    ym->started = 1;
    if (ym->have_file) {
        fail(ym, SFA_YM_ERR_TRANSFER, "one file per session", 1);
        return;
    }
    uint32_t i = 0, k = 0;
    while (i < plen && payload[i] != 0) {
        if (k < SFA_YM_NAME_MAX) {
            uint8_t c = payload[i];
            ym->name[k++] = (char)(c >= 0x20u && c < 0x7fu ? c : '?');
        }
        i++;
    }
    ym->name[k] = '\0';
    int has_size = 0;
    uint32_t size = 0;
    for (i++; i < plen && payload[i] >= '0' && payload[i] <= '9'; i++) {
        uint32_t d = (uint32_t)(payload[i] - '0');
        size = (size > (0xffffffffu - d) / 10u) ? 0xffffffffu : size * 10u + d;  /* saturates */
        has_size = 1;
    }
    ym->have_file = 1;  /* the first file: received and seq are still 0 and 1 from sfa_ym_start */
    ym->size = size;
    int r = sfa_ym_on_header(ym->name, size, has_size);
    if (r != SFA_YM_OK) {
        fail(ym, r, "", 1);  /* the owner words its own refusals (why is for transfer errors) */
        return;
    }
    ym->state = SFA_YM_DATA;
    ack_c();
}

static void on_block(sfa_ym *ym)
{
    uint32_t plen = ym->need - 5u;
    uint8_t seq = ym->frame[1];
    const uint8_t *payload = ym->frame + 3;
    int complement_ok = (unsigned)ym->frame[2] + seq == 0xffu;
    /* the CRC over the payload and its own two bytes (big-endian) is 0 for a good block */
    if (!complement_ok || sfa_crc16(payload, plen + 2u) != 0) {
        error(ym, complement_ok ? "block CRC error" : "bad block complement", NAK);
        return;
    }
    if (ym->state == SFA_YM_HEADER) {
        on_header(ym, payload, plen);
        return;
    }
    if (seq == 0 && ym->received == 0) {  /* the header again: our ACK was lost */
        ack_c();
        return;
    }
    if (seq == (uint8_t)(ym->seq - 1u)) {  /* duplicate: our ACK was lost */
        send1(ACK);
        return;
    }
    if (seq != ym->seq) {
        fail(ym, SFA_YM_ERR_TRANSFER, "block out of sequence", 1);
        return;
    }
    uint32_t left = ym->size - ym->received;
    uint32_t n = plen < left ? plen : left;  /* 0x1A padding past the size is not stored */
    int r = sfa_ym_on_data(ym->received, payload, n);
    if (r != SFA_YM_OK) {
        fail(ym, r, "", 1);
        return;
    }
    ym->received += n;
    ym->seq++;
    ym->errors = 0;
    send1(ACK);
}

static void on_byte(sfa_ym *ym, uint8_t b)
{
    ym->cans = (uint8_t)(b == CAN ? ym->cans + 1u : 0u);
    if (ym->cans >= 2u) {
        fail(ym, SFA_YM_ERR_TRANSFER, "sender cancelled (CAN CAN)", 0);
        return;
    }
    if (b != EOT) {
        return;  /* noise (ZRQINIT, stray spaces): resync on the next mark */
    }
    if (ym->state == SFA_YM_DATA && ym->received < ym->size) {
        /* not an end: a block mark corrupted into EOT. NAK; a real end is sent again. */
        error(ym, "EOT before the announced size", NAK);
        return;
    }
    send1(ACK);
    if (ym->state != SFA_YM_DATA) {
        return;  /* a repeated EOT: our ACK was lost */
    }
    send1(CRC_START);
    ym->state = SFA_YM_HEADER;
}

void sfa_ym_feed(sfa_ym *ym, const uint8_t *data, size_t n, uint32_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        if (ym->state != SFA_YM_HEADER && ym->state != SFA_YM_DATA) {
            return;
        }
        uint8_t b = data[i];
        ym->last_ms = now_ms;
        if (ym->fill > 0) {
            ym->frame[ym->fill++] = b;
            if (ym->fill == ym->need) {
                ym->fill = 0;
                on_block(ym);
            }
        } else if (b == SOH || b == STX) {
            ym->frame[0] = b;
            ym->fill = 1;
            ym->need = (uint16_t)(b == SOH ? 3u + 128u + 2u : 3u + 1024u + 2u);
            ym->cans = 0;
        } else {
            on_byte(ym, b);
        }
    }
}

void sfa_ym_tick(sfa_ym *ym, uint32_t now_ms)
{
    if (ym->state != SFA_YM_HEADER && ym->state != SFA_YM_DATA) {
        return;
    }
    uint32_t limit = ym->started ? SFA_YM_BLOCK_MS : SFA_YM_START_MS;
    if ((uint32_t)(now_ms - ym->last_ms) < limit) {
        return;
    }
    ym->last_ms = now_ms;
    ym->fill = 0;  /* a partial block is lost */
    if (!ym->started) {
        if (++ym->starts > SFA_YM_START_TRIES) {
            fail(ym, SFA_YM_ERR_TRANSFER, "no sender after 20 'C' prompts", 1);
            return;
        }
        send1(CRC_START);
        return;
    }
    error(ym, "timeout waiting for a block", ym->state == SFA_YM_HEADER ? CRC_START : NAK);
}
