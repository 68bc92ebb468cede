// wsgate's tunnel-mode relay core.
//
// Once a tunnel-mode session is upgraded, the gateway hands this module
// duplicates of the session's two socket descriptors and closes its own.
// From then on the bytes flow here, on Node's own event loop (watch.c's
// epoll set), without entering JavaScript per chunk: a readable socket is read
// into one process-wide buffer and that buffer is written straight to the
// other socket. JavaScript hears from a session once, when it is over.
//
// No copies: a write the peer cannot take at once keeps the very buffer it
// was read into (the next read takes a fresh one), and reading from that side
// stops until the rest is out, so a session holds at most one read
// (`readSize`, at most 64 KiB) per direction beyond the kernel's socket
// buffers.
//
// Ends follow the JavaScript tunnel (src/relay/tunnel.ts): EOF from either
// side finishes what is still to be written both ways (at most LINGER_MS)
// and then closes both; a read or write error closes both at once; the
// gateway's close() cuts both at once. The first of these is what the
// session reports.

#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <stdio.h>
#include <string.h>

#include "inspect.h"
#include "conn.h"
#include "accept-key.h"
#include "dial.h"
#include "watch.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // Node ignores SIGPIPE anyway; the flag only makes that explicit
#endif

enum { READ_MAX = 65536, READS_PER_WAKE = 16, LINGER_MS = 1000 };
// How a session ended (kept in step with native-tunnel.ts).
enum { END_NONE = 0, END_EOF = 1, END_ERROR = 2, END_GATEWAY = 3 };
enum { OP_READ = 0, OP_WRITE = 1 };

typedef struct module module_t;
typedef struct pair pair_t;

struct module {
  watch_home_t home;      // the module's watch set, shared with inspect.c and dial.c
  napi_ref done;          // done(owner, side, kind, errno, op, bytesFromClient, bytesFromUpstream)
  napi_async_context async;
  char* spare;            // where the next read goes
  int64_t open;           // sessions not yet reported done
};

typedef struct side {
  pair_t* pair;
  int fd;
  watch_t watch;          // watch.events: what is watched
  char* out;              // a read buffer whose write did not finish; owned
  size_t out_off, out_len;
  uint64_t bytes_read;
  unsigned eof : 1;
} side_t;

struct pair {
  module_t* mod;
  napi_env env;
  napi_ref owner;
  side_t side[2];         // 0: client, 1: upstream
  uv_timer_t* linger;     // only while ending with output left: an idle session holds none
  size_t read_size;
  int handles;            // uv handles not yet closed
  unsigned active : 1;    // traffic since the idle sweeper last looked
  unsigned ending : 1;    // finishing what is left to write, then closing
  unsigned closing : 1;
  int end_side, end_kind, end_errno, end_op;
};

static void on_ready(watch_t* w, int status, int events);

static int index_of(side_t* s) { return s == &s->pair->side[0] ? 0 : 1; }
static side_t* peer_of(side_t* s) { return &s->pair->side[1 - index_of(s)]; }

static void record(pair_t* p, int side, int kind, int err, int op) {
  if (p->end_kind != END_NONE) return;
  p->end_side = side;
  p->end_kind = kind;
  p->end_errno = err;
  p->end_op = op;
}

