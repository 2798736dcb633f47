/* sparkflash device agent: the serial line commands of docs/serial-protocol.md and
 * docs/device-agent.md on a Core application's USB serial port, polled from loop().
 *
 *   setup(): sfa_agent_begin();      loop(): sfa_agent_poll();
 *
 * The agent owns no hardware: a binding (core/ for a Spark Core, host/ for the host
 * build) implements the sfa_hal_* functions below. No heap; all state is one static
 * buffer in one struct (about 1.3 KiB); every failure is an ERR code on the wire. */
#ifndef SFA_AGENT_H
#define SFA_AGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SFA_PROTOCOL_VERSION 1
#define SFA_MAX_LINE 160  /* characters of a command line, CR/LF not counted */
#define SFA_NAME_MAX 32   /* release record: name and version, each */

/* ERR codes of the wire protocol. */
enum sfa_err {
    SFA_OK = 0,
    SFA_ERR_SYNTAX = 1,
    SFA_ERR_RANGE = 2,
    SFA_ERR_FLASH = 3,
    SFA_ERR_TRANSFER = 4,
    SFA_ERR_SIZE = 5,
};

/* ---- what the binding provides ---- */
int sfa_hal_serial_read(uint8_t *buf, size_t max);       /* bytes available now (0 if none) */
void sfa_hal_serial_write(const uint8_t *data, size_t n);
uint32_t sfa_hal_millis(void);
void sfa_hal_device_id(char out[24]);                    /* 24 lower-case hex digits */
/* External flash, the shape of core-common-lib's sFLASH_* (sst25vf_spi.h). */
void sfa_hal_flash_erase_sector(uint32_t address);
void sfa_hal_flash_write(const uint8_t *data, uint32_t address, uint32_t n);
void sfa_hal_flash_read(uint8_t *data, uint32_t address, uint32_t n);
/* Internal flash (memory-mapped on the Core). */
void sfa_hal_internal_read(uint8_t *data, uint32_t address, uint32_t n);
/* The image of `size` bytes is in the OTA slot: flag it and reset (FLASH_End). On the Core
 * this does not return; the host build installs it and re-enumerates its port. */
void sfa_hal_install_firmware(uint32_t size);

/* ---- the agent ---- */
void sfa_agent_begin(void);
/* Do a bounded amount of work; returns nonzero while a command is still running. */
int sfa_agent_poll(void);
/* The host closed the port (USB CDC line state dropped): abandon a transfer, forget input. */
void sfa_agent_link_reset(void);
/* Feed bytes as if they came from the serial port (poll uses it; harnesses too). */
void sfa_agent_feed(const uint8_t *data, size_t n);

/* ---- the cloud function's text (also used by the OTA binding) ---- */

#define SFA_CLOUD_VAR_MAX 622      /* a string variable's limit on a Core */
#define SFA_CLOUD_FUNCTION "sfdigest" /* Spark.function: the keys docs/ota.md names */
#define SFA_CLOUD_RESULT "sfresult"   /* Spark.variable (STRING): sfa_cloud_text() */
#define SFA_CLOUD_CAPS "sfcaps"       /* Spark.variable (STRING): "save" with SaveBegin */
/* The cloud function: its argument (< 64 chars) is one line command (ID, SUM, SUMS, REC,
 * REC SET; not SAVE) whose serial reply, without CR LF, becomes the variable's text. An
 * argument starting with '+' is kept and prefixed to the next one (a command longer than
 * one argument); its text is "OK". Returns 0 or the reply's ERR code (4: a serial
 * transfer runs). The text shares the agent's transfer buffer: a later serial SAVE, `f`,
 * SUM or SUMS turns it into "ERR 4 busy" and drops a gathered prefix. */
int sfa_cloud_call(const char *arg);
char *sfa_cloud_text(void);

#ifdef __cplusplus
}
#endif

#endif
