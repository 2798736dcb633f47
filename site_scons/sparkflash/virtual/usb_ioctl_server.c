/* The usbdevfs ioctls of /dev/bus/usb/001/002 for umockdev's preload library, answered from the
 * virtual Core's DfuSe socket (virtual/usb_bridge.py starts it; built by virtual/usb_attach.py with gcc).
 *
 * Why C: umockdev's own ioctl handler (UMockdev.IoctlBase through GObject introspection) costs
 * ~0.8 ms per control transfer on an idle machine and 2-4 ms on a loaded one (GLib async I/O and
 * a Python signal handler for each of the 3 ioctls of a transfer, 6 socket round trips). Here a
 * transfer (SUBMITURB, REAPURBNDELAY, REAPURBNDELAY -> EAGAIN) is 3 round trips with the client,
 * one with the Core, no main loop, no allocation: the client's memory is read and written in place
 * (process_vm_readv/writev) where the kernel allows it, else through READ_MEM/WRITE_MEM.
 *
 * Wire protocol of libumockdev-preload (umockdev 0.17, src/libumockdev-preload.c remote_emulate):
 * the client sends {cmd, arg1, arg2} as three unsigned longs, cmd 1 = ioctl(request arg1, pointer
 * arg2), 7/8 = read/write; the server answers with any number of READ_MEM {5, addr, len} (the client
 * then sends len bytes of its memory) and WRITE_MEM {6, addr, len} + len bytes, then DONE {3, result,
 * errno}; result -100 means "not emulated, do the real call".
 *
 * Core socket framing (transports/dfu_socket.py): <BBHHH setup, OUT data; reply <BH result
 * (0 ACK, 1 STALL), length, IN data. One request in flight, as on EP0.
 *
 * Usage: usb_ioctl_server LISTEN_SOCKET CORE_SOCKET CONFIG_ATTR_FILE [--busy] [--fail-urbs N,M,...]
 *        [--socket-memory]
 * (for tests: the interface taken, bus errors on these control URBs, the client's memory only
 * through READ_MEM/WRITE_MEM as where the kernel refuses process_vm_readv)
 * Prints "ready\n" on stdout once listening; exits on SIGTERM or when its parent dies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define REQ_IOCTL 1
#define REQ_READ 7
#define REQ_WRITE 8
#define RES_DONE 3
#define RES_READ_MEM 5
#define RES_WRITE_MEM 6
#define UNHANDLED (-100)
#define MAX_CLIENTS 8
#define MAX_DONE 64
#define MAX_FAIL 64
#define MAX_TRANSFER (8 + 65535) /* setup + the largest wLength */
#define DEVNUM 2
#define USB_SPEED_FULL 2

struct msg { unsigned long cmd, arg1, arg2; };

struct client {
    int fd;
    pid_t pid;  /* the process that opened the device (SO_PEERCRED); 0 once its memory is not ours to reach */
    unsigned long done[MAX_DONE]; /* client addresses of completed URBs, reaped in order */
    unsigned head, count;
};

static const char *core_path, *config_attr;
static int core_fd = -1, busy, socket_memory;
static long fail_urbs[MAX_FAIL];
static int n_fail;
static long control_transfers;
static struct client clients[MAX_CLIENTS];
static volatile sig_atomic_t stopping;

static void on_term(int sig) { (void)sig; stopping = 1; }

static int send_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) errno = ECONNRESET;
        if (r <= 0) return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

/* -- the client's memory: read and written in place (process_vm_readv/writev, no round trip) where
 * the kernel lets us, else through the preload library (READ_MEM/WRITE_MEM, one round trip each) -- */
static int direct_io(struct client *c, unsigned long addr, void *buf, size_t n, int write) {
    if (c->pid <= 0) return -1;
    struct iovec local = {buf, n}, remote = {(void *)addr, n};
    ssize_t r = write ? process_vm_writev(c->pid, &local, 1, &remote, 1, 0)
                      : process_vm_readv(c->pid, &local, 1, &remote, 1, 0);
    if (r == (ssize_t)n) return 0;
    c->pid = 0;  /* not permitted here (ptrace rules) or a short transfer: the socket from now on */
    return -1;
}

static int read_mem(struct client *c, unsigned long addr, void *buf, size_t n) {
    if (direct_io(c, addr, buf, n, 0) == 0) return 0;
    struct msg m = {RES_READ_MEM, addr, n};
    return send_all(c->fd, &m, sizeof m) || recv_all(c->fd, buf, n) ? -1 : 0;
}

static int write_mem(struct client *c, unsigned long addr, const void *buf, size_t n) {
    if (direct_io(c, addr, (void *)buf, n, 1) == 0) return 0;
    struct msg m = {RES_WRITE_MEM, addr, n};
    return send_all(c->fd, &m, sizeof m) || send_all(c->fd, buf, n) ? -1 : 0;
}

static int done(int fd, long result, int err) {
    struct msg m = {RES_DONE, (unsigned long)result, (unsigned long)err};
    return send_all(fd, &m, sizeof m);
}

static int fail(int fd, int err) { return done(fd, -1, err); }

