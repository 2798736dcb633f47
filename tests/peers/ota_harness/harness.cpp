// Host harness that runs the REAL Spark Core device protocol code against our cloud server.
//
// Our code only: it supplies the callbacks the library needs (TCP socket, millis, CRC,
// the Core's external-flash storage behaviour) and the boot sequence of a Core (keys and
// server address read from the 2 MB flash image, the bootloader's copy of the OTA slot
// after an update, the "OTA flashed" Hello flag). Built against one of:
//   SF_DIALECT_CCL      core-communication-lib master (stock 0.3.x)
//   SF_DIALECT_CCL_SAVE core-communication-lib feature/flasher_additions (SaveBegin)
//   SF_DIALECT_OS       Device OS communication/ (legacy protocol, platform 0 = Core)
// The flash image is a file mapped MAP_SHARED, so a kill -9 keeps what was written, as
// on a real Core. Applications (e.g. the device agent) link strong sf_app_* symbols.
//
// usage: harness FLASH_IMAGE INTERNAL_IMAGE DEVICE_ID_HEX PORT [options]
//   --product N         product id in the Hello (Device OS only; 0.3.x sends its compile-time
//                       SPARK_PRODUCT_ID, 0xFFFF as built here)
//   --corrupt-chunk N   flip one data byte of the Nth chunk received (0-based): a CRC error
//   --stall-chunk N     before reading the Nth chunk, pretend nothing arrives for --stall-ms
//   --stall-ms MS       (default 3500)
//   --once              exit instead of reconnecting when the connection drops
// Log lines on stdout: "connected", "chunk I LEN", "begin ADDR LEN", "finish", "reboot".

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <new>

#include "spark_protocol.h"
#if defined(SF_DIALECT_OS)
#include "spark_protocol_functions.h"
#endif
#include "sf_app.h"

namespace {

const uint32_t FLASH_SIZE = 0x200000, SECTOR = 0x1000;
const uint32_t SERVER_KEY = 0x1000, SERVER_ADDR = 0x1180, DEVICE_KEY = 0x2000;
const uint32_t OTA_SLOT = 0x60000, OTA_SLOT_LEN = 0x20000, APP_OFFSET = 0x5000, APP_LEN = 0x1B000;
const uint32_t INTERNAL_SIZE = 0x20000;

uint8_t *flash, *internal;
uint8_t *flags_byte;  // one byte beside the image: the "OTA flashed" system flag
int sock = -1, port;
unsigned product = 0xFFFF;
long corrupt_chunk = -1, stall_chunk = -1, stall_ms = 3500, chunks_seen = 0;
bool once = false, reboot_pending = false;
char device_id[12];
char **self_argv;

// external-flash storage state, as core-common-lib's FLASH_Begin/FLASH_Update keep it
uint32_t ext_start, ext_addr;
uint16_t update_index;
int update_kind;  // 0 none, 1 firmware, 2 file (SPARK_FLASH_UPDATE)

void logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

uint8_t *map_file(const char *path, uint32_t size, uint8_t fill) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { perror(path); exit(2); }
    struct stat st;
    fstat(fd, &st);
    bool fresh = st.st_size == 0;
    if (ftruncate(fd, size) != 0) { perror("ftruncate"); exit(2); }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    if (fresh) memset(p, fill, size);
    return static_cast<uint8_t *>(p);
}

// NOR flash: erase sets a sector to FF, programming can only clear bits.
void erase_sector(uint32_t addr) {
    addr -= addr % SECTOR;
    if (addr < FLASH_SIZE) memset(flash + addr, 0xFF, SECTOR);
}
void program(uint32_t addr, const uint8_t *buf, uint32_t len) {
    for (uint32_t i = 0; i < len && addr + i < FLASH_SIZE; i++) flash[addr + i] &= buf[i];
}
void flash_begin(uint32_t addr, uint32_t size) {
    *flags_byte = 0;
    update_index = 0;
    ext_start = ext_addr = addr;
    for (uint32_t n = 0; n < (size + SECTOR - 1) / SECTOR; n++) erase_sector(addr + n * SECTOR);
}
[[maybe_unused]] uint16_t flash_update(const uint8_t *buf, uint32_t len) {
    program(ext_addr, buf, len);
    if (ext_addr + len <= FLASH_SIZE && memcmp(flash + ext_addr, buf, len) == 0) {
        ext_addr += len;
        update_index++;
    } else {
        ext_addr -= ext_addr % SECTOR;
        erase_sector(ext_addr);
        update_index = (uint16_t)((ext_addr - ext_start) / len);
    }
    return update_index;
}
// What the bootloader does after FLASH_End's reset: copy the slot into the application.
void reset_into_bootloader() {
    memcpy(internal + APP_OFFSET, flash + OTA_SLOT, APP_LEN);
    *flags_byte = 1;
    msync(flash, FLASH_SIZE, MS_SYNC);
    msync(internal, INTERNAL_SIZE, MS_SYNC);
    logf("reboot");
    if (sock >= 0) close(sock);
    execv("/proc/self/exe", self_argv);
    perror("execv");
    exit(4);
}

