// Upstream dials for the relay cores' sessions.
//
// Why: a dial on a Node TCP handle builds a TCPWrap and a connect request,
// calls into JavaScript for the connect and every read, and once the 101 is
// in, the core takes a duplicate of the descriptor and Node closes its own:
// socket, connect, three epoll_ctl on Node's set, then a dup, two more
// epoll_ctl, a close. Here the descriptor goes into the module's watch set
// once (watch.c) and moves into the core's session as it is, with no
// system call: socket, connect, one ADD, one MOD once the request is out.
//
// JavaScript keeps every decision (src/upstream/core-dial.ts): it is called
// with each chunk the upstream sends until it has judged the answer (read
// into the buffer JavaScript shares with the module for reads, as conn.c's
// are: no Buffer made per chunk; JavaScript copies what it keeps), with
// the error when the connect, the write or a read fails, and with EOF. The
// request is written when the connect completes. An answer that is not a 101
// (or a session the core does not take) gets its descriptor back as a Node
// handle with dialRelease().

#include "dial.h"
#include "keyed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

// What failed, as JavaScript names the system call (kept in step with core-dial.ts).
enum { OP_CONNECT = 0, OP_WRITE = 1, OP_READ = 2 };
// The events' kinds: a chunk, EOF, an error.
enum { EV_DATA = 0, EV_EOF = 1, EV_ERROR = 2 };

typedef struct dmod {
  watch_home_t* home;
  napi_ref event;  // event(owner, kind, errno, op, length): a chunk is in buf
  napi_ref buffer;  // keeps buf, JavaScript's shared read buffer, alive
  napi_async_context async;
  char* buf;
  size_t buf_len;
} dmod_t;

// JavaScript holds a dial by its watcher's key (keyed.h).
struct dial {
  dmod_t* mod;
  napi_env env;
  napi_ref owner;
  watch_t watch;
  int fd;
  char* out;  // the request (and PROXY header) until written
  size_t out_off, out_len;
  unsigned connected : 1;
  unsigned gone : 1;  // closed, released or handed over: freed on a later turn
};

static void forget(dial_t* d) {
  d->gone = 1;
  free(d->out);
  d->out = NULL;
  if (d->owner != NULL) napi_delete_reference(d->env, d->owner);
  d->owner = NULL;
  // The key finds nothing from here on; the memory goes once the callbacks on the stack are done with it.
  watch_closed_later(&d->watch, keyed_free);
}

static void dial_close(dial_t* d) {
  if (d->gone) return;
  watch_drop(&d->watch);
  close(d->fd);
  d->fd = -1;
  forget(d);
}