/* -- the Core ----------------------------------------------------------------------------------- */
static void core_close(void) {
    if (core_fd >= 0) close(core_fd);
    core_fd = -1;
}

static int core_connect(void) {
    if (core_fd >= 0) return 0;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int dir = -1;
    if (strlen(core_path) < sizeof a.sun_path) {
        strcpy(a.sun_path, core_path);
    } else {  /* deeper than sockaddr_un holds (pytest tmp dirs): through the opened parent directory */
        char d[4096], b[4096];
        snprintf(d, sizeof d, "%s", core_path), snprintf(b, sizeof b, "%s", core_path);
        dir = open(dirname(d), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) return -1;
        snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", dir, basename(b));
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        if (dir >= 0) close(dir);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int r = connect(s, (struct sockaddr *)&a, sizeof a), e = errno;
    if (dir >= 0) close(dir);
    if (r < 0) { close(s); errno = e; return -1; }
    core_fd = s;
    return 0;
}

/* One control transfer: 0 or -errno; IN data into `in` (at most `cap` bytes), its length in *got. */
static int core_control(const uint8_t *setup, const uint8_t *out, size_t out_len, uint8_t *in, size_t cap,
                        size_t *got) {
    static uint8_t frame[MAX_TRANSFER];
    int is_in = setup[0] & 0x80;
    size_t n = 8 + (is_in ? 0 : out_len);
    memcpy(frame, setup, 8);
    if (!is_in) memcpy(frame + 8, out, out_len);
    *got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint8_t reply[3];
        if (core_connect() == 0 && send_all(core_fd, frame, n) == 0 && recv_all(core_fd, reply, 3) == 0) {
            size_t len = (size_t)reply[1] | (size_t)reply[2] << 8;
            uint8_t sink[256];
            size_t keep = len < cap ? len : cap;
            if (keep && recv_all(core_fd, in, keep)) goto lost;
            for (size_t left = len - keep; left;) {  /* more than asked for: drop the rest */
                size_t k = left < sizeof sink ? left : sizeof sink;
                if (recv_all(core_fd, sink, k)) goto lost;
                left -= k;
            }
            if (reply[0]) return -EPIPE;  /* STALL */
            *got = keep;
            return 0;
        }
    lost:
        if (errno == EAGAIN || errno == EWOULDBLOCK) {  /* SO_RCVTIMEO: no answer in 5 s */
            core_close();
            return -ETIMEDOUT;
        }
        core_close();  /* the Core reset (leave) or restarted: one fresh connection, then give up */
    }
    return -EPROTO;
}

static int standard(uint8_t rt, uint8_t rq, uint16_t value, uint16_t index) {
    uint8_t setup[8] = {rt, rq, value & 0xFF, value >> 8, index & 0xFF, index >> 8, 0, 0};
    size_t got;
    return core_control(setup, NULL, 0, NULL, 0, &got);
}

/* -- ioctls ------------------------------------------------------------------------------------- */
static int is_failed_urb(long n) {
    for (int i = 0; i < n_fail; i++)
        if (fail_urbs[i] == n) return 1;
    return 0;
}

static int submit(struct client *c, unsigned long addr) {
    struct usbdevfs_urb urb;
    static uint8_t buf[MAX_TRANSFER];
    if (read_mem(c, addr, &urb, sizeof urb)) return -1;
    if (urb.type != USBDEVFS_URB_TYPE_CONTROL || urb.buffer_length < 8 || urb.buffer_length > MAX_TRANSFER)
        return fail(c->fd, EINVAL);  /* the Core has only EP0 */
    if (c->count == MAX_DONE) return fail(c->fd, ENOMEM);
    unsigned long buffer = (unsigned long)urb.buffer;
    size_t length = (size_t)urb.buffer_length;
    if (read_mem(c, buffer, buf, length)) return -1;  /* setup + OUT data at once */
    int is_in = buf[0] & 0x80;
    size_t got = 0;
    int status;
    control_transfers++;
    if (is_failed_urb(control_transfers))
        status = -EPROTO;  /* a CRC/bit-stuffing error on the bus: never reached the Core */
    else
        status = core_control(buf, buf + 8, length - 8, buf + 8, length - 8, &got);
    if (status == 0 && is_in && got && write_mem(c, buffer + 8, buf + 8, got)) return -1;
    urb.status = status;
    urb.actual_length = (int)(is_in ? got : (status == 0 ? length - 8 : 0));  /* setup excluded */
    if (write_mem(c, addr, &urb, sizeof urb)) return -1;
    c->done[(c->head + c->count++) % MAX_DONE] = addr;
    return done(c->fd, 0, 0);
}

static int reap(struct client *c, unsigned long addr) {
    if (!c->count) return fail(c->fd, EAGAIN);
    unsigned long urb = c->done[c->head];
    c->head = (c->head + 1) % MAX_DONE, c->count--;
    if (write_mem(c, addr, &urb, sizeof urb)) return -1;
    return done(c->fd, 0, 0);
}