static void finish(pair_t* p) {
  napi_env env = p->env;
  module_t* mod = p->mod;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value owner, fn, result, argv[7];
  napi_get_reference_value(env, p->owner, &owner);
  napi_get_reference_value(env, mod->done, &fn);
  argv[0] = owner;
  napi_create_int32(env, p->end_side, &argv[1]);
  napi_create_int32(env, p->end_kind, &argv[2]);
  napi_create_int32(env, p->end_errno, &argv[3]);
  napi_create_int32(env, p->end_op, &argv[4]);
  napi_create_double(env, (double)p->side[0].bytes_read, &argv[5]);
  napi_create_double(env, (double)p->side[1].bytes_read, &argv[6]);
  napi_delete_reference(env, p->owner);
  mod->open--;
  free(p);
  // make_callback, not call_function: we come from the event loop, and the
  // nextTicks and microtasks the callback queues must run after it.
  if (napi_make_callback(env, mod->async, owner, fn, 7, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void handle_closed(pair_t* p) {
  if (--p->handles == 0) finish(p);
}

static void on_watch_closed(watch_t* w) { handle_closed(((side_t*)w->data)->pair); }

static void on_timer_closed(uv_handle_t* handle) {
  pair_t* p = handle->data;
  free(handle);
  handle_closed(p);
}

static void close_pair(pair_t* p) {
  if (p->closing) return;
  p->closing = 1;
  for (int i = 0; i < 2; i++) {
    side_t* s = &p->side[i];
    // The close takes the descriptor out of the watch set.
    watch_close(&s->watch, on_watch_closed);
    close(s->fd);
    free(s->out);
    s->out = NULL;
    s->out_len = 0;
  }
  if (p->linger != NULL) uv_close((uv_handle_t*)p->linger, on_timer_closed);
}

static void fail(pair_t* p, int side, int err, int op) {
  record(p, side, END_ERROR, err, op);
  close_pair(p);
}

// Reading from a side stops while its peer still has output waiting
// (backpressure) and once it or the session is ending; writable is watched
// only while output waits.
static void repoll(side_t* s) {
  pair_t* p = s->pair;
  if (p->closing) return;
  int events = 0;
  if (!p->ending && !s->eof && peer_of(s)->out_len == 0) events |= UV_READABLE;
  if (s->out_len > 0) events |= UV_WRITABLE;
  int err = watch_events(&s->watch, events);
  if (err != 0) fail(p, index_of(s), -err, OP_READ);
}

static void on_linger(uv_timer_t* timer) { close_pair(timer->data); }

static void end_session(pair_t* p) {
  p->ending = 1;
  if (p->side[0].out_len == 0 && p->side[1].out_len == 0) {
    close_pair(p);
    return;
  }
  repoll(&p->side[0]);
  repoll(&p->side[1]);
  if (p->closing || p->linger != NULL) return;
  // No timer: the session is closed now rather than left without a bound.
  uv_timer_t* t = malloc(sizeof *t);
  if (t == NULL || uv_timer_init(p->mod->home.loop, t) != 0) {
    free(t);
    close_pair(p);
    return;
  }
  t->data = p;
  p->linger = t;
  p->handles++;
  uv_timer_start(t, on_linger, LINGER_MS, 0);
}

static void flush(side_t* s) {
  pair_t* p = s->pair;
  while (s->out_len > 0) {
    ssize_t n = send(s->fd, s->out + s->out_off, s->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(p, index_of(s), errno, OP_WRITE);
      return;
    }
    s->out_off += (size_t)n;
    s->out_len -= (size_t)n;
  }
  if (p->mod->spare == NULL) p->mod->spare = s->out;
  else free(s->out);
  s->out = NULL;
  if (p->ending && peer_of(s)->out_len == 0) {
    close_pair(p);
    return;
  }
  repoll(s);
  repoll(peer_of(s));
}

static void pump(side_t* from) {
  pair_t* p = from->pair;
  module_t* mod = p->mod;
  side_t* to = peer_of(from);
  for (int round = 0; round < READS_PER_WAKE; round++) {
    if (mod->spare == NULL && (mod->spare = malloc(READ_MAX)) == NULL) {
      fail(p, index_of(from), ENOMEM, OP_READ);
      return;
    }
    char* buf = mod->spare;
    ssize_t n = read(from->fd, buf, p->read_size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(p, index_of(from), errno, OP_READ);
      return;
    }
    if (n == 0) {
      from->eof = 1;
      record(p, index_of(from), END_EOF, 0, OP_READ);
      end_session(p);
      return;
    }
    from->bytes_read += (uint64_t)n;
    p->active = 1;
    ssize_t sent = send(to->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(p, index_of(to), errno, OP_WRITE);
        return;
      }
      sent = 0;
    }
    if (sent < n) {
      // The rest waits in this buffer; reading from `from` stops until it is out.
      to->out = buf;
      to->out_off = (size_t)sent;
      to->out_len = (size_t)(n - sent);
      mod->spare = NULL;
      repoll(to);
      repoll(from);
      return;
    }
    if ((size_t)n < p->read_size) return;
  }
}

static void on_ready(watch_t* w, int status, int events) {
  side_t* s = w->data;
  pair_t* p = s->pair;
  if (status < 0) {
    // EPOLLERR: the socket holds an error (a reset, say).
    fail(p, index_of(s), watch_error(w, status), s->out_len > 0 ? OP_WRITE : OP_READ);
    return;
  }
  if (events & UV_WRITABLE) {
    flush(s);
    if (p->closing) return;
  }
  if ((events & UV_READABLE) && (s->watch.events & UV_READABLE)) pump(s);
}

// ---- JavaScript API -------------------------------------------------------

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, NULL, "wsgate relay: " #call " failed");   \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static pair_t* pair_arg(napi_env env, napi_value v) {
  void* data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "wsgate relay: not a session");
    return NULL;
  }
  return data;
}

