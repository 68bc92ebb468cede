// Client connections accepted by the module, on plain listeners.
//
// Why: a connection Node accepts builds a TCPWrap, enters JavaScript for the
// accept and for the head, writes the 101 through StreamBase, and once a
// core takes the session, is duplicated into the module's watch set while
// Node deletes and closes its own: per handshake a TCPWrap, getpeername,
// two epoll_ctl on Node's set, a dup, one more epoll_ctl and a close. Here
// the listening socket is watched in the module's set (watch.c), accept4()
// gives the peer's address, the connection is added to the set once, and it
// moves into the core's session as it is (conn_hand_over), as a dial's
// upstream does (dial.c).
//
// JavaScript keeps every decision (src/listener/core-accept.ts): it is called
// once per accepted connection, and with each read, EOF, error, the end of
// queued writes and a finished shutdown, through the handle API BareConn
// already drives (src/relay/bare-conn.ts). Reads go to the read buffer plain
// TCP handles share (src/relay/handle-io.ts). Whatever needs a Node socket
// (a plain HTTP request, a PROXY protocol listener) gets the descriptor back
// with connRelease().

#define _GNU_SOURCE  // accept4
#include "conn.h"
#include "keyed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

// How many connections one wakeup accepts at most; how long accepting pauses when out of descriptors or memory.
enum { ACCEPTS_PER_WAKE = 64, PAUSE_MS = 100 };
// The events' kinds (kept in step with core-accept.ts).
enum { EV_DATA = 0, EV_EOF = 1, EV_ERROR = 2, EV_DRAINED = 3, EV_SHUTDOWN = 4 };
enum { OP_READ = 0, OP_WRITE = 1, OP_SHUTDOWN = 2 };

typedef struct cmod {
  watch_home_t* home;
  napi_ref accepted;  // accepted(owner, conn, address, port, family, fd) → the connection's owner
  napi_ref event;     // event(owner, kind, value, op)
  napi_ref buffer;    // the shared read buffer, kept alive
  char* buf;
  size_t buf_len;
  napi_async_context async;
} cmod_t;

typedef struct acceptor {
  cmod_t* mod;
  napi_env env;
  napi_ref owner;
  watch_t watch;
  int fd;         // a duplicate of the listening socket's
  int node_fd;    // Node's own, left out of Node's epoll set
  uv_timer_t* pause;
  unsigned gone : 1;
} acceptor_t;

// JavaScript holds a connection, and an acceptor, by its watcher's key (keyed.h).
struct conn {
  cmod_t* mod;
  napi_env env;
  napi_ref owner;
  watch_t watch;
  int fd;
  char* out;  // what send() did not take yet
  size_t out_off, out_len, out_cap;
  unsigned want_read : 1;
  unsigned shut_pending : 1;
  unsigned gone : 1;  // closed, released or handed over: freed on a later turn
};

// Its watcher was dropped or moved: the key finds nothing from here on, and the memory goes once the callbacks on the stack are done with it.
static void forget(conn_t* c) {
  c->gone = 1;
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = c->out_cap = 0;
  if (c->owner != NULL) napi_delete_reference(c->env, c->owner);
  c->owner = NULL;
  watch_closed_later(&c->watch, keyed_free);
}

static void conn_close(conn_t* c) {
  if (c->gone) return;
  watch_drop(&c->watch);
  close(c->fd);
  c->fd = -1;
  forget(c);
}

static void call(napi_env env, cmod_t* mod, napi_ref fn_ref, napi_value recv, size_t argc, napi_value* argv, napi_value* result) {
  napi_value fn;
  napi_get_reference_value(env, fn_ref, &fn);
  if (napi_make_callback(env, mod->async, recv, fn, argc, argv, result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
    *result = NULL;
  }
}

// Tells JavaScript; the connection may be closed, released or handed over by the time this returns.
static void emit(conn_t* c, int kind, int value, int op) {
  if (c->owner == NULL) return;
  napi_env env = c->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value owner, result, argv[4];
  napi_get_reference_value(env, c->owner, &owner);
  argv[0] = owner;
  napi_create_int32(env, kind, &argv[1]);
  napi_create_int32(env, value, &argv[2]);
  napi_create_int32(env, op, &argv[3]);
  call(env, c->mod, c->mod->event, owner, 4, argv, &result);
  napi_close_handle_scope(env, scope);
}

// What the set should watch: reads while wanted (a stop is lazy, see connRead), writes while bytes wait.
static int rearm(conn_t* c) { return watch_events(&c->watch, (c->want_read ? UV_READABLE : 0) | (c->out_len > 0 ? UV_WRITABLE : 0)); }

static int flush(conn_t* c) {
  while (c->out_len > 0) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    c->out_off += (size_t)n;
    c->out_len -= (size_t)n;
  }
  c->out_off = 0;
  return 0;
}

