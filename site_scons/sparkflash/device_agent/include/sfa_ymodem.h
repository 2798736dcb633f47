/* YMODEM batch receiver (CRC-16, 128/1024-byte blocks), sans-I/O: fed bytes and the time,
 * it answers through sfa_ym_send and hands the header and verified payloads to
 * sfa_ym_on_header / sfa_ym_on_data, three functions its owner defines (like sfa_hal_*). */
#ifndef SFA_YMODEM_H
#define SFA_YMODEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SFA_YM_FRAME_MAX (3 + 1024 + 2)
#define SFA_YM_NAME_MAX 64
#define SFA_YM_START_MS 3000u   /* 'C' this often until a sender starts */
#define SFA_YM_BLOCK_MS 5000u  /* per block once a header arrived */
#define SFA_YM_START_TRIES 20u
#define SFA_YM_MAX_ERRORS 5u   /* more consecutive errors than this cancel (Device OS MAX_ERRORS) */

enum sfa_ym_state { SFA_YM_HEADER, SFA_YM_DATA, SFA_YM_DONE, SFA_YM_FAILED };

/* Results of the callbacks and of a failed session (the agent's ERR codes). */
enum sfa_ym_result {
    SFA_YM_OK = 0,
    SFA_YM_ERR_FLASH = 3,    /* the data callback could not store a block */
    SFA_YM_ERR_TRANSFER = 4, /* cancel, too many errors, timeout, second file */
    SFA_YM_ERR_SIZE = 5,     /* header without size, or refused by the header callback */
    SFA_YM_ERR_TOO_BIG = 6,  /* header callback: file larger than the destination */
};

typedef struct sfa_ym sfa_ym;
struct sfa_ym {
    uint8_t state;
    uint8_t started, errors, starts, cans, seq, have_file;
    uint16_t fill, need;
    uint32_t size, received;
    uint32_t last_ms;
    int result;
    const char *why;        /* once failed: static text of a transfer failure (SFA_YM_ERR_TRANSFER);
                             * "" for the callbacks' refusals, which their owner words itself */
    uint32_t why_at;        /* byte offset of the failure */
    char name[SFA_YM_NAME_MAX + 1];
    uint8_t *frame;         /* SFA_YM_FRAME_MAX bytes, owned by the caller (shared when idle) */
};

/* What the receiver's owner provides (one receiver per program: the agent, or a harness). */
void sfa_ym_send(const uint8_t *data, size_t n);
/* has_size 0: the header carried no size. Return SFA_YM_OK to accept. */
int sfa_ym_on_header(const char *name, uint32_t size, int has_size);
/* payload bytes [offset, offset + n) of the file, already truncated to the size. */
int sfa_ym_on_data(uint32_t offset, const uint8_t *data, uint32_t n);

/* frame must point at SFA_YM_FRAME_MAX bytes before the call. */
void sfa_ym_start(sfa_ym *ym, uint32_t now_ms);
void sfa_ym_feed(sfa_ym *ym, const uint8_t *data, size_t n, uint32_t now_ms);
void sfa_ym_tick(sfa_ym *ym, uint32_t now_ms);
/* End the session from our side (CAN x 8), with a result code and a static reason. */
void sfa_ym_cancel(sfa_ym *ym, int result, const char *why);

#ifdef __cplusplus
}
#endif

#endif