// -- transport -------------------------------------------------------------------------
system_tick_t now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (system_tick_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}
int tcp_send(const unsigned char *buf, int len) {
    ssize_t n = send(sock, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    return (int)n;
}
system_tick_t stall_until;
int tcp_receive(unsigned char *buf, int len) {
    if (stall_until && (int32_t)(now_ms() - stall_until) < 0) { usleep(10000); return 0; }
    // idle: wait up to 10 ms for data (returns at once when it comes), so 100 devices on a
    // 2-core host do not spend the CPU polling
    struct pollfd p = {sock, POLLIN, 0};
    int r = poll(&p, 1, 10);
    if (r < 0) return -1;
    if (r == 0) return 0;
    if (len == 2 && stall_chunk >= 0 && !stall_until) {
        // peek the next frame: a chunk is the only server message this large
        unsigned char hdr[2];
        if (recv(sock, hdr, 2, MSG_PEEK | MSG_WAITALL) == 2 && ((hdr[0] << 8) | hdr[1]) > 256 &&
            chunks_seen == stall_chunk) {
            stall_until = now_ms() + stall_ms;
            logf("stall %ld", stall_ms);
            return 0;
        }
    }
    ssize_t n = recv(sock, buf, len, MSG_WAITALL);
    if (n <= 0) return -1;
    if (len > 256) {  // a chunk's ciphertext: count it, maybe corrupt a byte of block 3 (data)
        if (chunks_seen == corrupt_chunk) buf[40] ^= 0x5A;
        chunks_seen++;
    }
    return (int)n;
}
bool tcp_connect() {
    const uint8_t *a = flash + SERVER_ADDR;
    if (a[0] != 0x00) { logf("error: server address at 0x1180 is not an IPv4 TLV (type %02x)", a[0]); return false; }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    memcpy(&sa.sin_addr, a + 2, 4);
    sock = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(sock, (struct sockaddr *)&sa, sizeof sa) != 0) { close(sock); sock = -1; return false; }
    return true;
}
unsigned long crc_of(const unsigned char *buf, unsigned long len) { return crc32(0L, buf, (uInt)len); }

// -- application descriptor (functions, variables) ------------------------------------
bool was_flashed() { return *flags_byte == 1; }
void status_sent() { *flags_byte = 0; }

#if !defined(SF_DIALECT_OS)
// core-firmware 0.3.x / flasher_additions storage callbacks (spark_utilities.cpp)
void prepare_firmware() { update_kind = 1; flash_begin(OTA_SLOT, OTA_SLOT_LEN); logf("begin %#x %u", OTA_SLOT, OTA_SLOT_LEN); }
#if defined(SF_DIALECT_CCL_SAVE)
void prepare_file(unsigned int addr, unsigned int size) { update_kind = 2; flash_begin(addr, size); logf("begin %#x %u", addr, size); }
#endif
void finish_update() {
    logf("finish");
    if (update_kind == 2) { update_kind = 0; return; }  // a file: no reset
    update_kind = 0;
    reboot_pending = true;  // FLASH_End resets the MCU at once
}
unsigned short save_chunk(unsigned char *buf, unsigned long len) { logf("chunk %u %lu", update_index, len); return flash_update(buf, (uint32_t)len); }
void signal_noop(bool) {}
void ccl_set_time(time_t) {}
unsigned long ccl_crc(unsigned char *buf, unsigned long len) { return crc_of(buf, len); }
int num_functions() { return sf_app_num_functions(); }
void copy_function_key(char *dst, int i) { strncpy(dst, sf_app_function_key(i), 12); }
int call_function(const char *key, const char *arg) { return sf_app_call_function(key, arg); }
int num_variables() { return sf_app_num_variables(); }
void copy_variable_key(char *dst, int i) { strncpy(dst, sf_app_variable_key(i), 12); }
SparkReturnType::Enum variable_type(const char *key) { return (SparkReturnType::Enum)sf_app_variable_type(key); }
void *get_variable(const char *key) { return const_cast<void *>(sf_app_get_variable(key)); }

