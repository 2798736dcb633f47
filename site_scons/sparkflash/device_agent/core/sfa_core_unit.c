/* The portable sources as one translation unit, for the Core build (`scons AGENT=1`
 * compiles this with -fwhole-program instead of the src/ files one by one): GCC then sees the
 * whole agent, inlines and specialises across files and drops what the binding does not
 * call; with the binding's C half (sfa_core_hal.c) in it too, the agent calls core-common-lib
 * directly. Only the functions below stay external: what core/sfa_core.cpp calls. The host
 * build, the fuzzers and the OTA harness compile the src/ files as they are. */
#include "sfa_agent.h"

#define SFA_API __attribute__((externally_visible))
SFA_API void sfa_agent_begin(void);
SFA_API int sfa_agent_poll(void);
SFA_API int sfa_cloud_call(const char *arg);
SFA_API char *sfa_cloud_text(void);

#include "../src/sfa_agent.c"
#include "../src/sfa_digest.c"
#include "../src/sfa_flash.c"
#include "../src/sfa_record.c"
#include "../src/sfa_ymodem.c"
#include "sfa_core_hal.c"
