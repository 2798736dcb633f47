/* libFuzzer: any byte stream into the agent (line parser, commands, YMODEM behind SAVE/f),
 * in chunks, with the clock moving between them. Findings: ASan/UBSan reports, aborts. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_hal.h"
#include "sfa_agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hal_reset();
    sfa_agent_begin();
    size_t at = 0;
    while (at < size) {
        size_t n = (size_t)(data[at] % 64u) + 1u;  /* the first byte of a chunk sets its length */
        at++;
        if (n > size - at) {
            n = size - at;
        }
        sfa_agent_feed(data + at, n);
        at += n;
        fuzz_hal_advance(n == 1 ? 6000u : 10u);  /* now and then long enough for a YMODEM timeout */
        for (int i = 0; i < 4 && sfa_agent_poll(); i++) {
        }
    }
    return 0;
}