alignas(SparkProtocol) unsigned char proto_storage[sizeof(SparkProtocol)];

bool session() {
    SparkProtocol *p = new (proto_storage) SparkProtocol();
    SparkKeys keys;
    keys.core_private = flash + DEVICE_KEY;
    keys.server_public = flash + SERVER_KEY;
    SparkCallbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.send = tcp_send;
    cb.receive = tcp_receive;
#if defined(SF_DIALECT_CCL_SAVE)
    cb.prepare_to_save_file = prepare_file;
#endif
    cb.prepare_for_firmware_update = prepare_firmware;
    cb.finish_firmware_update = finish_update;
    cb.calculate_crc = ccl_crc;
    cb.save_firmware_chunk = save_chunk;
    cb.signal = signal_noop;
    cb.millis = now_ms;
    cb.set_time = ccl_set_time;
    SparkDescriptor d;
    d.num_functions = num_functions;
    d.copy_function_key = copy_function_key;
    d.call_function = call_function;
    d.num_variables = num_variables;
    d.copy_variable_key = copy_variable_key;
    d.variable_type = variable_type;
    d.get_variable = get_variable;
    d.was_ota_upgrade_successful = was_flashed;
    d.ota_upgrade_status_sent = status_sent;
    p->init(device_id, keys, cb, d);
    int err = p->handshake();
    if (err) { logf("handshake failed %d", err); return false; }
    logf("connected");
    while (p->event_loop()) {
        if (reboot_pending) reset_into_bootloader();
    }
    if (reboot_pending) reset_into_bootloader();
    return true;
}
#else
// Device OS system_update.cpp + the Core HAL (ota_flash_hal.c): firmware goes to the OTA
// slot; any other store is erased (HAL_FLASH_Begin) and its chunks are discarded.
using FileTransfer::Descriptor;
int os_prepare(Descriptor &file, uint32_t flags, void *) {
    if (file.store == FileTransfer::Store::FIRMWARE) {
        file.file_address = OTA_SLOT + file.chunk_address;
        if (file.chunk_size == 0) { file.chunk_size = 512; file.file_length = APP_LEN; }
    }
    if (!(flags & 1)) {
        update_kind = file.store == FileTransfer::Store::FIRMWARE ? 1 : 2;
        flash_begin(file.file_address, file.file_length);
        logf("begin %#x %u store %d", file.file_address, file.file_length, (int)file.store);
    }
    return 0;
}
int os_save(Descriptor &file, const unsigned char *chunk, void *) {
    logf("chunk %u %u", (file.chunk_address - file.file_address) / (file.chunk_size ? file.chunk_size : 1), file.chunk_size);
    if (file.store != FileTransfer::Store::FIRMWARE) return -1;
    program(file.chunk_address, chunk, file.chunk_size);
    return 0;
}
int os_finish(Descriptor &file, uint32_t flags, void *) {
    logf("finish %u", flags);
    update_kind = 0;
    if ((flags & 1) && file.store == FileTransfer::Store::FIRMWARE) reboot_pending = true;
    return 0;
}
int os_send(const unsigned char *buf, uint32_t len, void *) { return tcp_send(buf, (int)len); }
int os_receive(unsigned char *buf, uint32_t len, void *) { return tcp_receive(buf, (int)len); }
uint32_t os_crc(const unsigned char *buf, uint32_t len) { return (uint32_t)crc_of(buf, len); }
void os_signal(bool, unsigned int, void *) {}
void os_set_time(time_t, unsigned int, void *) {}
int os_call(const char *key, const char *arg, SparkDescriptor::FunctionResultCallback callback, void *) {
    int r = sf_app_call_function(key, arg);
    callback((const void *)(long)r, SparkReturnType::INT);
    return 0;
}
SparkReturnType::Enum os_vtype(const char *key) { return (SparkReturnType::Enum)sf_app_variable_type(key); }
// system_update.cpp's system_info: platform id and modules (here: none)
bool os_sysinfo(appender_fn append, void *a, void *) {
    static const char info[] = "\"p\":0,\"m\":[]";
    return append(a, (const uint8_t *)info, sizeof info - 1);
}

SparkProtocol proto;