// Tells JavaScript; the dial may be closed, released or handed over by the time this returns.
static void emit(dial_t* d, int kind, int err, int op, size_t len) {
  napi_env env = d->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value owner, fn, result, argv[5];
  napi_get_reference_value(env, d->owner, &owner);
  napi_get_reference_value(env, d->mod->event, &fn);
  argv[0] = owner;
  napi_create_int32(env, kind, &argv[1]);
  napi_create_int32(env, -err, &argv[2]);
  napi_create_int32(env, op, &argv[3]);
  napi_create_int32(env, (int32_t)len, &argv[4]);
  if (napi_make_callback(env, d->mod->async, owner, fn, 5, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
}

static void fail(dial_t* d, int err, int op) {
  // The dial stays open for JavaScript to close: it owns what happens next.
  watch_events(&d->watch, 0);
  emit(d, EV_ERROR, err, op, 0);
}

static int send_out(dial_t* d) {
  while (d->out_len > 0) {
    ssize_t n = send(d->fd, d->out + d->out_off, d->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    d->out_off += (size_t)n;
    d->out_len -= (size_t)n;
  }
  free(d->out);
  d->out = NULL;
  return 0;
}

static void on_ready(watch_t* w, int status, int events) {
  dial_t* d = w->data;
  // Writable (or failed) for the first time: the connect is through, or why not.
  if (!d->connected || status < 0) {
    int err = watch_error(w, status);
    if (err != 0) {
      fail(d, err, !d->connected ? OP_CONNECT : d->out != NULL ? OP_WRITE : OP_READ);
      return;
    }
    d->connected = 1;
  }
  if (d->out != NULL) {
    int err = send_out(d);
    if (err != 0) {
      fail(d, err, OP_WRITE);
      return;
    }
    // Read only once the request is out: the answer cannot come before it.
    err = watch_events(&d->watch, d->out != NULL ? UV_WRITABLE : UV_READABLE);
    if (err != 0) {
      fail(d, -err, OP_READ);
      return;
    }
    if (d->out != NULL || !(events & UV_READABLE)) return;
  }
  if (!(events & UV_READABLE)) return;
  dmod_t* mod = d->mod;
  ssize_t n;
  do n = read(d->fd, mod->buf, mod->buf_len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) fail(d, errno, OP_READ);
    return;
  }
  if (n == 0) {
    watch_events(&d->watch, 0);
    emit(d, EV_EOF, 0, OP_READ, 0);
    return;
  }
  emit(d, EV_DATA, 0, OP_READ, (size_t)n);
}

// ---- JavaScript API ------------------------------------------------------------------

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "wsgate dial: " #call " failed");   \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

dial_t* dial_of(watch_home_t* home, napi_env env, napi_value v) {
  watch_t* w = keyed_watch(home, env, v, on_ready);
  return w == NULL || ((dial_t*)w->data)->gone ? NULL : w->data;
}

int dial_session(watch_home_t* home, const int fds[2], conn_t* accepted, dial_t* dialed, watch_t* w[2], watch_cb cb) {
  watch_set_t* set = watch_home_set(home);
  if (set == NULL) return EMFILE;
  const int taken[2] = {accepted != NULL, dialed != NULL};
  int dups[2] = {-1, -1};
  int err = 0;
  for (int i = 0; i < 2 && err == 0; i++) {
    if (taken[i]) continue;
    dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    if (dups[i] < 0) err = errno;
    else if ((err = -watch_init(set, w[i], dups[i], cb)) != 0) {
      close(dups[i]);
      dups[i] = -1;
    }
  }
  if (err != 0) {
    for (int i = 0; i < 2; i++) {
      if (dups[i] < 0) continue;
      watch_drop(w[i]);
      close(dups[i]);
    }
    return err;
  }
  if (dialed != NULL) {
    watch_move(&dialed->watch, w[1], cb);
    dialed->fd = -1;
    forget(dialed);
  }
  if (accepted != NULL) conn_hand_over(accepted, w[0], cb);
  return 0;
}

// dial(owner, address, port, ipv6, request, proxyHeader): connects, and
// writes proxyHeader (a Buffer, or null) then request (a latin1 string) once
// connected. Returns the dial, or a negative errno when the connect failed at once.
static napi_value dial(napi_env env, napi_callback_info info) {
  dmod_t* mod;
  size_t argc = 6;
  napi_value argv[6], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  if (mod->event == NULL || argc < 6) {
    napi_throw_error(env, NULL, "wsgate dial: setDialEvents() first, and six arguments");
    return NULL;
  }
  char address[64];
  size_t address_len;
  int32_t port;
  bool v6;
  size_t req_len, header_len = 0;
  void* header = NULL;
  napi_valuetype header_type;
  CHECK(napi_get_value_string_latin1(env, argv[1], address, sizeof address, &address_len));
  CHECK(napi_get_value_int32(env, argv[2], &port));
  CHECK(napi_get_value_bool(env, argv[3], &v6));
  CHECK(napi_get_value_string_latin1(env, argv[4], NULL, 0, &req_len));
  CHECK(napi_typeof(env, argv[5], &header_type));
  if (header_type != napi_null) CHECK(napi_get_buffer_info(env, argv[5], &header, &header_len));
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  socklen_t sa_len;
  if (v6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*)&sa;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, address, &a->sin6_addr) != 1) goto bad_address;
    sa_len = sizeof *a;
  } else {
    struct sockaddr_in* a = (struct sockaddr_in*)&sa;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &a->sin_addr) != 1) goto bad_address;
    sa_len = sizeof *a;
  }
  watch_set_t* set = watch_home_set(mod->home);
  dial_t* d = calloc(1, sizeof *d);
  char* out = malloc(header_len + req_len + 1);
  if (set == NULL || d == NULL || out == NULL) {
    free(d);
    free(out);
    napi_throw_error(env, "ENOMEM", "wsgate dial: out of memory");
    return NULL;
  }
  if (header_len > 0) memcpy(out, header, header_len);
  size_t copied;
  if (napi_get_value_string_latin1(env, argv[4], out + header_len, req_len + 1, &copied) != napi_ok) {
    free(d);
    free(out);
    napi_throw_error(env, NULL, "wsgate dial: the request is a string");
    return NULL;
  }
  int err = 0;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) err = errno;
  if (err == 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr*)&sa, sa_len) != 0 && errno != EINPROGRESS) err = errno;
  }
  if (err == 0) err = -watch_init(set, &d->watch, fd, on_ready);
  if (err == 0) {
    // Writable once connected; the read is watched for once the request is out.
    if (watch_events(&d->watch, UV_WRITABLE) != 0) {
      err = errno;
      watch_drop(&d->watch);
    }
  }
  if (err != 0) {
    if (fd >= 0) close(fd);
    free(d);
    free(out);
    CHECK(napi_create_int32(env, -err, &result));
    return result;
  }
  d->mod = mod;
  d->env = env;
  d->fd = fd;
  d->out = out;
  d->out_len = header_len + copied;
  d->watch.data = d;
  if (napi_create_reference(env, argv[0], 1, &d->owner) != napi_ok || keyed_external(env, &d->watch, NULL, NULL, &result) != napi_ok) {
    dial_close(d);
    napi_throw_error(env, NULL, "wsgate dial: cannot hand the dial to JavaScript");
    return NULL;
  }
  return result;
