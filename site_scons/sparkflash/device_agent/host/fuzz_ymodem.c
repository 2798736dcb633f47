/* libFuzzer: the YMODEM receiver alone, with invariants checked on every callback: data
 * comes in order, never past the announced size, never after a failure. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sfa_ymodem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t expect_offset, announced;
static int have_header;

static void on_send(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    if (n == 0 || n > 8 || !d) {
        abort();
    }
}

static int on_header(void *ctx, const char *name, uint32_t sz, int has_size)
{
    (void)ctx;
    if (!name || have_header) {
        abort();  /* one file per session */
    }
    have_header = 1;
    announced = sz;
    expect_offset = 0;
    return has_size && sz < 0x200000u ? SFA_YM_OK : SFA_YM_ERR_SIZE;
}

static int on_data(void *ctx, uint32_t offset, const uint8_t *d, uint32_t n)
{
    (void)ctx;
    if (!have_header || offset != expect_offset || n > 1024u || n > announced - offset || (n && !d)) {
        abort();
    }
    expect_offset += n;
    return (n && d[0] == 0xeeu && d[n - 1] == 0xeeu) ? SFA_YM_ERR_FLASH : SFA_YM_OK;  /* a failing flash now and then */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sfa_ym ym;
    static uint8_t frame[SFA_YM_FRAME_MAX];
    uint32_t now = 0;
    ym.frame = frame;
    have_header = 0;
    ym.ctx = NULL;
    ym.send = on_send;
    ym.on_header = on_header;
    ym.on_data = on_data;
    sfa_ym_start(&ym, now);
    size_t at = 0;
    while (at < size) {
        size_t n = (size_t)(data[at] % 200u) + 1u;
        at++;
        if (n > size - at) {
            n = size - at;
        }
        int before = ym.state;
        sfa_ym_feed(&ym, data + at, n, now);
        if ((before == SFA_YM_DONE || before == SFA_YM_FAILED) && ym.state != before) {
            abort();  /* a finished session stays finished */
        }
        at += n;
        now += n == 1 ? 6000u : 5u;
        sfa_ym_tick(&ym, now);
    }
    if (ym.state == SFA_YM_DONE && have_header && expect_offset != announced) {
        abort();  /* success only with every announced byte delivered */
    }
    return 0;
}