// setDone(fn): the function every finished session is reported to.
static napi_value set_done(napi_env env, napi_callback_info info) {
  module_t* mod;
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  if (mod->done != NULL) napi_delete_reference(env, mod->done);
  CHECK(napi_create_reference(env, argv[0], 1, &mod->done));
  return NULL;
}

// open(owner, clientFd, upstreamFd, readSize): relays between duplicates of
// the two descriptors (the caller closes its own); returns the session.
static napi_value open_pair(napi_env env, napi_callback_info info) {
  module_t* mod;
  size_t argc = 4;
  napi_value argv[4], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  if (mod->done == NULL) {
    napi_throw_error(env, NULL, "wsgate relay: setDone() first");
    return NULL;
  }
  int32_t fds[2] = {-1, -1}, read_size;
  // The client: a descriptor to duplicate, or a connection the module accepted (conn.c), taken as it is.
  conn_t* accepted = conn_of(&mod->home, env, argv[1]);
  if (accepted == NULL) CHECK(napi_get_value_int32(env, argv[1], &fds[0]));
  // The upstream: a descriptor to duplicate, or a dial (dial.c) whose connection the session takes as it is.
  dial_t* dialed = dial_of(&mod->home, env, argv[2]);
  if (dialed == NULL) CHECK(napi_get_value_int32(env, argv[2], &fds[1]));
  CHECK(napi_get_value_int32(env, argv[3], &read_size));
  if (read_size <= 0 || read_size > READ_MAX) read_size = READ_MAX;
  // Every argument is checked before anything is taken: a throw below this
  // point must give back what it took.
  napi_ref owner;
  CHECK(napi_create_reference(env, argv[0], 1, &owner));
  pair_t* p = calloc(1, sizeof *p);
  if (p == NULL) {
    napi_delete_reference(env, owner);
    napi_throw_error(env, "ENOMEM", "wsgate relay: out of memory");
    return NULL;
  }
  p->owner = owner;
  p->mod = mod;
  p->env = env;
  p->read_size = (size_t)read_size;
  watch_t* w[2] = {&p->side[0].watch, &p->side[1].watch};
  int err = dial_session(&mod->home, fds, accepted, dialed, w, on_ready);
  if (err != 0) {
    napi_delete_reference(env, owner);
    free(p);
    char msg[96];
    snprintf(msg, sizeof msg, "wsgate relay: cannot take the session's sockets: %s", strerror(err));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  for (int i = 0; i < 2; i++) {
    p->side[i].pair = p;
    p->side[i].fd = w[i]->fd;
    p->side[i].watch.data = &p->side[i];
  }
  p->handles = 2;
  mod->open++;
  repoll(&p->side[0]);
  repoll(&p->side[1]);
  CHECK(napi_create_external(env, p, NULL, NULL, &result));
  return result;
}

// close(session): the gateway ends it (idle, shutdown, drain); both sides are cut now.
static napi_value close_session(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pair_t* p = pair_arg(env, argv[0]);
  if (p == NULL) return NULL;
  record(p, 0, END_GATEWAY, 0, OP_READ);
  close_pair(p);
  return NULL;
}

// active(session, clear): whether bytes moved since the flag was last cleared.
static napi_value active(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  bool clear = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pair_t* p = pair_arg(env, argv[0]);
  if (p == NULL) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &clear));
  CHECK(napi_get_boolean(env, p->active, &result));
  if (clear) p->active = 0;
  return result;
}

