/* Host harness for the Spark Core's real serial receivers (ours).
 *
 * Provides what the peer code expects of the Core: USB CDC serial (the device end of a
 * pty, fd 3), an SST25VF016B on SPI (a command-level chip model over a 2 MiB file with NOR
 * semantics and datasheet timing), system flags, delays and a reset. The peer sources
 * (YMODEM receiver, listening-mode key reader, serialSaveFile/serialFirmwareUpdate,
 * FLASH_Begin/Update/End, the sst25vf_spi.c driver) are compiled unchanged beside it.
 *
 * usage: harness MODE FLASH_FILE UID_HEX [ADDRESS]
 *   MODE listen    listening mode (WiFiCredentialsReader: keys w, i, f)
 *        save      an application whose loop() calls System.serialSaveFile(&Serial, ADDRESS)
 *        save2015  the same with the 2015 Ymodem.h receiver (address-range check)
 * env (all optional): HARNESS_FD (the pty master, default 3), HARNESS_BAUD (line model, 0 = pty speed), HARNESS_ERASE_US (sector
 * erase time), HARNESS_PROGRAM_US (per byte/word program), HARNESS_IDLE_NS (time that
 * 1024 empty Serial.available() polls cost; default 488281 so that the receivers'
 * 0x100000-poll timeout is 0.5 s as on a Core), HARNESS_DROP_ACK=N (the Nth ACK the device
 * sends is lost on the line), HARNESS_CORRUPT_AT=N (received byte N, from 0, arrives XOR 0xFF).
 * exit 42 = NVIC_SystemReset (the runner restarts us; FLAGS file says why).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spark_wiring_usbserial.h"
#include "wifi_credentials_reader.h"

#define FLASH_SIZE (2u * 1024u * 1024u)
#define SECTOR 4096u
#define RX_CAP 8192u
#define EXIT_RESET 42

extern "C" bool harness_ymodem2015(Stream *s, uint32_t address);

/* ---- their globals (hw_config.c, spark_wlan.cpp) ------------------------------------ */
uint16_t FLASH_OTA_Update_SysFlag = 0xFFFF;
uint16_t OTA_FLASHED_Status_SysFlag = 0xFFFF;
uint32_t External_Flash_Address = 0;
uint32_t External_Flash_Start_Address = 0;
uint16_t Flash_Update_Index = 0;
uint32_t EraseCounter = 0;
uint32_t NbrOfPage = 0;
volatile uint32_t TimingFlashUpdateTimeout = 0;
volatile uint8_t SPARK_FLASH_UPDATE = 0;
char harness_uid[12];
SPI_TypeDef harness_spi2;
RGBClass RGB;
SystemClass System;
USBSerial Serial;

/* ---- time --------------------------------------------------------------------------- */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static double env_num(const char *name, double dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? strtod(v, NULL) : dflt;
}

static const double t0 = now_s();
extern "C" unsigned long millis(void) { return (unsigned long)((now_s() - t0) * 1000.0); }
extern "C" void delay(unsigned long ms) { sleep_s((double)ms / 1000.0); }
extern "C" void Delay(uint32_t ms) { sleep_s((double)ms / 1000.0); }
extern "C" void LED_Toggle(int) {}
extern "C" void USB_Cable_Config(FunctionalState) {}

/* ---- system flags and reset --------------------------------------------------------- */
static const char *flags_path;

extern "C" void Save_SystemFlags(void) {
  FILE *f = fopen(flags_path, "w");
  if (f == NULL) return;
  fprintf(f, "FLASH_OTA_Update_SysFlag=%u\nOTA_FLASHED_Status_SysFlag=%u\n", FLASH_OTA_Update_SysFlag,
          OTA_FLASHED_Status_SysFlag);
  fclose(f);
}

extern "C" void BKP_WriteBackupRegister(uint16_t, uint16_t) {}

static uint8_t *flash;

extern "C" void NVIC_SystemReset(void) {
  msync(flash, FLASH_SIZE, MS_SYNC);
  _exit(EXIT_RESET);
}

/* ---- USB serial on the pty ---------------------------------------------------------- */
static int port_fd = 3;
static double baud, idle_s;
static uint8_t rx_buf[RX_CAP];
static double rx_at[RX_CAP];  /* when each byte has fully arrived under the line model */
static unsigned rx_head, rx_len, idle_polls;
static double rx_last, tx_free, idle_start;

static long corrupt_at = -1, rx_count;  /* line fault: byte N (from 0) received XOR 0xFF */

static void pull(void) {
  if (rx_len == RX_CAP) return;
  uint8_t tmp[RX_CAP];
  ssize_t n = read(port_fd, tmp, RX_CAP - rx_len);
  if (n <= 0) return;
  double t = now_s();
  for (ssize_t i = 0; i < n; i++) {
    unsigned at = (rx_head + rx_len) % RX_CAP;
    rx_buf[at] = rx_count++ == corrupt_at ? (uint8_t)(tmp[i] ^ 0xFF) : tmp[i];
    rx_last = baud > 0 ? (rx_last > t ? rx_last : t) + 10.0 / baud : t;
    rx_at[at] = rx_last;
    rx_len++;
  }
}

