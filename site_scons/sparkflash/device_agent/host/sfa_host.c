/* Host binding of the agent: USB serial = a pty behind a stable symlink, the SST25VF016B
 * and the internal flash = files with NOR semantics (erase to 0xFF, program 1 -> 0 only),
 * millis() = CLOCK_MONOTONIC, the bootloader's OTA install = a copy plus a new pty (the
 * port re-enumerates). The host closing the port (POLLHUP on the master) is the USB line
 * state dropping: the agent abandons a transfer.
 *
 *   sfa-agent-host --flash EXT.bin --internal INT.bin --link PATH [--port-file F] [--id HEX24]
 *   sfa-agent-host --flash EXT.bin --internal INT.bin --cloud ARG [--cloud ARG ...]
 *       (calls of the cloud function, e.g. "SUM 80000 100": per call a line with its
 *       return value, then the variable's text and an empty line)
 *
 * Env SFA_HOST_BAD_PROGRAM=N: the Nth external program call clears one extra bit (a weak
 * cell), to exercise read-back and retries. Env SFA_HOST_TRACE: log the link on stderr.
 * Env SFA_HOST_TIME_SCALE=K: millis() runs K times fast (tests of the receiver's timeouts). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sfa_agent.h"
#include "sfa_board.h"

static int master = -1, link_up = 0;
static int ext_fd = -1, int_fd = -1;
static const char *link_path, *port_file;
static char device_id[25] = "53ff6c065075535119511687";
static long bad_program = 0, programs = 0;
static volatile sig_atomic_t stopping = 0;
static int trace = 0;
static uint32_t time_scale = 1;

static void trace_bytes(const char *dir, const uint8_t *data, size_t n)
{
    if (!trace || !n) {
        return;
    }
    fprintf(stderr, "%u %s %zu:", (unsigned)sfa_hal_millis(), dir, n);
    for (size_t i = 0; i < n && i < 24; i++) {
        fprintf(stderr, " %02x", data[i]);
    }
    fprintf(stderr, "\n");
}

static void die(const char *what)
{
    fprintf(stderr, "sfa-agent-host: %s: %s\n", what, strerror(errno));
    exit(4);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* ---- files as NOR flash ---- */
static int open_flash(const char *path, off_t size)
{
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        die(path);
    }
    off_t have = lseek(fd, 0, SEEK_END);
    if (have < size) {
        uint8_t ff[4096];
        memset(ff, 0xff, sizeof ff);
        for (off_t at = have; at < size; at += (off_t)sizeof ff) {
            size_t n = (size_t)(size - at < (off_t)sizeof ff ? size - at : (off_t)sizeof ff);
            if (pwrite(fd, ff, n, at) != (ssize_t)n) {
                die(path);
            }
        }
    }
    return fd;
}

static void file_read(int fd, uint8_t *buf, uint32_t offset, uint32_t n)
{
    if (pread(fd, buf, n, offset) != (ssize_t)n) {
        die("flash read");
    }
}

static void file_program(int fd, const uint8_t *data, uint32_t offset, uint32_t n)
{
    uint8_t old[256];
    while (n) {
        uint32_t k = n < sizeof old ? n : (uint32_t)sizeof old;
        file_read(fd, old, offset, k);
        for (uint32_t i = 0; i < k; i++) {
            old[i] &= data[i];  /* NOR: a program only clears bits */
        }
        if (pwrite(fd, old, k, offset) != (ssize_t)k) {
            die("flash program");
        }
        data += k;
        offset += k;
        n -= k;
    }
}

static void file_erase(int fd, uint32_t offset, uint32_t n)
{
    uint8_t ff[4096];
    memset(ff, 0xff, sizeof ff);
    if (n > sizeof ff || pwrite(fd, ff, n, offset) != (ssize_t)n) {
        die("flash erase");
    }
}