bad_address:
  napi_throw_type_error(env, NULL, "wsgate dial: not an IP address");
  return NULL;
}

static dial_t* dial_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  dmod_t* mod;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod) != napi_ok || argc < 1) return NULL;
  return dial_of(mod->home, env, argv[0]);
}

// dialClose(dial): gives up (the client left, the timeout, a failure, an answer nobody takes).
static napi_value dial_close_js(napi_env env, napi_callback_info info) {
  dial_t* d = dial_arg(env, info);
  if (d != NULL) dial_close(d);
  return NULL;
}

// dialRelease(dial): the descriptor, out of the watch set, for a Node handle to own; -1 if the dial is over.
static napi_value dial_release(napi_env env, napi_callback_info info) {
  dial_t* d = dial_arg(env, info);
  int fd = -1;
  if (d != NULL) {
    watch_events(&d->watch, 0);
    watch_drop(&d->watch);
    fd = d->fd;
    d->fd = -1;
    forget(d);
  }
  napi_value result;
  CHECK(napi_create_int32(env, fd, &result));
  return result;
}

// setDialEvents(event, readBuffer)
static napi_value set_dial_events(napi_env env, napi_callback_info info) {
  dmod_t* mod;
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  void* data;
  size_t len;
  if (argc < 2 || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || len == 0) {
    napi_throw_type_error(env, NULL, "wsgate dial: setDialEvents(event, readBuffer)");
    return NULL;
  }
  napi_ref refs[2];
  for (int i = 0; i < 2; i++) CHECK(napi_create_reference(env, argv[i], 1, &refs[i]));
  if (mod->event != NULL) napi_delete_reference(env, mod->event);
  if (mod->buffer != NULL) napi_delete_reference(env, mod->buffer);
  mod->event = refs[0];
  mod->buffer = refs[1];
  mod->buf = data;
  mod->buf_len = len;
  return NULL;
}

static void free_dmod(void* arg) { free(arg); }

void wsgate_dial_init(napi_env env, napi_value exports, watch_home_t* home) {
  dmod_t* mod = calloc(1, sizeof *mod);
  if (mod == NULL) return;
  mod->home = home;
  napi_value name;
  napi_create_string_utf8(env, "wsgate.dial", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &mod->async);
  napi_add_env_cleanup_hook(env, free_dmod, mod);
  napi_property_descriptor props[] = {
    {"dial", NULL, dial, NULL, NULL, NULL, napi_enumerable, mod},
    {"dialClose", NULL, dial_close_js, NULL, NULL, NULL, napi_enumerable, mod},
    {"dialRelease", NULL, dial_release, NULL, NULL, NULL, napi_enumerable, mod},
    {"setDialEvents", NULL, set_dial_events, NULL, NULL, NULL, napi_enumerable, mod},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