static unsigned visible(void) {
  if (baud <= 0) return rx_len;
  double t = now_s();
  unsigned n = 0;
  while (n < rx_len && rx_at[(rx_head + n) % RX_CAP] <= t) n++;
  return n;
}

int USBSerial::available(void) {
  /* The port is read (a syscall) on the first empty poll and then once per 1024: a Core's
   * poll is a register read, and a million read() calls would cost seconds here. */
  unsigned n = visible();
  if (n == 0 && idle_polls == 0) {
    pull();
    n = visible();
  }
  if (n > 0) {
    idle_polls = 0;
    return (int)n;
  }
  /* A Core spins on available(): each empty poll costs idle_s / 1024 of wall time
   * (kept on a schedule from the first empty poll, so scheduler delays do not add up). */
  if (idle_polls++ == 0) idle_start = now_s();
  if (idle_polls % 1024 == 0) {
    double wait = idle_start + (double)(idle_polls / 1024) * idle_s - now_s();
    if (rx_len > 0) {
      /* Bytes on the way (line model): wake when up to 64 of them have arrived, so the
       * sleep's own overhead is paid once per 64 bytes, not per byte. */
      unsigned k = rx_len < 64 ? rx_len : 64;
      sleep_s(rx_at[(rx_head + k - 1) % RX_CAP] - now_s());
    } else if (wait > 0) {
      struct pollfd p = {port_fd, POLLIN, 0};
      struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
      ppoll(&p, 1, &ts, NULL);
    }
    pull();
  }
  return 0;
}

int USBSerial::read(void) {
  if (available() <= 0) return -1;
  uint8_t c = rx_buf[rx_head];
  rx_head = (rx_head + 1) % RX_CAP;
  rx_len--;
  return c;
}

static long drop_ack = -1, acks_written;  /* line fault: the Nth ACK the device sends is lost */

size_t USBSerial::write(uint8_t c) {
  if (c == 0x06 && ++acks_written == drop_ack) return 1;
  if (baud > 0) {
    double t = now_s();
    tx_free = (tx_free > t ? tx_free : t) + 10.0 / baud;
    if (tx_free - t > 0.002) sleep_s(tx_free - t);
  }
  double give_up = now_s() + 2.0;
  while (::write(port_fd, &c, 1) != 1) {
    if (errno != EAGAIN && errno != EINTR) return 0;
    if (now_s() > give_up) return 0; /* nobody reads: a CDC write is dropped */
    struct pollfd p = {port_fd, POLLOUT, 0};
    poll(&p, 1, 10);
  }
  return 1;
}

size_t Stream::print(const char *s) {
  size_t n = 0;
  while (*s != '\0') n += write((uint8_t)*s++);
  return n;
}

size_t Stream::print(int32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "%ld", (long)v);
  return print(buf);
}

size_t Stream::println(const char *s) { return print(s) + print("\r\n"); }

/* ---- SST25VF016B on SPI: command-level model ---------------------------------------- */
static double erase_s, program_s;
static struct {
  bool selected, wel, aai;
  int cmd;        /* -1: none yet */
  unsigned n;     /* bytes after the command byte */
  uint32_t addr;
  uint8_t data[2];
  uint8_t status_bp;
  double busy_until;
  uint16_t out;
} chip;

static bool busy(void) { return now_s() < chip.busy_until; }

static void program_byte(uint32_t a, uint8_t v) { flash[a % FLASH_SIZE] &= v; }

void sFLASH_SPI_Init(void) {}
void sFLASH_SPI_DeInit(void) {}

void sFLASH_CS_LOW(void) {
  chip.selected = true;
  chip.cmd = -1;
  chip.n = 0;
}

void sFLASH_CS_HIGH(void) {
  if (!chip.selected) return;
  chip.selected = false;
  if (busy()) return; /* the chip ignores instructions while busy */
  switch (chip.cmd) {
    case 0x06: chip.wel = true; break;
    case 0x04: chip.wel = false; chip.aai = false; break;
    case 0x01: if (chip.n >= 1) chip.status_bp = chip.data[0]; break;
    case 0x02: /* byte program */
      if (chip.wel && chip.n >= 4) {
        program_byte(chip.addr, chip.data[0]);
        chip.busy_until = now_s() + program_s;
      }
      chip.wel = false;
      break;
    case 0xAD: /* auto address increment word program */
      if (chip.wel && ((!chip.aai && chip.n >= 5) || (chip.aai && chip.n >= 2))) {
        program_byte(chip.addr, chip.data[0]);
        program_byte(chip.addr + 1, chip.data[1]);
        chip.addr += 2;
        chip.aai = true;
        chip.busy_until = now_s() + program_s;
      }
      break;
    case 0x20: /* 4 KiB sector erase: the sector containing the address */
      if (chip.wel && chip.n >= 3) {
        memset(flash + (chip.addr % FLASH_SIZE) / SECTOR * SECTOR, 0xFF, SECTOR);
        chip.busy_until = now_s() + erase_s;
      }
      chip.wel = false;
      break;
    case 0xC7:
      if (chip.wel) {
        memset(flash, 0xFF, FLASH_SIZE);
        chip.busy_until = now_s() + erase_s * 2.0;
      }
      chip.wel = false;
      break;
    default: break;
  }
}