static void on_conn(watch_t* w, int status, int events) {
  conn_t* c = w->data;
  if (status < 0) {
    // The set stopped watching it; JavaScript closes it.
    c->want_read = 0;
    emit(c, EV_ERROR, -watch_error(w, status), c->out_len > 0 ? OP_WRITE : OP_READ);
    return;
  }
  if ((events & UV_WRITABLE) && c->out_len > 0) {
    int err = flush(c);
    if (err == 0 && c->out_len == 0) err = -rearm(c);
    if (err != 0) {
      c->want_read = 0;
      watch_events(&c->watch, 0);
      emit(c, EV_ERROR, -err, OP_WRITE);
      return;
    }
    if (c->out_len == 0) {
      int shut = c->shut_pending;
      c->shut_pending = 0;
      int r = shut && shutdown(c->fd, SHUT_WR) != 0 ? -errno : 0;
      emit(c, EV_DRAINED, 0, OP_WRITE);
      if (c->gone) return;
      if (shut) emit(c, EV_SHUTDOWN, r, OP_SHUTDOWN);
      if (c->gone) return;
    }
  }
  if (!(events & UV_READABLE)) return;
  if (!c->want_read) {
    // Reading was stopped since it was last watched for: stop watching now.
    rearm(c);
    return;
  }
  ssize_t n;
  do n = read(c->fd, c->mod->buf, c->mod->buf_len);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    emit(c, EV_DATA, (int)n, OP_READ);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  int err = n < 0 ? errno : 0;
  c->want_read = 0;
  rearm(c);
  if (err == 0) emit(c, EV_EOF, 0, OP_READ);
  else emit(c, EV_ERROR, -err, OP_READ);
}

// ---- accepting ------------------------------------------------------------------------

// An address as Node words it: text (as inet_ntop writes it), port, family 4 or 6.
static void name_of(const struct sockaddr_storage* sa, char text[INET6_ADDRSTRLEN], int* port, int* family) {
  text[0] = '\0';
  if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6* s = (const struct sockaddr_in6*)sa;
    inet_ntop(AF_INET6, &s->sin6_addr, text, INET6_ADDRSTRLEN);
    *port = ntohs(s->sin6_port);
    *family = 6;
  } else {
    const struct sockaddr_in* s = (const struct sockaddr_in*)sa;
    inet_ntop(AF_INET, &s->sin_addr, text, INET6_ADDRSTRLEN);
    *port = ntohs(s->sin_port);
    *family = 4;
  }
}

static void on_accept(watch_t* w, int status, int events);

static void acceptor_stop(acceptor_t* a) {
  if (a->gone) return;
  a->gone = 1;
  watch_events(&a->watch, 0);
  watch_drop(&a->watch);
  close(a->fd);
  a->fd = -1;
  if (a->pause != NULL) {
    uv_timer_stop(a->pause);
    uv_close((uv_handle_t*)a->pause, (uv_close_cb)free);
    a->pause = NULL;
  }
  if (a->owner != NULL) napi_delete_reference(a->env, a->owner);
  a->owner = NULL;
}

static void on_pause_end(uv_timer_t* t) {
  acceptor_t* a = t->data;
  if (!a->gone) watch_events(&a->watch, UV_READABLE);
}

// Out of descriptors or memory: the backlog keeps the connections while accepting waits (level-triggered, it would spin).
static void pause_accepting(acceptor_t* a) {
  watch_events(&a->watch, 0);
  if (a->pause == NULL) {
    uv_timer_t* t = malloc(sizeof *t);
    if (t == NULL || uv_timer_init(a->mod->home->loop, t) != 0) {
      free(t);
      watch_events(&a->watch, UV_READABLE);
      return;
    }
    t->data = a;
    uv_unref((uv_handle_t*)t);
    a->pause = t;
  }
  uv_timer_start(a->pause, on_pause_end, PAUSE_MS, 0);
}