/* ---- HAL ---- */
void sfa_hal_flash_erase_sector(uint32_t address)
{
    if (address < SFA_EXTERNAL_SIZE) {
        file_erase(ext_fd, address & ~(SFA_SECTOR_SIZE - 1u), SFA_SECTOR_SIZE);
    }
}

void sfa_hal_flash_write(const uint8_t *data, uint32_t address, uint32_t n)
{
    if (address >= SFA_EXTERNAL_SIZE || n > SFA_EXTERNAL_SIZE - address) {
        return;
    }
    file_program(ext_fd, data, address, n);
    if (bad_program && ++programs == bad_program) {
        for (uint32_t i = n / 2; i < n; i++) {
            if (data[i]) {  /* a weak cell: the lowest set bit of this byte sticks at 0 */
                uint8_t b = (uint8_t)(data[i] & (data[i] - 1u));
                file_program(ext_fd, &b, address + i, 1);
                fprintf(stderr, "sfa-agent-host: weak cell at 0x%06x\n", (unsigned)(address + i));
                break;
            }
        }
    }
}

void sfa_hal_flash_read(uint8_t *data, uint32_t address, uint32_t n)
{
    if (address >= SFA_EXTERNAL_SIZE || n > SFA_EXTERNAL_SIZE - address) {
        memset(data, 0xff, n);
        return;
    }
    file_read(ext_fd, data, address, n);
}

void sfa_hal_internal_read(uint8_t *data, uint32_t address, uint32_t n)
{
    file_read(int_fd, data, address - SFA_INTERNAL_BASE, n);
}

uint32_t sfa_hal_millis(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) * time_scale);
}

void sfa_hal_device_id(char out[24]) { memcpy(out, device_id, 24); }

int sfa_hal_serial_read(uint8_t *buf, size_t max)
{
    ssize_t n = read(master, buf, max);
    if (n > 0) {
        trace_bytes("rx", buf, (size_t)n);
    }
    return n > 0 ? (int)n : 0;
}

void sfa_hal_serial_write(const uint8_t *data, size_t n)
{
    uint32_t give_up = sfa_hal_millis() + 2000u * time_scale;
    trace_bytes("tx", data, n);
    while (n) {
        ssize_t k = write(master, data, n);
        if (k > 0) {
            data += k;
            n -= (size_t)k;
        } else if (k < 0 && errno != EAGAIN && errno != EINTR && errno != EIO) {
            die("pty write");
        } else if ((int32_t)(sfa_hal_millis() - give_up) > 0) {
            return;  /* nobody reads: like a USB CDC write, give up */
        } else {
            struct pollfd p = {master, POLLOUT, 0};
            poll(&p, 1, 10);
        }
    }
}

/* ---- the pty ---- */
static void open_port(void)
{
    master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        die("posix_openpt");
    }
    const char *name = ptsname(master);
    if (!name) {
        die("ptsname");
    }
    int slave = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    if (slave < 0 || tcgetattr(slave, &t)) {
        die(name);
    }
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    close(slave);  /* from now on POLLHUP tells whether a host holds the port */
    link_up = 0;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%ld", link_path, (long)getpid());
    unlink(tmp);
    if (symlink(name, tmp) || rename(tmp, link_path)) {
        die(link_path);
    }
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f) {
            die(port_file);
        }
        fprintf(f, "%s\n", link_path);
        fclose(f);
    }
    printf("PTY %s\n", name);
    fflush(stdout);
}

