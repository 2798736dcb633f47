// Spark Core binding of the sparkflash agent (spark_11-era core-firmware wiring), its C++
// half: USB serial through Serial, the digest cloud function and variables through
// Spark.function / Spark.variable. Flash, the firmware install, the device id and the tick
// are its C half, core/sfa_core_hal.c (compiled with the agent in core/sfa_core_unit.c).
//
// Built with `scons AGENT=1`, which also links with --wrap for setup() and loop(): the
// agent starts before the application's setup() and is polled before each loop(), so an
// application needs no change. Without the switch nothing of this is compiled.
#include "application.h"
#include "sfa_agent.h"

extern "C" {

int sfa_hal_serial_read(uint8_t *buf, size_t max)
{
    size_t n = 0;
    int c;
    while (n < max && (c = Serial.read()) >= 0) {  // -1: nothing received (USB_USART_Receive_Data)
        buf[n++] = (uint8_t)c;
    }
    return (int)n;
}

void sfa_hal_serial_write(const uint8_t *data, size_t n) { Serial.write(data, n); }

}  // extern "C"

#ifndef SFA_NO_CLOUD
static int sfa_cloud_function(String arg) { return sfa_cloud_call(arg.c_str()); }
// Capability words: "save" when the tree's core-communication-lib takes SaveBegin
// (flasher_additions; the SCons plugin defines SFA_SAVE_BEGIN): the server may then send
// files over the air. Never empty: the library sends an empty string variable as a bare
// CoAP payload marker, a malformed message.
#ifdef SFA_SAVE_BEGIN
static char sfa_caps[] = "agent save";
#else
static char sfa_caps[] = "agent";
#endif
#endif

void sfa_core_begin(void)
{
    Serial.begin(9600);
    sfa_agent_begin();
#ifndef SFA_NO_CLOUD
    Spark.function(SFA_CLOUD_FUNCTION, sfa_cloud_function);
    Spark.variable(SFA_CLOUD_RESULT, sfa_cloud_text(), STRING);
    Spark.variable(SFA_CLOUD_CAPS, sfa_caps, STRING);
#endif
}

void sfa_core_poll(void)
{
    // Work while there is work, but give the system loop (cloud, Wi-Fi) a turn every 20 ms;
    // a transfer's timeouts are seconds, and the cloud function answers "busy" meanwhile.
    uint32_t start = millis();
    while (sfa_agent_poll() && millis() - start < 20u) {
    }
}

// `scons AGENT=1` links with -Wl,--wrap=setup -Wl,--wrap=loop (C linkage in spark_utilities.h).
extern "C" {
void __real_setup(void) __attribute__((weak));
void __real_loop(void) __attribute__((weak));
void __wrap_setup(void);
void __wrap_loop(void);

void __wrap_setup(void)
{
    sfa_core_begin();
    if (__real_setup) {
        __real_setup();
    }
}

void __wrap_loop(void)
{
    sfa_core_poll();
    if (__real_loop) {
        __real_loop();
    }
}
}