bool session() {
    SparkProtocol *p = new (&proto) SparkProtocol();
    SparkKeys keys;
    memset(&keys, 0, sizeof keys);
    keys.size = sizeof keys;
    keys.core_private = flash + DEVICE_KEY;
    keys.server_public = flash + SERVER_KEY;
    SparkCallbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.size = sizeof cb;
    cb.protocolFactory = PROTOCOL_LIGHTSSL;
    cb.send = os_send;
    cb.receive = os_receive;
    cb.prepare_for_firmware_update = os_prepare;
    cb.save_firmware_chunk = os_save;
    cb.finish_firmware_update = os_finish;
    cb.calculate_crc = os_crc;
    cb.signal = os_signal;
    cb.millis = now_ms;
    cb.set_time = os_set_time;
    SparkDescriptor d;
    memset(&d, 0, sizeof d);
    d.size = sizeof d;
    d.num_functions = sf_app_num_functions;
    d.get_function_key = sf_app_function_key;
    d.call_function = os_call;
    d.num_variables = sf_app_num_variables;
    d.get_variable_key = sf_app_variable_key;
    d.variable_type = os_vtype;
    d.get_variable = sf_app_get_variable;
    d.was_ota_upgrade_successful = was_flashed;
    d.ota_upgrade_status_sent = status_sent;
    d.append_system_info = os_sysinfo;
    p->init(device_id, keys, cb, d);
    p->set_product_id((product_id_t)product);
    int err = p->handshake();
    if (err) { logf("handshake failed %d", err); return false; }
    logf("connected");
    CoAPMessageType::Enum msg;
    while (p->event_loop(msg)) {
        if (reboot_pending) reset_into_bootloader();
    }
    if (reboot_pending) reset_into_bootloader();
    return true;
}
#endif

int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

}  // namespace

// Default application: no functions, no variables (a strong definition replaces each).
extern "C" {
__attribute__((weak)) void sf_app_init(uint8_t *, uint32_t) {}
__attribute__((weak)) void sf_app_device(const char *, uint8_t *, uint32_t) {}
__attribute__((weak)) int sf_app_num_functions(void) { return 0; }
__attribute__((weak)) const char *sf_app_function_key(int) { return ""; }
__attribute__((weak)) int sf_app_call_function(const char *, const char *) { return -1; }
__attribute__((weak)) int sf_app_num_variables(void) { return 0; }
__attribute__((weak)) const char *sf_app_variable_key(int) { return ""; }
__attribute__((weak)) int sf_app_variable_type(const char *) { return 2; }
__attribute__((weak)) const void *sf_app_get_variable(const char *) { static int zero; return &zero; }
}

int main(int argc, char **argv) {
    if (argc < 5 || strlen(argv[3]) != 24) {
        fprintf(stderr, "usage: %s FLASH_IMAGE INTERNAL_IMAGE DEVICE_ID_HEX PORT [options]\n", argv[0]);
        return 2;
    }
    self_argv = argv;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    flash = map_file(argv[1], FLASH_SIZE, 0xFF);
    internal = map_file(argv[2], INTERNAL_SIZE + 1, 0xFF);
    flags_byte = internal + INTERNAL_SIZE;
    if (*flags_byte == 0xFF) *flags_byte = 0;
    for (int i = 0; i < 12; i++) device_id[i] = (char)(hexval(argv[3][2 * i]) << 4 | hexval(argv[3][2 * i + 1]));
    port = atoi(argv[4]);
    for (int i = 5; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(o, "--product")) { product = (unsigned)strtoul(v, NULL, 0); i++; }
        else if (!strcmp(o, "--corrupt-chunk")) { corrupt_chunk = strtol(v, NULL, 0); i++; }
        else if (!strcmp(o, "--stall-chunk")) { stall_chunk = strtol(v, NULL, 0); i++; }
        else if (!strcmp(o, "--stall-ms")) { stall_ms = strtol(v, NULL, 0); i++; }
        else if (!strcmp(o, "--once")) once = true;
        else { fprintf(stderr, "unknown option %s\n", o); return 2; }
    }
    if (getenv("SF_HARNESS_REBOOTED")) corrupt_chunk = stall_chunk = -1;  // one-shot faults stay one-shot
    setenv("SF_HARNESS_REBOOTED", "1", 1);
    sf_app_init(flash, FLASH_SIZE);
    sf_app_device(argv[3], internal, INTERNAL_SIZE);
    for (;;) {
        if (tcp_connect()) {
            session();
            close(sock);
            sock = -1;
            logf("disconnected");
            if (once) return 4;
        }
        usleep(200 * 1000);
    }
}