/* The bootloader's part of FLASH_End: back up the app, copy the OTA image, reboot. */
void sfa_hal_install_firmware(uint32_t size)
{
    (void)size;  /* the bootloader copies 0x1B000 bytes whatever the file size */
    static uint8_t app[SFA_FIRMWARE_MAX], image[SFA_FIRMWARE_MAX];
    uint32_t fw = SFA_FIRMWARE_ADDRESS - SFA_INTERNAL_BASE;
    file_read(int_fd, app, fw, SFA_FIRMWARE_MAX);
    for (uint32_t s = 0x40000u; s < 0x40000u + 0x20000u; s += SFA_SECTOR_SIZE) {
        file_erase(ext_fd, s, SFA_SECTOR_SIZE);
    }
    file_program(ext_fd, app, 0x40000u, SFA_FIRMWARE_MAX);
    file_read(ext_fd, image, SFA_OTA_START, SFA_FIRMWARE_MAX);
    for (uint32_t s = fw; s < fw + SFA_FIRMWARE_MAX; s += 0x400u) {
        file_erase(int_fd, s, 0x400u);
    }
    file_program(int_fd, image, fw, SFA_FIRMWARE_MAX);
    unlink(link_path);  /* the USB port goes away ... */
    close(master);
    struct timespec away = {0, 200 * 1000000L};
    nanosleep(&away, NULL);
    open_port();        /* ... and comes back after the reset */
    sfa_agent_begin();
}

static void usage(void)
{
    fprintf(stderr, "usage: sfa-agent-host --flash EXT.bin --internal INT.bin (--link PATH [--port-file F] [--id HEX24] | --cloud ARG ...)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *ext = NULL, *in = NULL, *cloud[8];
    int calls = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (!strcmp(argv[i], "--flash")) {
            ext = argv[++i];
        } else if (!strcmp(argv[i], "--internal")) {
            in = argv[++i];
        } else if (!strcmp(argv[i], "--link")) {
            link_path = argv[++i];
        } else if (!strcmp(argv[i], "--cloud")) {
            if (calls == 8) {
                usage();
            }
            cloud[calls++] = argv[++i];
        } else if (!strcmp(argv[i], "--port-file")) {
            port_file = argv[++i];
        } else if (!strcmp(argv[i], "--id")) {
            const char *id = argv[++i];
            if (strlen(id) != 24 || strspn(id, "0123456789abcdef") != 24) {
                usage();
            }
            memcpy(device_id, id, 25);
        } else {
            usage();
        }
    }
    if (!ext || !in || (!link_path && !calls)) {
        usage();
    }
    const char *bad = getenv("SFA_HOST_BAD_PROGRAM");
    bad_program = bad ? strtol(bad, NULL, 10) : 0;
    trace = getenv("SFA_HOST_TRACE") != NULL;
    const char *scale = getenv("SFA_HOST_TIME_SCALE");
    time_scale = scale ? (uint32_t)strtoul(scale, NULL, 10) : 1u;
    if (time_scale < 1u || time_scale > 1000u) {
        usage();
    }
    ext_fd = open_flash(ext, SFA_EXTERNAL_SIZE);
    int_fd = open_flash(in, SFA_INTERNAL_SIZE);
    if (calls) {
        sfa_agent_begin();
        for (int i = 0; i < calls; i++) {
            int rc = sfa_cloud_call(cloud[i]);
            printf("%d\n%s\n\n", rc, sfa_cloud_text());
        }
        return 0;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    open_port();
    sfa_agent_begin();
    while (!stopping) {
        struct pollfd p = {master, POLLIN, 0};
        int busy = sfa_agent_poll();
        int r = poll(&p, 1, busy ? 0 : 5);
        if (r < 0 && errno != EINTR) {
            die("poll");
        }
        int up = !(p.revents & POLLHUP);
        if (link_up != up && trace) {
            fprintf(stderr, "%u link %s\n", (unsigned)sfa_hal_millis(), up ? "up" : "down");
        }
        if (link_up && !up) {
            tcflush(master, TCOFLUSH);  /* replies to the host that left; input: a new host may already have written */
            sfa_agent_link_reset();
        }
        link_up = up;
        if (!up && !(p.revents & POLLIN)) {
            struct timespec nap = {0, 5 * 1000000L};
            nanosleep(&nap, NULL);
        }
    }
    unlink(link_path);
    return 0;
}