static void hand_to_js(acceptor_t* a, int fd, const struct sockaddr_storage* sa) {
  cmod_t* mod = a->mod;
  napi_env env = a->env;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conn_t* c = calloc(1, sizeof *c);
  if (c == NULL || watch_init(watch_home_set(mod->home), &c->watch, fd, on_conn) != 0) {
    close(fd);
    free(c);
    return;
  }
  c->mod = mod;
  c->env = env;
  c->fd = fd;
  c->watch.data = c;
  char text[INET6_ADDRSTRLEN];
  int port, family;
  name_of(sa, text, &port, &family);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value owner, ext, result = NULL, argv[6];
  if (keyed_external(env, &c->watch, NULL, NULL, &ext) != napi_ok) {
    conn_close(c);
    napi_close_handle_scope(env, scope);
    return;
  }
  napi_get_reference_value(env, a->owner, &owner);
  argv[0] = owner;
  argv[1] = ext;
  napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &argv[2]);
  napi_create_int32(env, port, &argv[3]);
  napi_create_int32(env, family, &argv[4]);
  napi_create_int32(env, fd, &argv[5]);
  call(env, mod, mod->accepted, owner, 6, argv, &result);
  napi_valuetype type = napi_undefined;
  if (result != NULL) napi_typeof(env, result, &type);
  // The owner JavaScript gave it hears its events; with none, nobody would: close it.
  if (!c->gone) {
    if (type == napi_object) napi_create_reference(env, result, 1, &c->owner);
    else conn_close(c);
  }
  napi_close_handle_scope(env, scope);
}

static void on_accept(watch_t* w, int status, int events) {
  acceptor_t* a = w->data;
  if (status < 0) {
    pause_accepting(a);
    return;
  }
  for (int i = 0; i < ACCEPTS_PER_WAKE && !a->gone; i++) {
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(a->fd, (struct sockaddr*)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      hand_to_js(a, fd, &sa);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) pause_accepting(a);
    return;
  }
}

// ---- JavaScript API ------------------------------------------------------------------

#define CHECK(call)                                                 \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      napi_throw_error(env, NULL, "wsgate conn: " #call " failed"); \
      return NULL;                                                  \
    }                                                               \
  } while (0)

// An acceptor (one per listener) lives until JavaScript drops it.
static void finalize_acceptor(napi_env env, void* data, void* hint) {
  acceptor_stop(hint);
  free(hint);
}

conn_t* conn_of(watch_home_t* home, napi_env env, napi_value v) {
  watch_t* w = keyed_watch(home, env, v, on_conn);
  return w == NULL || ((conn_t*)w->data)->gone ? NULL : w->data;
}

void conn_hand_over(conn_t* c, watch_t* to, watch_cb cb) {
  watch_move(&c->watch, to, cb);
  c->fd = -1;
  forget(c);
}

// What the first argument stands for when it is a watcher running `cb`: a connection (on_conn) or an acceptor (on_accept).
static void* keyed_arg(napi_env env, napi_callback_info info, size_t want, napi_value* argv, watch_cb cb) {
  size_t argc = want;
  cmod_t* mod;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod) != napi_ok || argc < want) return NULL;
  watch_t* w = keyed_watch(mod->home, env, argv[0], cb);
  return w == NULL ? NULL : w->data;
}

static conn_t* conn_arg(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  conn_t* c = keyed_arg(env, info, want, argv, on_conn);
  return c == NULL || c->gone ? NULL : c;
}

