/* libFuzzer: any byte stream into the agent (line parser, commands, YMODEM behind SAVE/f),
 * in chunks, with the clock moving between them; a chunk whose length byte is >= 0xC0 is
 * instead an argument of the cloud function (what the network sends), between serial
 * bytes. Findings: ASan/UBSan reports, aborts (the cloud text's bounds and return code). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_hal.h"
#include "sfa_agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hal_reset();
    sfa_agent_begin();
    size_t at = 0;
    while (at < size) {
        int cloud = data[at] >= 0xc0u;
        size_t n = (size_t)(data[at] % 64u) + 1u;  /* the first byte of a chunk sets its length */
        at++;
        if (n > size - at) {
            n = size - at;
        }
        if (cloud) {
            char arg[64];
            size_t k = n < sizeof arg ? n : sizeof arg - 1u;  /* the library passes < 64 characters */
            memcpy(arg, data + at, k);
            arg[k] = '\0';
            int rc = sfa_cloud_call(arg);
            if (rc < 0 || rc > 5 || strlen(sfa_cloud_text()) > SFA_CLOUD_VAR_MAX) {
                abort();
            }
        } else {
            sfa_agent_feed(data + at, n);
        }
        at += n;
        fuzz_hal_advance(n == 1 ? 6000u : 10u);  /* now and then long enough for a YMODEM timeout */
        for (int i = 0; i < 4 && sfa_agent_poll(); i++) {
        }
    }
    return 0;
}