static int set_configuration(struct client *c, unsigned long addr) {
    unsigned int value;
    if (read_mem(c, addr, &value, sizeof value)) return -1;
    FILE *f = fopen(config_attr, "w");  /* what libusb reads as the active configuration */
    if (f) {
        fputs(value == 1 ? "1" : "", f);
        fclose(f);
    }
    return done(c->fd, 0, 0);
}

static int ioctl_request(struct client *c, unsigned long request, unsigned long arg) {
    switch ((unsigned int)request) {
    case USBDEVFS_SUBMITURB:
        return submit(c, arg);
    case USBDEVFS_REAPURB:
    case USBDEVFS_REAPURBNDELAY:
        return reap(c, arg);
    case USBDEVFS_DISCARDURB:
        return fail(c->fd, EINVAL);  /* every URB completes at once: nothing left to cancel */
    case USBDEVFS_SETINTERFACE: {
        struct usbdevfs_setinterface si;
        if (read_mem(c, arg, &si, sizeof si)) return -1;
        int st = standard(0x01, 0x0B, (uint16_t)si.altsetting, (uint16_t)si.interface);
        return st ? fail(c->fd, -st) : done(c->fd, 0, 0);
    }
    case USBDEVFS_SETCONFIGURATION:
        return set_configuration(c, arg);
    case USBDEVFS_GETDRIVER:
    case USBDEVFS_IOCTL:
        return fail(c->fd, ENODATA);  /* no kernel driver bound: nothing to detach */
    case USBDEVFS_CONNECTINFO: {
        struct usbdevfs_connectinfo ci = {.devnum = DEVNUM, .slow = 0};
        return write_mem(c, arg, &ci, sizeof ci) ? -1 : done(c->fd, 0, 0);
    }
    case USBDEVFS_GET_CAPABILITIES: {
        uint32_t caps = 0;
        return write_mem(c, arg, &caps, sizeof caps) ? -1 : done(c->fd, 0, 0);
    }
    case USBDEVFS_GET_SPEED:
        return done(c->fd, USB_SPEED_FULL, 0);
    case USBDEVFS_CLAIMINTERFACE:
    case USBDEVFS_DISCONNECT_CLAIM:
        return busy ? fail(c->fd, EBUSY) : done(c->fd, 0, 0);
    case USBDEVFS_RELEASEINTERFACE:
    case USBDEVFS_RESET:
    case USBDEVFS_CLEAR_HALT:
        return done(c->fd, 0, 0);
    default:
        return fail(c->fd, ENOTTY);
    }
}

/* One message from a client: 0, or -1 when its connection is gone. */
static int serve(struct client *c) {
    struct msg m;
    if (recv_all(c->fd, &m, sizeof m)) return -1;
    if (m.cmd == REQ_IOCTL) return ioctl_request(c, m.arg1, m.arg2);
    if (m.cmd == REQ_READ || m.cmd == REQ_WRITE) return done(c->fd, UNHANDLED, 0);  /* the node's own read/write */
    return -1;
}

static int listen_on(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) { fprintf(stderr, "usb_ioctl_server: socket path too long: %s\n", path); return -1; }
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, MAX_CLIENTS)) {
        fprintf(stderr, "usb_ioctl_server: cannot listen on %s: %s\n", path, strerror(errno));
        return -1;
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: usb_ioctl_server LISTEN_SOCKET CORE_SOCKET CONFIG_ATTR_FILE [--busy] [--fail-urbs N,M] "
                        "[--socket-memory]\n");
        return 2;
    }
    core_path = argv[2], config_attr = argv[3];
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--socket-memory")) socket_memory = 1;
        else if (!strcmp(argv[i], "--fail-urbs") && i + 1 < argc) {
            for (char *p = argv[++i]; *p && n_fail < MAX_FAIL;) {
                char *end;
                long n = strtol(p, &end, 10);
                if (end == p) { fprintf(stderr, "usb_ioctl_server: bad --fail-urbs %s\n", argv[i]); return 2; }
                fail_urbs[n_fail++] = n;
                p = *end == ',' ? end + 1 : end;
            }
        } else {
            fprintf(stderr, "usb_ioctl_server: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int ls = listen_on(argv[1]);
    if (ls < 0) return 1;
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
    printf("ready\n");
    fflush(stdout);
    while (!stopping) {
        struct pollfd p[MAX_CLIENTS + 1];
        int idx[MAX_CLIENTS + 1], n = 0;
        p[n] = (struct pollfd){.fd = ls, .events = POLLIN}, idx[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) p[n] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN}, idx[n++] = i;
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 1; k < n; k++) {
            struct client *c = &clients[idx[k]];
            if (p[k].revents && serve(c)) {  /* the client closed the device (or died) */
                close(c->fd);
                c->fd = -1;
            }
        }
        if (p[0].revents & POLLIN) {
            int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; i < MAX_CLIENTS && fd >= 0; i++)
                if (clients[i].fd < 0) { slot = i; break; }
            if (slot < 0) {
                if (fd >= 0) close(fd);
                continue;
            }
            struct ucred cred;
            socklen_t len = sizeof cred;
            clients[slot] = (struct client){.fd = fd};
            if (!socket_memory && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) clients[slot].pid = cred.pid;
        }
    }
    unlink(argv[1]);
    core_close();
    return 0;
}