static napi_value int_result(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

// Leaves Node's own watcher of the listening socket out of Node's epoll set,
// so that only the module accepts. libuv adds it on the first poll after the
// listen and never changes it again while the server listens (it would only
// on an event, and none comes); its close deletes a registration that is not
// there. 0, or the errno (ENOENT: not added yet; try again later).
static int quiet_node(acceptor_t* a) {
  if (a->node_fd < 0) return 0;
  struct epoll_event dummy;
  memset(&dummy, 0, sizeof dummy);
  if (epoll_ctl(uv_backend_fd(a->mod->home->loop), EPOLL_CTL_DEL, a->node_fd, &dummy) != 0) return errno;
  a->node_fd = -1;
  return 0;
}

// acceptStart(owner, fd): accepts on a duplicate of the listening socket `fd`
// from now on; returns the acceptor, or a negative errno.
static napi_value accept_start(napi_env env, napi_callback_info info) {
  cmod_t* mod;
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  if (mod->accepted == NULL || argc < 2) {
    napi_throw_error(env, NULL, "wsgate conn: setConnEvents() first, and two arguments");
    return NULL;
  }
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  watch_set_t* set = watch_home_set(mod->home);
  if (set == NULL) return int_result(env, -errno);
  acceptor_t* a = calloc(1, sizeof *a);
  if (a == NULL) return int_result(env, -ENOMEM);
  a->mod = mod;
  a->env = env;
  a->node_fd = fd;
  a->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  int err = a->fd < 0 ? errno : -watch_init(set, &a->watch, a->fd, on_accept);
  if (err == 0) {
    a->watch.data = a;
    if ((err = -watch_events(&a->watch, UV_READABLE)) != 0) watch_drop(&a->watch);
  }
  if (err != 0) {
    if (a->fd >= 0) close(a->fd);
    free(a);
    return int_result(env, -err);
  }
  if (napi_create_reference(env, argv[0], 1, &a->owner) != napi_ok || keyed_external(env, &a->watch, finalize_acceptor, a, &result) != napi_ok) {
    acceptor_stop(a);
    free(a);
    napi_throw_error(env, NULL, "wsgate conn: cannot hand the acceptor to JavaScript");
    return NULL;
  }
  quiet_node(a);
  return result;
}

// acceptQuiet(acceptor): Node's watcher out of Node's set, if it was not yet (acceptStart came before libuv added it).
static napi_value accept_quiet(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  acceptor_t* a = keyed_arg(env, info, 1, argv, on_accept);
  return int_result(env, a == NULL || a->gone ? 0 : -quiet_node(a));
}

// acceptStop(acceptor): stops accepting; Node's listening socket stays as it is, for Node to close.
static napi_value accept_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  acceptor_t* a = keyed_arg(env, info, 1, argv, on_accept);
  if (a != NULL) acceptor_stop(a);
  return NULL;
}

// connRead(conn, on): reads on or off. Off is lazy: the set stops watching
// when a read next comes, so a stop just before a core takes the connection
// (or before reading starts again) costs no system call.
static napi_value conn_read(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  conn_t* c = conn_arg(env, info, 2, argv);
  if (c == NULL) return int_result(env, 0);
  bool on;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  c->want_read = on;
  if (!on || (c->watch.events & UV_READABLE)) return int_result(env, 0);
  return int_result(env, rearm(c));
}

// 0: all written; 1: the rest waits for the socket (EV_DRAINED follows); else a negative errno.
static int conn_write(conn_t* c, const char* data, size_t len) {
  size_t off = 0;
  if (c->out_len == 0) {
    while (off < len) {
      ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -errno;
      }
      off += (size_t)n;
    }
    if (off == len) return 0;
  }
  size_t rest = len - off;
  if (c->out_off + c->out_len + rest > c->out_cap) {
    if (c->out_off > 0) {
      memmove(c->out, c->out + c->out_off, c->out_len);
      c->out_off = 0;
    }
    if (c->out_len + rest > c->out_cap) {
      size_t cap = c->out_len + rest;
      if (cap < 2 * c->out_cap) cap = 2 * c->out_cap;
      char* out = realloc(c->out, cap);
      if (out == NULL) return -ENOMEM;
      c->out = out;
      c->out_cap = cap;
    }
  }
  memcpy(c->out + c->out_off + c->out_len, data + off, rest);
  c->out_len += rest;
  int err = rearm(c);
  return err != 0 ? err : 1;
}

// connWrite(conn, buffer | string, utf8): see conn_write.
static napi_value conn_write_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  conn_t* c = conn_arg(env, info, 3, argv);
  if (c == NULL) return int_result(env, -EBADF);
  bool is_buffer;
  CHECK(napi_is_buffer(env, argv[1], &is_buffer));
  if (is_buffer) {
    void* data;
    size_t len;
    CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
    return int_result(env, conn_write(c, data, len));
  }
  bool utf8;
  CHECK(napi_get_value_bool(env, argv[2], &utf8));
  size_t len;
  if (utf8) CHECK(napi_get_value_string_utf8(env, argv[1], NULL, 0, &len));
  else CHECK(napi_get_value_string_latin1(env, argv[1], NULL, 0, &len));
  char small[1024];
  char* text = len < sizeof small ? small : malloc(len + 1);
  if (text == NULL) return int_result(env, -ENOMEM);
  size_t copied;
  napi_status s = utf8 ? napi_get_value_string_utf8(env, argv[1], text, len + 1, &copied) : napi_get_value_string_latin1(env, argv[1], text, len + 1, &copied);
  int r = s == napi_ok ? conn_write(c, text, copied) : -EINVAL;
  if (text != small) free(text);
  return int_result(env, r);
}

// connShutdown(conn): FIN once what waits is written. 1: done now; 0: EV_SHUTDOWN follows; else a negative errno.
static napi_value conn_shutdown(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  conn_t* c = conn_arg(env, info, 1, argv);
  if (c == NULL) return int_result(env, -EBADF);
  if (c->out_len > 0) {
    c->shut_pending = 1;
    return int_result(env, 0);
  }
  return int_result(env, shutdown(c->fd, SHUT_WR) != 0 ? -errno : 1);
}

