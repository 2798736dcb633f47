/* libFuzzer: the YMODEM receiver alone, with invariants checked on every callback: data
 * comes in order, never past the announced size, never after a failure. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sfa_ymodem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t expect_offset, announced;
static int have_header;

void sfa_ym_send(const uint8_t *d, size_t n)
{
    if (n == 0 || n > 8 || !d) {
        abort();
    }
}

int sfa_ym_on_header(const char *name, uint32_t sz, int has_size)
{
    if (!name || have_header) {
        abort();  /* one file per session */
    }
    have_header = 1;
    announced = sz;
    expect_offset = 0;
    return has_size && sz < 0x200000u ? SFA_YM_OK : SFA_YM_ERR_SIZE;
}

int sfa_ym_on_data(uint32_t offset, const uint8_t *d, uint32_t n)
{
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
