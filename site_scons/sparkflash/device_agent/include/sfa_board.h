/* The Spark Core's memory map as the agent needs it. Mirrors
 * site_scons/sparkflash/boards/spark-core.yaml (tests/agent checks that they agree). */
#ifndef SFA_BOARD_H
#define SFA_BOARD_H

#define SFA_INTERNAL_BASE 0x08000000u
#define SFA_INTERNAL_SIZE 0x00020000u
#define SFA_EXTERNAL_BASE 0x00000000u
#define SFA_EXTERNAL_SIZE 0x00200000u
#define SFA_SECTOR_SIZE 0x1000u

#define SFA_SCRATCH_START 0x000000u        /* sector 0: the agent's merge buffer */
#define SFA_SCRATCH_SIZE 0x1000u
#define SFA_KEYS_START 0x001000u           /* server_key, server_address, device_key */
#define SFA_KEYS_SIZE 0x2000u
#define SFA_RECORD_START 0x003000u         /* release_record */
#define SFA_RECORD_SIZE 0x1000u
#define SFA_FACTORY_START 0x020000u
#define SFA_OTA_START 0x060000u
#define SFA_OTA_SIZE 0x20000u
#define SFA_USER_START 0x080000u
#define SFA_USER_SIZE 0x180000u

#define SFA_FIRMWARE_ADDRESS 0x08005000u
#define SFA_FIRMWARE_MAX 0x1b000u          /* the bootloader copies this much */

#endif