// bytes(session, side): bytes read from the client (0) or the upstream (1) so far.
static napi_value bytes(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t side = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pair_t* p = pair_arg(env, argv[0]);
  if (p == NULL) return NULL;
  CHECK(napi_get_value_int32(env, argv[1], &side));
  CHECK(napi_create_double(env, (double)p->side[side == 0 ? 0 : 1].bytes_read, &result));
  return result;
}

// openSessions(): sessions not yet reported done (for tests and status).
static napi_value open_sessions(napi_env env, napi_callback_info info) {
  module_t* mod;
  napi_value result;
  CHECK(napi_get_cb_info(env, info, NULL, NULL, NULL, (void**)&mod));
  CHECK(napi_create_double(env, (double)mod->open, &result));
  return result;
}

// tryWrite(fd, buffer): writes what the socket takes now, as uv_try_write
// does, and returns the bytes written (0 when it takes nothing) or -errno.
// wsgate reads plain TCP sockets into one shared buffer
// (src/relay/handle-io.ts); a libuv write keeps a pointer into its data
// until it completes, so the relay writes such data here, where nothing is
// kept, and copies only what the socket did not take. Only called while
// libuv holds nothing else for the socket, so the bytes keep their order.
static napi_value try_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd = -1;
  void* data = NULL;
  size_t len = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  ssize_t n;
  do n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) n = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  CHECK(napi_create_int32(env, (int32_t)n, &result));
  return result;
}

// Before the loop closes (a worker thread's end): the set's handles must be closed by then.
static void close_set(void* arg) {
  module_t* mod = arg;
  watch_set_free(mod->home.set);
  mod->home.set = NULL;
}

static void free_module(napi_env env, void* data, void* hint) {
  module_t* mod = data;
  if (mod->async != NULL) napi_async_destroy(env, mod->async);
  free(mod->spare);
  free(mod);
}

NAPI_MODULE_INIT() {
  module_t* mod = calloc(1, sizeof *mod);
  if (mod == NULL) return NULL;
  if (napi_get_uv_event_loop(env, &mod->home.loop) != napi_ok) {
    free(mod);
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "wsgate.relay", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &mod->async);
  napi_set_instance_data(env, mod, free_module, NULL);
  napi_add_env_cleanup_hook(env, close_set, mod);
  napi_property_descriptor props[] = {
    {"setDone", NULL, set_done, NULL, NULL, NULL, napi_enumerable, mod},
    {"open", NULL, open_pair, NULL, NULL, NULL, napi_enumerable, mod},
    {"close", NULL, close_session, NULL, NULL, NULL, napi_enumerable, mod},
    {"active", NULL, active, NULL, NULL, NULL, napi_enumerable, mod},
    {"bytes", NULL, bytes, NULL, NULL, NULL, napi_enumerable, mod},
    {"openSessions", NULL, open_sessions, NULL, NULL, NULL, napi_enumerable, mod},
    {"tryWrite", NULL, try_write, NULL, NULL, NULL, napi_enumerable, mod},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  // Inspect mode's core (native/inspect.c) lives in the same module.
  wsgate_accept_key_init(env, exports);
  wsgate_dial_init(env, exports, &mod->home);
  wsgate_conn_init(env, exports, &mod->home);
  return wsgate_inspect_init(env, exports, &mod->home);
}
