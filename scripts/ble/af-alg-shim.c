/*
 * af-alg-shim: LD_PRELOAD library that lets BlueZ's `btvirt -s` create LE controllers on a
 * kernel without the AF_ALG crypto socket family (CONFIG_CRYPTO_USER_API_SKCIPHER off).
 *
 * btvirt's emulated controller (emulator/btdev.c → bt_crypto_new()) opens
 * socket(AF_ALG, …) and bind()s it to "ecb(aes)" / "cmac(aes)" when each controller is
 * created, and drops the controller if that fails (EAFNOSUPPORT). This library:
 *
 *   socket(AF_ALG, …)          → a dummy fd opened on /dev/null (remembered in a table)
 *   bind(dummy, …)             → 0
 *   setsockopt(dummy, …)       → -1 / ENOPROTOOPT   (so an actual crypto operation fails
 *   accept/accept4(dummy, …)   → -1 / EOPNOTSUPP     cleanly instead of reading /dev/null)
 *   close(dummy)               → forgets the fd, then closes it
 *   everything else            → the real libc function (dlsym(RTLD_NEXT, …))
 *
 * Consequence: LE pairing / encryption / LE Encrypt on the emulated controller do not work.
 * PilePass does not use them (the protocol encrypts at the application layer).
 *
 * Optional environment:
 *   AF_ALG_SHIM_PARENT_PID=<pid>  the process dies with SIGTERM when its parent exits
 *                                 (prctl PR_SET_PDEATHSIG), so a crashed test run leaves
 *                                 no btvirt behind. Ignored if the parent is not that pid.
 *   AF_ALG_SHIM_DEBUG=1           log each faked call on stderr.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -o af-alg-shim.so af-alg-shim.c -ldl
 * (scripts/virtual-ble/btvirt.ts builds it on demand into .cache/ble/af-alg-shim.so).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif

#define MAX_TRACKED_FD 4096

/* 1 where the fd is one of our dummies. btvirt is single-threaded; atomics keep it sane anyway. */
static unsigned char dummy_fds[MAX_TRACKED_FD];
static int debug_enabled = -1;

static int shim_debug(void) {
  if (debug_enabled < 0) {
    const char *v = getenv("AF_ALG_SHIM_DEBUG");
    debug_enabled = (v != NULL && v[0] != '\0' && v[0] != '0') ? 1 : 0;
  }
  return debug_enabled;
}

static int is_dummy(int fd) {
  return fd >= 0 && fd < MAX_TRACKED_FD && __atomic_load_n(&dummy_fds[fd], __ATOMIC_SEQ_CST) != 0;
}

static void *real(const char *name) {
  void *fn = dlsym(RTLD_NEXT, name);
  if (fn == NULL) {
    fprintf(stderr, "af-alg-shim: dlsym(%s) failed: %s\n", name, dlerror());
    abort();
  }
  return fn;
}

__attribute__((constructor)) static void shim_init(void) {
  const char *parent = getenv("AF_ALG_SHIM_PARENT_PID");
  if (parent != NULL && parent[0] != '\0') {
    long want = strtol(parent, NULL, 10);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* The parent may have died between fork and prctl: then we are orphaned already. */
    if (want > 0 && getppid() != (pid_t)want) raise(SIGTERM);
  }
}

int socket(int domain, int type, int protocol) {
  static int (*real_socket)(int, int, int);
  if (real_socket == NULL) real_socket = (int (*)(int, int, int))real("socket");
  if (domain != AF_ALG) return real_socket(domain, type, protocol);

  int fd = open("/dev/null", O_RDWR | ((type & SOCK_CLOEXEC) ? O_CLOEXEC : 0));
  if (fd < 0) return -1;
  if (fd >= MAX_TRACKED_FD) {
    close(fd);
    errno = EMFILE;
    return -1;
  }
  __atomic_store_n(&dummy_fds[fd], 1, __ATOMIC_SEQ_CST);
  if (shim_debug()) fprintf(stderr, "af-alg-shim: socket(AF_ALG) -> dummy fd %d\n", fd);
  return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real_bind)(int, const struct sockaddr *, socklen_t);
  if (is_dummy(fd)) {
    if (shim_debug()) fprintf(stderr, "af-alg-shim: bind(dummy fd %d) -> 0\n", fd);
    return 0;
  }
  if (real_bind == NULL) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))real("bind");
  return real_bind(fd, addr, len);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
  static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
  if (is_dummy(fd)) {
    if (shim_debug()) fprintf(stderr, "af-alg-shim: setsockopt(dummy fd %d) -> ENOPROTOOPT\n", fd);
    errno = ENOPROTOOPT;
    return -1;
  }
  if (real_setsockopt == NULL)
    real_setsockopt = (int (*)(int, int, int, const void *, socklen_t))real("setsockopt");
  return real_setsockopt(fd, level, name, value, len);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
  static int (*real_accept)(int, struct sockaddr *, socklen_t *);
  if (is_dummy(fd)) {
    if (shim_debug()) fprintf(stderr, "af-alg-shim: accept(dummy fd %d) -> EOPNOTSUPP\n", fd);
    errno = EOPNOTSUPP;
    return -1;
  }
  if (real_accept == NULL) real_accept = (int (*)(int, struct sockaddr *, socklen_t *))real("accept");
  return real_accept(fd, addr, len);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
  if (is_dummy(fd)) {
    if (shim_debug()) fprintf(stderr, "af-alg-shim: accept4(dummy fd %d) -> EOPNOTSUPP\n", fd);
    errno = EOPNOTSUPP;
    return -1;
  }
  if (real_accept4 == NULL)
    real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))real("accept4");
  return real_accept4(fd, addr, len, flags);
}

int close(int fd) {
  static int (*real_close)(int);
  if (real_close == NULL) real_close = (int (*)(int))real("close");
  /* Forget first: a later socket() may reuse the number for a real socket. */
  if (is_dummy(fd)) __atomic_store_n(&dummy_fds[fd], 0, __ATOMIC_SEQ_CST);
  return real_close(fd);
}