static uint8_t exchange(uint8_t in) {
  if (!chip.selected) return 0xFF;
  if (chip.cmd < 0) {
    chip.cmd = in;
    return 0xFF;
  }
  unsigned i = chip.n++;
  switch (chip.cmd) {
    case 0x05: { /* read status: WIP bit 0, WEL bit 1, AAI bit 6 */
      if (busy()) { /* be kind to the host CPU during an erase; a 7 us program is spun out */
        double left = chip.busy_until - now_s();
        if (left > 0.001) sleep_s(0.0005);
      }
      return (uint8_t)((busy() ? 1 : 0) | (chip.wel ? 2 : 0) | (chip.aai ? 0x40 : 0) | (chip.status_bp & 0x3C));
    }
    case 0x9F: { static const uint8_t id[3] = {0xBF, 0x25, 0x41}; return i < 3 ? id[i] : 0xFF; }
    case 0x03:
      if (i < 3) {
        chip.addr = i == 0 ? in : ((chip.addr << 8) | in);
        return 0xFF;
      }
      return flash[chip.addr++ % FLASH_SIZE];
    case 0x02: case 0x20:
      if (i == 0) chip.addr = in;
      else if (i < 3) chip.addr = (chip.addr << 8 | in) & 0xFFFFFF;
      else if (i == 3) chip.data[0] = in;
      return 0xFF;
    case 0xAD:
      if (!chip.aai) {
        if (i == 0) chip.addr = in;
        else if (i < 3) chip.addr = (chip.addr << 8 | in) & 0xFFFFFF;
        else if (i < 5) chip.data[i - 3] = in;
      } else if (i < 2) {
        chip.data[i] = in;
      }
      return 0xFF;
    case 0x01:
      if (i < 2) chip.data[i] = in;
      return 0xFF;
    default: return 0xFF;
  }
}

FlagStatus SPI_I2S_GetFlagStatus(SPI_TypeDef *, uint16_t) { return SET; }
void SPI_I2S_SendData(SPI_TypeDef *, uint16_t data) { chip.out = exchange((uint8_t)data); }
uint16_t SPI_I2S_ReceiveData(SPI_TypeDef *) { return chip.out; }

/* ---- the device ----------------------------------------------------------------------- */
static void no_credentials(const char *, const char *, unsigned long) {}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s listen|save|save2015 FLASH_FILE UID_HEX [ADDRESS]\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  for (int i = 0; i < 12; i++) {
    int hi = hexval(argv[3][2 * i]), lo = hi < 0 ? -1 : hexval(argv[3][2 * i + 1]);
    if (hi < 0 || lo < 0) {
      fprintf(stderr, "UID must be 24 hex digits\n");
      return 2;
    }
    harness_uid[i] = (char)(hi << 4 | lo);
  }
  uint32_t address = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 0) : 0;
  static char flags_buf[4096];
  snprintf(flags_buf, sizeof flags_buf, "%s.flags", argv[2]);
  flags_path = flags_buf;
  baud = env_num("HARNESS_BAUD", 0);
  erase_s = env_num("HARNESS_ERASE_US", 0) * 1e-6;
  program_s = env_num("HARNESS_PROGRAM_US", 0) * 1e-6;
  idle_s = env_num("HARNESS_IDLE_NS", 488281) * 1e-9;
  drop_ack = (long)env_num("HARNESS_DROP_ACK", -1);
  corrupt_at = (long)env_num("HARNESS_CORRUPT_AT", -1);

  int fd = open(argv[2], O_RDWR);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size != (off_t)FLASH_SIZE) {
    fprintf(stderr, "%s: need a %u-byte flash image\n", argv[2], FLASH_SIZE);
    return 2;
  }
  flash = (uint8_t *)mmap(NULL, FLASH_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (flash == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  port_fd = (int)env_num("HARNESS_FD", 3);
  fcntl(port_fd, F_SETFL, fcntl(port_fd, F_GETFL) | O_NONBLOCK);
  sFLASH_Init();

  if (strcmp(mode, "listen") == 0) {
    WiFiCredentialsReader reader(no_credentials);
    for (;;) reader.read();
  } else if (strcmp(mode, "save") == 0) {
    for (;;) System.serialSaveFile(&Serial, address);
  } else if (strcmp(mode, "save2015") == 0) {
    for (;;) harness_ymodem2015(&Serial, address);
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