// connClose(conn): closes it; nothing more is heard of it.
static napi_value conn_close_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  conn_t* c = conn_arg(env, info, 1, argv);
  if (c != NULL) conn_close(c);
  return NULL;
}

// connRelease(conn): the descriptor, out of the watch set, for a Node handle to own; -1 if it is gone.
static napi_value conn_release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  conn_t* c = conn_arg(env, info, 1, argv);
  int fd = -1;
  if (c != NULL && c->out_len == 0) {
    watch_events(&c->watch, 0);
    watch_drop(&c->watch);
    fd = c->fd;
    c->fd = -1;
    forget(c);
  }
  return int_result(env, fd);
}

// connQueued(conn): bytes written that the socket has not taken yet.
static napi_value conn_queued(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  conn_t* c = conn_arg(env, info, 1, argv);
  return int_result(env, c == NULL ? 0 : (int)c->out_len);
}

// connSockname(conn): [address, port, family] of the local end, or undefined.
static napi_value conn_sockname(napi_env env, napi_callback_info info) {
  napi_value argv[1], result = NULL, v;
  conn_t* c = conn_arg(env, info, 1, argv);
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  if (c == NULL || getsockname(c->fd, (struct sockaddr*)&sa, &len) != 0) return NULL;
  char text[INET6_ADDRSTRLEN];
  int port, family;
  name_of(&sa, text, &port, &family);
  CHECK(napi_create_array_with_length(env, 3, &result));
  CHECK(napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_element(env, result, 0, v));
  CHECK(napi_set_element(env, result, 1, int_result(env, port)));
  CHECK(napi_set_element(env, result, 2, int_result(env, family)));
  return result;
}

// setConnEvents(accepted, event, readBuffer)
static napi_value set_conn_events(napi_env env, napi_callback_info info) {
  cmod_t* mod;
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  void* data;
  size_t len;
  if (argc < 3 || napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok || len == 0) {
    napi_throw_type_error(env, NULL, "wsgate conn: setConnEvents(accepted, event, readBuffer)");
    return NULL;
  }
  napi_ref refs[3];
  for (int i = 0; i < 3; i++) CHECK(napi_create_reference(env, argv[i], 1, &refs[i]));
  if (mod->accepted != NULL) napi_delete_reference(env, mod->accepted);
  if (mod->event != NULL) napi_delete_reference(env, mod->event);
  if (mod->buffer != NULL) napi_delete_reference(env, mod->buffer);
  mod->accepted = refs[0];
  mod->event = refs[1];
  mod->buffer = refs[2];
  mod->buf = data;
  mod->buf_len = len;
  return NULL;
}

static void free_cmod(void* arg) { free(arg); }

void wsgate_conn_init(napi_env env, napi_value exports, watch_home_t* home) {
  cmod_t* mod = calloc(1, sizeof *mod);
  if (mod == NULL) return;
  mod->home = home;
  napi_value name;
  napi_create_string_utf8(env, "wsgate.conn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &mod->async);
  napi_add_env_cleanup_hook(env, free_cmod, mod);
  napi_property_descriptor props[] = {
    {"setConnEvents", NULL, set_conn_events, NULL, NULL, NULL, napi_enumerable, mod},
    {"acceptStart", NULL, accept_start, NULL, NULL, NULL, napi_enumerable, mod},
    {"acceptQuiet", NULL, accept_quiet, NULL, NULL, NULL, napi_enumerable, mod},
    {"acceptStop", NULL, accept_stop, NULL, NULL, NULL, napi_enumerable, mod},
    {"connRead", NULL, conn_read, NULL, NULL, NULL, napi_enumerable, mod},
    {"connWrite", NULL, conn_write_js, NULL, NULL, NULL, napi_enumerable, mod},
    {"connShutdown", NULL, conn_shutdown, NULL, NULL, NULL, napi_enumerable, mod},
    {"connClose", NULL, conn_close_js, NULL, NULL, NULL, napi_enumerable, mod},
    {"connRelease", NULL, conn_release, NULL, NULL, NULL, napi_enumerable, mod},
    {"connQueued", NULL, conn_queued, NULL, NULL, NULL, napi_enumerable, mod},
    {"connSockname", NULL, conn_sockname, NULL, NULL, NULL, napi_enumerable, mod},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
