/* The portable sources as one translation unit, for the Core build (`scons AGENT=1`
 * compiles this with -fwhole-program instead of the src/ files one by one): GCC then sees the
 * whole agent and inlines and specialises across files; with the binding's C half
 * (sfa_core_hal.c) in it too, the agent calls core-common-lib directly. Only sfa_agent.h's
 * API (below) stays external, and the link drops what nothing calls. The host build, the
 * fuzzers and the OTA harness compile the src/ files as they are. */
#include "sfa_agent.h"

#define SFA_API __attribute__((externally_visible))
SFA_API void sfa_agent_begin(void);
SFA_API int sfa_agent_poll(void);
SFA_API int sfa_cloud_call(const char *arg);
SFA_API char *sfa_cloud_text(void);
SFA_API void sfa_agent_feed(const uint8_t *data, size_t n);  /* the rest of sfa_agent.h's API, */
SFA_API void sfa_agent_link_reset(void);                     /* for an application's own use */

#include "../src/sfa_agent.c"
#include "../src/sfa_digest.c"
#include "../src/sfa_flash.c"
#include "../src/sfa_record.c"
#include "../src/sfa_ymodem.c"
#include "sfa_core_hal.c"
